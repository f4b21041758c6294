//! Bringing a channel's raft state level with its ledger when the node starts.
//!
//! The ledger is where applied entries end up: each block carries the raft index and term
//! of the entry that wrote it, and it is synced before the node moves on. The raft state
//! (hard state, log) is written at other moments of the same loop, so a crash can leave the
//! ledger ahead of it in two ways:
//!
//! - **The commit index lags.** Raft hands out entries to apply in the same `Ready` that
//!   carries the new commit index, and the blocks are written before that hard state is
//!   persisted (keeping an fsync off the hot path); a light ready's commit index is not
//!   synced at all. After a crash between the two, the last block's entry is in the log but
//!   above the recorded commit index, and raft-rs refuses to start with an applied index
//!   above its commit index (it panics — found by the chaos tests: `raft_leader_kill_loop`,
//!   seed 11, an orderer that could never start again).
//! - **The log lacks the entry.** Installing a leader's snapshot pulls the missing blocks
//!   into the ledger first and records the snapshot in the raft state afterwards. After a
//!   crash between the two, the ledger holds blocks of entries the log never had.
//!
//! Either way the entries the ledger holds were committed (nothing is applied before raft
//! says so), so they can be marked committed again: the commit index is raised to the last
//! block's entry when the log holds that entry, and otherwise — or when the log holds
//! another term at that index, a stale tail that can never commit — the log restarts as a
//! snapshot at that entry, the way a snapshot from the leader would have left it.

use raft::eraftpb::{Snapshot, SnapshotMetadata};
use raft::Storage;
use tracing::warn;

use ordo_proto::block;
use ordo_proto::pb::common::{Block, ChannelConfig};

use super::storage::{LogView, LogWrite};
use super::{membership, raft_position, snapshot_data};

/// What [`reconcile`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// The raft state already covered the ledger.
    InStep,
    /// The commit index was raised to the last block's entry.
    CommitRaised {
        /// The commit index the raft state had recorded.
        from: u64,
        /// The last block's entry.
        to: u64,
    },
    /// The log restarted as a snapshot at the last block's entry.
    LogRestarted {
        /// The last block's entry.
        at: u64,
    },
}

/// The repair [`reconcile`] planned: the index of the last applied entry (the one that
/// wrote the last block, or the log's snapshot), what was found, and the write that makes
/// the raft state cover the ledger (to be made durable, then applied to the view).
#[derive(Debug, Clone, PartialEq)]
pub struct Repair {
    /// Index of the last entry applied to the ledger.
    pub applied: u64,
    /// What was found.
    pub found: Reconciled,
    /// The write that repairs it; `None` when in step.
    pub write: Option<LogWrite>,
}

/// Plans how `view` comes to cover every entry the ledger holds, given the ledger's last
/// block `tip` (number `tip_number`) and the configuration in force at the ledger's head.
/// A pure function: the caller makes the write durable.
pub fn reconcile(
    channel: &str,
    view: &LogView,
    tip: Option<(u64, &Block)>,
    config: &ChannelConfig,
) -> Repair {
    let floor = view.snapshot_index();
    let in_step = |applied| Repair {
        applied,
        found: Reconciled::InStep,
        write: None,
    };
    let Some((last, last_block)) = tip else {
        return in_step(floor);
    };
    let Some((index, term)) = raft_position(last_block) else {
        return in_step(floor);
    };
    let committed = view.hard_state().commit;
    if index <= floor || (index <= committed && index <= view.last_index_now()) {
        return in_step(index.max(floor));
    }
    let log_agrees = index <= view.last_index_now() && view.term(index).ok() == Some(term);
    if log_agrees {
        warn!(
            channel,
            from = committed,
            to = index,
            "the ledger was ahead of the raft commit index (a crash between writing a block and recording its commit); commit index raised"
        );
        return Repair {
            applied: index,
            found: Reconciled::CommitRaised {
                from: committed,
                to: index,
            },
            write: view.raise_commit(index),
        };
    }
    // The log does not hold the entry (or holds another one there): it restarts at it,
    // with the membership of the configuration in force at the ledger's head (a membership
    // change commits in the same entry as its config block). A channel whose config names
    // no consenters (voters given when the chain starts) keeps the membership it recorded.
    let mut meta = SnapshotMetadata {
        index,
        term,
        ..Default::default()
    };
    let configured: Vec<u64> = membership::voters_of(config).into_iter().collect();
    meta.mut_conf_state().voters = if configured.is_empty() {
        view.conf_state().voters.clone()
    } else {
        configured
    };
    let mut snap = Snapshot::default();
    snap.set_metadata(meta);
    snap.set_data(snapshot_data(last, block::hash(last_block).as_ref()).into());
    warn!(
        channel,
        index,
        term,
        block = last,
        "the ledger holds blocks the raft log does not (a crash while installing a snapshot); the log restarts at the last block"
    );
    Repair {
        applied: index,
        found: Reconciled::LogRestarted { at: index },
        // Entries up to the last block's may be what the ledger's blocks refer to.
        write: Some(view.restart(&snap, index)),
    }
}
