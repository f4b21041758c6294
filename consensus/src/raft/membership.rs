//! Membership changes of a raft channel, decided from its configuration.
//!
//! The consenters named in the channel config are the raft voters. A config transaction
//! that adds or removes one consenter becomes one raft `ConfChange` (the config block is
//! its context, so block and membership change commit as one entry). Changing more than
//! one at a time could leave two disjoint majorities during the change, so it is refused
//! before ordering; a change that would leave fewer live voters than a quorum of the new
//! group is refused by the leader, which alone knows who is live.
//!
//! A consenter whose credentials change (its identity or TLS certificate, or its
//! endpoint) stays a voter. A renewal of its TLS certificate is accepted by the others at
//! once, but a certificate with another subject or from another CA, or a new endpoint,
//! leaves it unreachable until every node has the new config: such a *rekey* is also one
//! consenter per update, and the leader refuses it unless the other voters alone are a
//! live majority.

use std::collections::{BTreeSet, HashSet};

use ordo_proto::pb::common::{ChannelConfig, Consenter};

use super::raft_id;

/// How the voter set changes between two configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Same voters (other settings may change).
    Unchanged,
    /// One voter joins.
    Add(u64),
    /// One voter leaves.
    Remove(u64),
}

/// Why a membership change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// More than one consenter added or removed in one config transaction.
    #[error("consenters change by {added} added and {removed} removed; change one consenter per config update")]
    TooMany {
        /// Consenters added.
        added: usize,
        /// Consenters removed.
        removed: usize,
    },
    /// More than one consenter's credentials change in one config transaction.
    #[error("the certificates or endpoints of {count} consenters change; change one consenter per config update")]
    TooManyRekeyed {
        /// Consenters whose credentials change.
        count: usize,
    },
    /// A consenter is added or removed while another one's credentials change.
    #[error("a consenter is added or removed while another one's certificates change; change one consenter per config update")]
    RekeyWithChange,
    /// The change would leave the group without a live majority.
    #[error("the change would lose quorum: {active} of the {voters} consenters after it are active, {needed} needed")]
    LosesQuorum {
        /// Active voters after the change.
        active: usize,
        /// Voters after the change.
        voters: usize,
        /// A majority of them.
        needed: usize,
    },
}

/// The raft ids of a configuration's consenters (empty when it names none, as a
/// single-process test config may).
pub fn voters_of(config: &ChannelConfig) -> BTreeSet<u64> {
    config
        .orderer
        .as_ref()
        .map(|o| o.consenters.iter().map(|c| raft_id(&c.id)).collect())
        .unwrap_or_default()
}

/// The change from voters `current` to voters `proposed`.
pub fn change_between(
    current: &BTreeSet<u64>,
    proposed: &BTreeSet<u64>,
) -> Result<MembershipChange, MembershipError> {
    let added: Vec<u64> = proposed.difference(current).copied().collect();
    let removed: Vec<u64> = current.difference(proposed).copied().collect();
    match (added.as_slice(), removed.as_slice()) {
        ([], []) => Ok(MembershipChange::Unchanged),
        ([a], []) => Ok(MembershipChange::Add(*a)),
        ([], [r]) => Ok(MembershipChange::Remove(*r)),
        _ => Err(MembershipError::TooMany {
            added: added.len(),
            removed: removed.len(),
        }),
    }
}

/// The consenter (by raft id) whose identity certificate, TLS certificate or endpoint
/// differs between `current` and `proposed`, if any; consenters present in only one of
/// them are membership changes, not rekeys (see [`change_between`]).
pub fn rekeyed_between(
    current: &ChannelConfig,
    proposed: &ChannelConfig,
) -> Result<Option<u64>, MembershipError> {
    let before: std::collections::HashMap<&str, &Consenter> = consenters(current)
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    let changed: Vec<u64> = consenters(proposed)
        .iter()
        .filter(|c| {
            before.get(c.id.as_str()).is_some_and(|b| {
                b.certificate != c.certificate
                    || b.tls_cert != c.tls_cert
                    || b.endpoint != c.endpoint
            })
        })
        .map(|c| raft_id(&c.id))
        .collect();
    match changed.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(MembershipError::TooManyRekeyed {
            count: changed.len(),
        }),
    }
}

/// Checks a whole config transaction: one consenter added, removed or rekeyed at most.
pub fn check_one_change(
    current: &ChannelConfig,
    proposed: &ChannelConfig,
) -> Result<(MembershipChange, Option<u64>), MembershipError> {
    let change = change_between(&voters_of(current), &voters_of(proposed))?;
    let rekeyed = rekeyed_between(current, proposed)?;
    if change != MembershipChange::Unchanged && rekeyed.is_some() {
        return Err(MembershipError::RekeyWithChange);
    }
    Ok((change, rekeyed))
}

/// Checks that the voters other than `rekeyed` are a live majority of all `voters`: the
/// rekeyed consenter is refused by the others until it presents its new certificate, so
/// the channel must be able to commit without it meanwhile.
pub fn check_rekey_quorum(
    voters: &BTreeSet<u64>,
    rekeyed: u64,
    active: &HashSet<u64>,
) -> Result<(), MembershipError> {
    let live = voters
        .iter()
        .filter(|id| **id != rekeyed && active.contains(id))
        .count();
    let needed = voters.len() / 2 + 1;
    if live < needed {
        return Err(MembershipError::LosesQuorum {
            active: live,
            voters: voters.len(),
            needed,
        });
    }
    Ok(())
}

fn consenters(config: &ChannelConfig) -> &[Consenter] {
    config
        .orderer
        .as_ref()
        .map(|o| o.consenters.as_slice())
        .unwrap_or_default()
}

/// Checks that after `change` a majority of the new voter set is among `active` (the
/// voters the leader heard from recently, itself included; a joining node is not active
/// until it has caught up, so it does not count).
pub fn check_quorum(
    voters: &BTreeSet<u64>,
    change: MembershipChange,
    active: &HashSet<u64>,
) -> Result<(), MembershipError> {
    let mut after = voters.clone();
    match change {
        MembershipChange::Unchanged => return Ok(()),
        MembershipChange::Add(id) => {
            after.insert(id);
        }
        MembershipChange::Remove(id) => {
            after.remove(&id);
        }
    }
    let live = after.iter().filter(|id| active.contains(id)).count();
    let needed = after.len() / 2 + 1;
    if live < needed {
        return Err(MembershipError::LosesQuorum {
            active: live,
            voters: after.len(),
            needed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn one_change_at_a_time() {
        assert_eq!(
            change_between(&set(&[1, 2, 3]), &set(&[1, 2, 3])),
            Ok(MembershipChange::Unchanged)
        );
        assert_eq!(
            change_between(&set(&[1, 2, 3]), &set(&[1, 2, 3, 4])),
            Ok(MembershipChange::Add(4))
        );
        assert_eq!(
            change_between(&set(&[1, 2, 3]), &set(&[1, 3])),
            Ok(MembershipChange::Remove(2))
        );
        assert_eq!(
            change_between(&set(&[1, 2, 3]), &set(&[1, 2, 4])),
            Err(MembershipError::TooMany {
                added: 1,
                removed: 1
            })
        );
        assert!(change_between(&set(&[1, 2, 3]), &set(&[1, 2, 3, 4, 5])).is_err());
    }

    #[test]
    fn a_change_that_leaves_no_live_majority_is_refused() {
        let voters = set(&[1, 2, 3]);
        let all: HashSet<u64> = [1, 2, 3].into();
        let two: HashSet<u64> = [1, 2].into();
        // All live: growing to 4 keeps 3 of 4 live.
        assert!(check_quorum(&voters, MembershipChange::Add(4), &all).is_ok());
        // One down: 4 voters with 2 live (the new node is not live yet) cannot commit.
        assert_eq!(
            check_quorum(&voters, MembershipChange::Add(4), &two),
            Err(MembershipError::LosesQuorum {
                active: 2,
                voters: 4,
                needed: 3
            })
        );
        // One down: removing the dead one is fine, removing a live one is not.
        assert!(check_quorum(&voters, MembershipChange::Remove(3), &two).is_ok());
        assert!(check_quorum(&voters, MembershipChange::Remove(2), &two).is_err());
    }

    fn config(consenters: &[(&str, &[u8])]) -> ChannelConfig {
        ChannelConfig {
            orderer: Some(ordo_proto::pb::common::OrdererConfig {
                consensus_type: "raft".into(),
                consenters: consenters
                    .iter()
                    .map(|(id, tls)| Consenter {
                        id: (*id).into(),
                        endpoint: format!("{id}:7050"),
                        certificate: Default::default(),
                        tls_cert: tls.to_vec().into(),
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn one_consenter_rekeyed_per_update() {
        let current = config(&[("o0", b"a"), ("o1", b"b"), ("o2", b"c")]);
        assert_eq!(
            check_one_change(&current, &current),
            Ok((MembershipChange::Unchanged, None))
        );
        let one = config(&[("o0", b"a"), ("o1", b"B"), ("o2", b"c")]);
        assert_eq!(
            check_one_change(&current, &one),
            Ok((MembershipChange::Unchanged, Some(raft_id("o1"))))
        );
        let two = config(&[("o0", b"A"), ("o1", b"B"), ("o2", b"c")]);
        assert_eq!(
            check_one_change(&current, &two),
            Err(MembershipError::TooManyRekeyed { count: 2 })
        );
        let rekey_and_add = config(&[("o0", b"a"), ("o1", b"B"), ("o2", b"c"), ("o3", b"d")]);
        assert_eq!(
            check_one_change(&current, &rekey_and_add),
            Err(MembershipError::RekeyWithChange)
        );
        // A removal is not also a rekey of the removed consenter.
        let removed = config(&[("o0", b"a"), ("o2", b"c")]);
        assert_eq!(
            check_one_change(&current, &removed),
            Ok((MembershipChange::Remove(raft_id("o1")), None))
        );
    }

    #[test]
    fn a_rekey_needs_a_live_majority_without_the_rekeyed_node() {
        let voters = set(&[1, 2, 3]);
        let all: HashSet<u64> = [1, 2, 3].into();
        let two: HashSet<u64> = [1, 2].into();
        assert!(check_rekey_quorum(&voters, 3, &all).is_ok());
        // 3 is down: rekeying it leaves 1 and 2 live.
        assert!(check_rekey_quorum(&voters, 3, &two).is_ok());
        // 3 is down and 2 is rekeyed: only 1 would be left to commit.
        assert_eq!(
            check_rekey_quorum(&voters, 2, &two),
            Err(MembershipError::LosesQuorum {
                active: 1,
                voters: 3,
                needed: 2
            })
        );
    }
}
