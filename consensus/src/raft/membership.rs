//! Membership changes of a raft channel, decided from its configuration.
//!
//! The consenters named in the channel config are the raft voters. A config transaction
//! that adds or removes one consenter becomes one raft `ConfChange` (the config block is
//! its context, so block and membership change commit as one entry). Changing more than
//! one at a time could leave two disjoint majorities during the change, so it is refused
//! before ordering; a change that would leave fewer live voters than a quorum of the new
//! group is refused by the leader, which alone knows who is live.

use std::collections::{BTreeSet, HashSet};

use ordo_proto::pb::common::ChannelConfig;

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
}
