//! The plan: which endorsers a proposal asks, wave by wave.

use std::sync::Arc;

use ordo_proto::cert::VerifiedCert;
use ordo_proto::pb::common::{Policy, Role};
use ordo_proto::policy::build as policy;

use super::{plan, EndorserDirectory, Judge};

const ORGS: [&str; 4] = ["A", "B", "C", "D"];

fn cert(org: &str, seed: u8) -> VerifiedCert {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
    VerifiedCert {
        org: Arc::from(org),
        role: Role::Peer,
        subject: Arc::from(format!("peer{seed}.{org}")),
        public_key: key,
        not_before: 0,
        not_after: u64::MAX,
        cert_hash: [seed; 32],
    }
}

fn judge(p: &Policy) -> Judge<'_> {
    Judge {
        policy: Some(p),
        chosen: None,
        org_names: ORGS.iter().map(|o| o.to_string()).collect(),
        msp: None,
        at_secs: 0,
    }
}

/// This peer is org A's; the configured endorsers are b, c and d, of orgs B, C and D.
const ENDORSERS: [&str; 3] = ["b:7051", "c:7051", "d:7051"];

fn learned() -> EndorserDirectory {
    let d = EndorserDirectory::default();
    for (i, (addr, org)) in ENDORSERS.iter().zip(["B", "C", "D"]).enumerate() {
        d.learn(addr, &cert(org, i as u8 + 2));
    }
    d
}

fn endorsers() -> Vec<String> {
    ENDORSERS.iter().map(|a| a.to_string()).collect()
}

#[test]
fn unknown_endorsers_are_all_asked_at_once() {
    let p = policy::majority(&ORGS, Role::Peer);
    let d = EndorserDirectory::default();
    let all = endorsers();
    let mut untried = d.ordered(&all);
    let wave = plan(&d, &judge(&p), &[cert("A", 1)], &mut untried);
    assert_eq!(wave.len(), 3, "nothing known: everyone, in parallel");
    assert!(untried.is_empty());
}

#[test]
fn known_endorsers_are_asked_only_as_many_as_the_policy_needs_and_in_turn() {
    // A majority of 4 orgs is 3: this peer plus two others.
    let p = policy::majority(&ORGS, Role::Peer);
    let d = learned();
    let all = endorsers();
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let mut untried = d.ordered(&all);
        let wave = plan(&d, &judge(&p), &[cert("A", 1)], &mut untried);
        assert_eq!(wave.len(), 2, "two more orgs, asked together: {wave:?}");
        assert_eq!(untried.len(), 1, "the third stays in reserve");
        firsts.push(wave[0]);
    }
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 3, "the work rotates over the endorsers");
}

#[test]
fn a_failed_endorser_is_replaced_by_the_next_wave() {
    let p = policy::majority(&ORGS, Role::Peer);
    let d = learned();
    let all = endorsers();
    let mut untried = d.ordered(&all);
    let j = judge(&p);
    let first = plan(&d, &j, &[cert("A", 1)], &mut untried);
    assert_eq!(first.len(), 2);
    // Only the first of the wave answered.
    let answered = match first[0] {
        "b:7051" => cert("B", 2),
        "c:7051" => cert("C", 3),
        _ => cert("D", 4),
    };
    let second = plan(&d, &j, &[cert("A", 1), answered], &mut untried);
    assert_eq!(second.len(), 1, "one more org is enough: {second:?}");
    assert!(!first.contains(&second[0]), "nobody is asked twice");
    let third = plan(&d, &j, &[cert("A", 1)], &mut untried);
    assert!(third.is_empty(), "nobody is left");
}

#[test]
fn endorsers_whose_org_the_policy_does_not_need_are_not_asked() {
    // Any one peer of org B: this peer (A) cannot count, and neither can C or D.
    let p = policy::any_member(&["B"], &[Role::Peer]);
    let d = learned();
    let all = endorsers();
    for _ in 0..3 {
        let mut untried = d.ordered(&all);
        let wave = plan(&d, &judge(&p), &[cert("A", 1)], &mut untried);
        assert_eq!(wave, vec!["b:7051"], "only B's endorser helps");
    }
}

#[test]
fn chosen_orgs_are_all_asked_and_no_others() {
    // Majority of 4 orgs: A (this peer) plus any two. The client chose A, C and D.
    let p = policy::majority(&ORGS, Role::Peer);
    let chosen = ["A".to_string(), "C".to_string(), "D".to_string()];
    let d = learned();
    let all = endorsers();
    for _ in 0..3 {
        let mut untried = d.ordered(&all);
        let j = judge(&p).choosing(Some(&chosen));
        let mut wave = plan(&d, &j, &[cert("A", 1)], &mut untried);
        wave.sort();
        assert_eq!(wave, vec!["c:7051", "d:7051"], "B was not chosen");
        // Were one to fail, B is still never asked.
        let again = plan(&d, &j, &[cert("A", 1), cert("C", 3)], &mut untried);
        assert!(again.is_empty(), "{again:?}");
    }
    // Chosen orgs must all endorse even where the policy is met without one.
    let j = judge(&p).choosing(Some(&chosen));
    assert!(j.unmet(&[cert("A", 1), cert("C", 3)]).is_some());
    assert!(j
        .unmet(&[cert("A", 1), cert("C", 3), cert("D", 4)])
        .is_none());
    assert!(!j.admits("B") && j.admits("D"));
}

#[test]
fn an_unreachable_endorser_is_asked_after_the_reachable_peers_of_its_org() {
    // 2 of 3: this peer (A) plus one of B's two peers.
    let p = policy::n_out_of(
        2,
        &[("A", Role::Peer), ("B", Role::Peer), ("C", Role::Peer)],
    );
    let d = EndorserDirectory::default();
    d.learn("b1:7051", &cert("B", 2));
    d.learn("b2:7051", &cert("B", 3));
    let all = vec!["b1:7051".to_string(), "b2:7051".to_string()];
    d.unreachable("b1:7051");
    for _ in 0..4 {
        let mut untried = d.ordered(&all);
        assert_eq!(untried, vec!["b2:7051", "b1:7051"], "whatever the rotation");
        let wave = plan(&d, &judge(&p), &[cert("A", 1)], &mut untried);
        assert_eq!(wave, vec!["b2:7051"]);
        // Should b2 fail too, b1 is still tried rather than giving up.
        let next = plan(&d, &judge(&p), &[cert("A", 1)], &mut untried);
        assert_eq!(next, vec!["b1:7051"]);
    }
    d.answered("b1:7051");
    let firsts: std::collections::HashSet<&str> = (0..4).map(|_| d.ordered(&all)[0]).collect();
    assert_eq!(
        firsts.len(),
        2,
        "once it answers, the rotation includes it again"
    );
}

#[test]
fn peers_not_known_to_run_the_chaincode_come_after_those_that_are() {
    let d = learned();
    // b and c announced the chaincode; d has not (yet).
    let all = endorsers();
    for _ in 0..4 {
        let order = d.ordered_preferring(&all, 2);
        assert_eq!(order[2], "d:7051", "{order:?}");
    }
    let firsts: std::collections::HashSet<&str> =
        (0..4).map(|_| d.ordered_preferring(&all, 2)[0]).collect();
    assert_eq!(firsts.len(), 2, "the preferred ones rotate");
    // 2 of 4 with A collected: one more is enough, and it is a preferred one.
    let p = policy::n_out_of(
        2,
        &[
            ("A", Role::Peer),
            ("B", Role::Peer),
            ("C", Role::Peer),
            ("D", Role::Peer),
        ],
    );
    let mut untried = d.ordered_preferring(&all, 2);
    let wave = plan(&d, &judge(&p), &[cert("A", 1)], &mut untried);
    assert_eq!(wave.len(), 1);
    assert_ne!(wave[0], "d:7051");
}
