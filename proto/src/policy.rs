//! Policies: who must have signed for something to be allowed.
//!
//! Three rules, as the channel configuration writes them: any member of a set of orgs
//! (optionally in given roles), n out of a list of org/role principals (each principal
//! matched by a distinct signer), and a majority of orgs. Evaluation is a pure function of
//! the policy, the already-verified signers and the channel's org list, so every node
//! reaches the same answer.

use std::collections::HashSet;

use thiserror::Error;

use crate::cert::VerifiedCert;
use crate::pb::common::{policy::Rule, AnyMember, Majority, NOutOf, Policy, Principal, Role};

/// Largest number of principals an n-out-of policy may list.
pub const MAX_PRINCIPALS: usize = 64;

/// Why a policy is not satisfied or cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// The policy itself is unusable (no rule, n larger than the list, unknown org …).
    #[error("malformed policy: {0}")]
    Malformed(String),
    /// The signers do not satisfy it.
    #[error("policy not satisfied: {0}")]
    NotSatisfied(String),
}

/// The identity facts a policy looks at; implemented by verified certificates.
pub trait Signer {
    /// The signer's org.
    fn org(&self) -> &str;
    /// The signer's role.
    fn role(&self) -> Role;
    /// A stable identity, so one signer signing twice counts once.
    fn identity(&self) -> &[u8];
}

impl Signer for VerifiedCert {
    fn org(&self) -> &str {
        &self.org
    }
    fn role(&self) -> Role {
        self.role
    }
    fn identity(&self) -> &[u8] {
        self.public_key.as_bytes()
    }
}

fn role_matches(wanted: Role, actual: Role) -> bool {
    wanted == Role::Unspecified || wanted == actual
}

fn role_of(raw: i32) -> Result<Role, PolicyError> {
    Role::try_from(raw).map_err(|_| PolicyError::Malformed(format!("unknown role {raw}")))
}

/// Checks a policy's shape against the channel's orgs, without any signers: every org it
/// names exists, roles are known, n is between 1 and the number of principals.
pub fn validate(policy: &Policy, channel_orgs: &[String]) -> Result<(), PolicyError> {
    let known = |org: &String| -> Result<(), PolicyError> {
        if channel_orgs.contains(org) {
            Ok(())
        } else {
            Err(PolicyError::Malformed(format!("names unknown org {org:?}")))
        }
    };
    match &policy.rule {
        None => Err(PolicyError::Malformed("no rule".into())),
        Some(Rule::AnyMember(AnyMember { orgs, roles })) => {
            orgs.iter().try_for_each(known)?;
            roles.iter().try_for_each(|r| role_of(*r).map(|_| ()))
        }
        Some(Rule::NOutOf(NOutOf { n, principals })) => {
            if principals.len() > MAX_PRINCIPALS {
                return Err(PolicyError::Malformed(format!(
                    "{} principals exceeds the limit of {MAX_PRINCIPALS}",
                    principals.len()
                )));
            }
            if *n == 0 || *n as usize > principals.len() {
                return Err(PolicyError::Malformed(format!(
                    "n = {n} with {} principals",
                    principals.len()
                )));
            }
            for p in principals {
                known(&p.org)?;
                role_of(p.role)?;
            }
            Ok(())
        }
        Some(Rule::Majority(Majority { orgs, role })) => {
            orgs.iter().try_for_each(known)?;
            role_of(*role).map(|_| ())
        }
    }
}

/// Evaluates `policy` over `signers` (whose signatures the caller has verified).
pub fn evaluate<S: Signer>(
    policy: &Policy,
    signers: &[S],
    channel_orgs: &[String],
) -> Result<(), PolicyError> {
    validate(policy, channel_orgs)?;
    let signers = dedupe(signers);
    match &policy.rule {
        None => Err(PolicyError::Malformed("no rule".into())),
        Some(Rule::AnyMember(AnyMember { orgs, roles })) => {
            let ok = signers.iter().any(|s| {
                (orgs.is_empty() || orgs.iter().any(|o| o == s.org()))
                    && (roles.is_empty() || roles.iter().any(|r| *r == s.role() as i32))
            });
            if ok {
                Ok(())
            } else {
                Err(PolicyError::NotSatisfied(format!(
                    "needs a signature of a member of {} in role {}",
                    describe_orgs(orgs),
                    describe_roles(roles)
                )))
            }
        }
        Some(Rule::NOutOf(NOutOf { n, principals })) => {
            let matched = max_matching(principals, &signers);
            if matched >= *n as usize {
                Ok(())
            } else {
                Err(PolicyError::NotSatisfied(format!(
                    "needs {n} of {} principals signed by distinct members, got {matched}",
                    principals.len()
                )))
            }
        }
        Some(Rule::Majority(Majority { orgs, role })) => {
            let role = role_of(*role)?;
            let orgs: Vec<&String> = if orgs.is_empty() {
                channel_orgs.iter().collect()
            } else {
                orgs.iter().collect()
            };
            let orgs: HashSet<&String> = orgs.into_iter().collect();
            let signed = orgs
                .iter()
                .filter(|o| {
                    signers
                        .iter()
                        .any(|s| s.org() == o.as_str() && role_matches(role, s.role()))
                })
                .count();
            if signed * 2 > orgs.len() {
                Ok(())
            } else {
                Err(PolicyError::NotSatisfied(format!(
                    "needs a majority of {} orgs, got {signed}",
                    orgs.len()
                )))
            }
        }
    }
}

fn dedupe<S: Signer>(signers: &[S]) -> Vec<&S> {
    if signers.len() <= 1 {
        // The common case (one creator checked against Writers or Readers): nothing to
        // de-duplicate, and no set to allocate per envelope.
        return signers.iter().collect();
    }
    let mut seen = HashSet::new();
    signers
        .iter()
        .filter(|s| seen.insert(s.identity().to_vec()))
        .collect()
}

/// Size of a maximum matching between principals and distinct signers (Kuhn's algorithm;
/// both sides are small).
fn max_matching<S: Signer>(principals: &[Principal], signers: &[&S]) -> usize {
    let edges: Vec<Vec<usize>> = principals
        .iter()
        .map(|p| {
            let want = Role::try_from(p.role).unwrap_or(Role::Unspecified);
            signers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.org() == p.org && role_matches(want, s.role()))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; signers.len()];
    let mut matched = 0;
    for p in 0..principals.len() {
        let mut visited = vec![false; signers.len()];
        if augment(p, &edges, &mut owner, &mut visited) {
            matched += 1;
        }
    }
    matched
}

fn augment(
    p: usize,
    edges: &[Vec<usize>],
    owner: &mut [Option<usize>],
    visited: &mut [bool],
) -> bool {
    for &s in &edges[p] {
        if visited[s] {
            continue;
        }
        visited[s] = true;
        let free = match owner[s] {
            None => true,
            Some(other) => augment(other, edges, owner, visited),
        };
        if free {
            owner[s] = Some(p);
            return true;
        }
    }
    false
}

/// A policy in words, for operators: "2 of BankA.PEER, BankB.PEER, BankC.PEER",
/// "a majority of any channel org's ADMIN", "any member of BankA in CLIENT|ADMIN".
pub fn describe(policy: &Policy) -> String {
    match &policy.rule {
        None => "no rule".into(),
        Some(Rule::AnyMember(AnyMember { orgs, roles })) => format!(
            "any member of {} in {}",
            describe_orgs(orgs),
            describe_roles(roles)
        ),
        Some(Rule::NOutOf(NOutOf { n, principals })) => format!(
            "{n} of {}",
            principals
                .iter()
                .map(|p| format!("{}.{}", p.org, describe_roles(&[p.role])))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Rule::Majority(Majority { orgs, role })) => format!(
            "a majority of {}'s {}",
            describe_orgs(orgs),
            describe_roles(&[*role])
        ),
    }
}

fn describe_orgs(orgs: &[String]) -> String {
    if orgs.is_empty() {
        "any channel org".into()
    } else {
        orgs.join("|")
    }
}

fn describe_roles(roles: &[i32]) -> String {
    if roles.is_empty() {
        return "any".into();
    }
    roles
        .iter()
        .map(|r| Role::try_from(*r).map(|r| r.as_str_name()).unwrap_or("?"))
        .collect::<Vec<_>>()
        .join("|")
}

/// Policy constructors for configuration code and tests.
pub mod build {
    use super::*;

    /// Any member of `orgs` (all channel orgs if empty) in any of `roles` (any if empty).
    pub fn any_member(orgs: &[&str], roles: &[Role]) -> Policy {
        Policy {
            rule: Some(Rule::AnyMember(AnyMember {
                orgs: orgs.iter().map(|s| s.to_string()).collect(),
                roles: roles.iter().map(|r| *r as i32).collect(),
            })),
        }
    }

    /// `n` of the given (org, role) principals.
    pub fn n_out_of(n: u32, principals: &[(&str, Role)]) -> Policy {
        Policy {
            rule: Some(Rule::NOutOf(NOutOf {
                n,
                principals: principals
                    .iter()
                    .map(|(o, r)| Principal {
                        org: o.to_string(),
                        role: *r as i32,
                    })
                    .collect(),
            })),
        }
    }

    /// A majority of `orgs` (all channel orgs if empty) with a signer in `role`.
    pub fn majority(orgs: &[&str], role: Role) -> Policy {
        Policy {
            rule: Some(Rule::Majority(Majority {
                orgs: orgs.iter().map(|s| s.to_string()).collect(),
                role: role as i32,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct S {
        org: String,
        role: Role,
        id: Vec<u8>,
    }
    impl Signer for S {
        fn org(&self) -> &str {
            &self.org
        }
        fn role(&self) -> Role {
            self.role
        }
        fn identity(&self) -> &[u8] {
            &self.id
        }
    }
    fn s(org: &str, role: Role, id: u8) -> S {
        S {
            org: org.into(),
            role,
            id: vec![id],
        }
    }
    fn orgs() -> Vec<String> {
        ["A", "B", "C"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn any_member_respects_orgs_and_roles() {
        let p = any_member(&["A"], &[Role::Admin]);
        assert!(evaluate(&p, &[s("A", Role::Admin, 1)], &orgs()).is_ok());
        assert!(evaluate(&p, &[s("A", Role::Client, 1)], &orgs()).is_err());
        assert!(evaluate(&p, &[s("B", Role::Admin, 1)], &orgs()).is_err());
        assert!(evaluate(&any_member(&[], &[]), &[s("C", Role::Peer, 1)], &orgs()).is_ok());
        assert!(evaluate::<S>(&any_member(&[], &[]), &[], &orgs()).is_err());
    }

    #[test]
    fn n_out_of_needs_distinct_signers() {
        let p = n_out_of(2, &[("A", Role::Unspecified), ("A", Role::Unspecified)]);
        assert!(evaluate(&p, &[s("A", Role::Peer, 1)], &orgs()).is_err());
        // The same signer twice still counts once.
        assert!(evaluate(&p, &[s("A", Role::Peer, 1), s("A", Role::Peer, 1)], &orgs()).is_err());
        assert!(evaluate(&p, &[s("A", Role::Peer, 1), s("A", Role::Peer, 2)], &orgs()).is_ok());
    }

    #[test]
    fn n_out_of_finds_the_matching_a_greedy_choice_misses() {
        // Signer 1 fits both principals, signer 2 only the first: greedy would give
        // principal 0 to signer 1 and fail.
        let p = n_out_of(2, &[("A", Role::Unspecified), ("A", Role::Admin)]);
        let signers = [s("A", Role::Admin, 1), s("A", Role::Peer, 2)];
        assert!(evaluate(&p, &signers, &orgs()).is_ok());
    }

    #[test]
    fn majority_counts_orgs_not_signatures() {
        let p = majority(&[], Role::Unspecified);
        assert!(evaluate(&p, &[s("A", Role::Peer, 1), s("A", Role::Peer, 2)], &orgs()).is_err());
        assert!(evaluate(&p, &[s("A", Role::Peer, 1), s("B", Role::Peer, 2)], &orgs()).is_ok());
    }

    #[test]
    fn malformed_policies_are_refused() {
        assert!(matches!(
            validate(&Policy { rule: None }, &orgs()),
            Err(PolicyError::Malformed(_))
        ));
        assert!(validate(&n_out_of(3, &[("A", Role::Peer)]), &orgs()).is_err());
        assert!(validate(&n_out_of(0, &[("A", Role::Peer)]), &orgs()).is_err());
        assert!(validate(&any_member(&["Z"], &[]), &orgs()).is_err());
    }

    fn arb_signers() -> impl Strategy<Value = Vec<S>> {
        prop::collection::vec((0usize..3, 1i32..5, 0u8..6), 0..8).prop_map(|v| {
            v.into_iter()
                .map(|(o, r, id)| S {
                    org: ["A", "B", "C"][o].into(),
                    role: Role::try_from(r).unwrap_or(Role::Peer),
                    id: vec![id],
                })
                .collect()
        })
    }

    proptest! {
        // Adding a signer never turns a satisfied policy into an unsatisfied one.
        #[test]
        fn policies_are_monotone(signers in arb_signers(), extra in arb_signers(), n in 1u32..4) {
            let principals = [("A", Role::Unspecified), ("B", Role::Peer), ("C", Role::Admin)];
            for p in [n_out_of(n.min(3), &principals), majority(&[], Role::Unspecified), any_member(&["B"], &[Role::Peer])] {
                if evaluate(&p, &signers, &orgs()).is_ok() {
                    let mut more = signers.clone();
                    more.extend(extra.iter().cloned());
                    prop_assert!(evaluate(&p, &more, &orgs()).is_ok());
                }
            }
        }

        // n-out-of agrees with a brute-force search over assignments.
        #[test]
        fn n_out_of_matches_brute_force(signers in arb_signers(), n in 1u32..4) {
            let principals = [("A", Role::Unspecified), ("A", Role::Peer), ("B", Role::Unspecified)];
            let p = n_out_of(n, &principals);
            let distinct = dedupe(&signers);
            let fits = |pi: usize, sg: &S| {
                let (o, r) = principals[pi];
                sg.org == o && role_matches(r, sg.role)
            };
            // Try every injective assignment of principals to signers (small sizes).
            let mut best = 0;
            let k = distinct.len();
            let choices = k + 1; // index k = unassigned
            for code in 0..choices.pow(3) {
                let picks = [code % choices, (code / choices) % choices, (code / choices / choices) % choices];
                let used: Vec<usize> = picks.iter().copied().filter(|&x| x < k).collect();
                let unique: HashSet<usize> = used.iter().copied().collect();
                if unique.len() != used.len() { continue; }
                if picks.iter().enumerate().all(|(pi, &x)| x == k || fits(pi, distinct[x])) {
                    best = best.max(used.len());
                }
            }
            prop_assert_eq!(evaluate(&p, &signers, &orgs()).is_ok(), best >= n as usize);
        }
    }
}
