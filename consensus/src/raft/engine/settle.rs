//! Role changes and what they settle: a new leader's catch-up, and telling the waiters
//! of envelopes that were lost with a leader or a proposal.
//!
//! Rules (each found missing once by the raft simulation, seeds named below):
//! - A new leader takes envelopes only once it has applied its whole log, so its first
//!   block follows its predecessor's last.
//! - A deposed leader answers the waiters of envelopes cut into no proposed block.
//! - Once an entry of term `t` is applied, nothing of an earlier term will be applied
//!   after it: envelopes forwarded to an earlier term's leader, and blocks this node
//!   proposed in an earlier term, that are not written by then are lost (seed 30).
//! - A snapshot decides this node's proposals below its height at once (seed 785).

use std::collections::HashSet;

use raft::StateRole;
use tracing::info;

use super::Engine;

/// What a waiter whose envelope was lost with a leader or a proposal is told.
const LEADER_CHANGED: &str = "the raft leader changed before the envelope was ordered; resubmit";

impl Engine {
    /// Notes a role change: a new leader first applies its whole log; a deposed one
    /// answers the waiters of envelopes it will never propose.
    pub(super) fn note_role(&mut self) {
        let role = self.raw.raft.state;
        if role == self.role {
            return;
        }
        let was_leader = self.role == StateRole::Leader;
        self.role = role;
        if role == StateRole::Leader {
            let last = self.raw.raft.raft_log.last_index();
            self.catch_up_to = Some(last);
            info!(
                channel = %self.channel,
                term = self.raw.raft.term,
                catch_up_to = last,
                "became raft leader"
            );
            // The empty entry of the new term may already be applied.
            if self.applied >= last {
                self.catch_up_to = None;
                self.forget_lost_proposals();
                self.reset_created();
            }
        } else if was_leader {
            info!(
                channel = %self.channel,
                term = self.raw.raft.term,
                "lost raft leadership"
            );
            self.catch_up_to = None;
            self.reject_pending("the raft leader changed; resubmit");
        }
    }

    /// Envelopes cut into no proposed block: their committed-mode waiters learn now.
    pub(super) fn reject_pending(&mut self, reason: &str) {
        self.batch_deadline = None;
        for item in self.cutter.cut() {
            self.reject(&item.tx_id, reason);
        }
        self.reset_created();
    }

    /// Envelopes this node forwarded to a leader of a term before `term` and that are not
    /// written yet were lost with that leader. (A waiter whose envelope was written is
    /// gone already, so telling it is a no-op.)
    pub(super) fn forget_lost_forwards(&mut self, term: u64) {
        let (lost, keep): (Vec<_>, Vec<_>) = self.forwarded.drain(..).partition(|(_, t)| *t < term);
        self.forwarded.extend(keep);
        for (id, _) in lost {
            self.reject(
                &id,
                "the raft leader that took the envelope failed before ordering it; resubmit",
            );
        }
    }

    /// Blocks this node proposed in a term before `term` and has not written: lost.
    /// Without this, a deposed leader's lost proposal waited for its height to be written
    /// by someone; when no more envelopes came, its committed-mode waiters waited forever
    /// (seed 30).
    pub(super) fn forget_proposals_before(&mut self, term: u64) {
        let lost: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, b)| b.term < term)
            .map(|(n, _)| *n)
            .collect();
        for number in lost {
            if let Some(b) = self.inflight.remove(&number) {
                for id in b.tx_ids {
                    self.reject(&id, LEADER_CHANGED);
                }
            }
        }
    }

    /// This node's proposals for heights the ledger now holds (written from pulled
    /// blocks, after a snapshot): envelopes the block written there does not carry
    /// (`carried`, by number) were lost. Before, such proposals stayed in flight forever
    /// and their committed-mode waiters never heard (seed 785).
    pub(super) fn settle_written_proposals(&mut self, carried: &[(u64, Vec<String>)]) {
        let decided = {
            let rest = self.inflight.split_off(&self.tip.height);
            std::mem::replace(&mut self.inflight, rest)
        };
        for (number, proposed) in decided {
            let there: HashSet<&str> = carried
                .iter()
                .filter(|(n, _)| *n == number)
                .flat_map(|(_, ids)| ids.iter().map(String::as_str))
                .collect();
            for id in proposed
                .tx_ids
                .iter()
                .filter(|id| !there.contains(id.as_str()))
            {
                self.reject(id, LEADER_CHANGED);
            }
        }
    }

    /// Proposals of an earlier term that are not in the log (the log is fully applied and
    /// the ledger is past none of them): their waiters learn they were dropped.
    pub(super) fn forget_lost_proposals(&mut self) {
        let lost = self.inflight.split_off(&self.tip.height);
        for (_, b) in lost {
            for id in b.tx_ids {
                self.reject(&id, LEADER_CHANGED);
            }
        }
    }
}
