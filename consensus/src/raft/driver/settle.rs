//! Role changes and what they settle: a new leader's catch-up, and telling the waiters
//! of envelopes that were lost with a leader or a proposal.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use raft::{StateRole, Storage};
use tracing::info;

use super::{tx_id_of, Driver};

impl Driver {
    /// Notes role changes: a new leader first applies its whole log; a deposed one
    /// answers the waiters of envelopes it will never propose.
    pub(super) fn publish(&mut self) {
        let role = self.raw.raft.state;
        if role != self.role {
            let was_leader = self.role == StateRole::Leader;
            self.role = role;
            if role == StateRole::Leader {
                let last = self.raw.raft.raft_log.last_index();
                self.catch_up_to = Some(last);
                info!(
                    channel = self.channel_id(),
                    term = self.raw.raft.term,
                    catch_up_to = last,
                    "became raft leader"
                );
                // The empty entry of the new term may already be applied.
                if self.applied >= last {
                    self.catch_up_to = None;
                    self.forget_lost_proposals();
                    self.support.reset_created();
                }
            } else if was_leader {
                info!(
                    channel = self.channel_id(),
                    term = self.raw.raft.term,
                    "lost raft leadership"
                );
                self.catch_up_to = None;
                self.reject_pending("the raft leader changed; resubmit");
            }
        }
        let leader = self.raw.raft.leader_id;
        if self.shared.leader.swap(leader, Ordering::AcqRel) != leader {
            self.shared.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        self.shared
            .committed
            .store(self.raw.raft.raft_log.committed, Ordering::Relaxed);
        self.shared.applied.store(self.applied, Ordering::Relaxed);
        self.shared.snapshot_index.store(
            self.raw.store().first_index().unwrap_or(1) - 1,
            Ordering::Relaxed,
        );
        let active = if role == StateRole::Leader {
            self.raw
                .raft
                .prs()
                .iter()
                .filter(|(id, pr)| **id == self.id || pr.recent_active)
                .count() as u64
        } else {
            0
        };
        self.shared.active_nodes.store(active, Ordering::Relaxed);
        self.shared
            .term
            .store(self.raw.raft.term, Ordering::Release);
        self.shared
            .is_leader
            .store(role == StateRole::Leader, Ordering::Release);
        self.shared.accepting.store(
            role == StateRole::Leader && self.catch_up_to.is_none(),
            Ordering::Release,
        );
        let name = match role {
            StateRole::Leader => "leader",
            StateRole::Follower => "follower",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
        };
        if let Ok(mut r) = self.shared.role.write() {
            if r.as_str() != name {
                *r = name.to_string();
            }
        }
    }

    /// Envelopes cut into no proposed block: their committed-mode waiters learn now.
    pub(super) fn reject_pending(&mut self, reason: &str) {
        self.batch_deadline = None;
        for item in self.cutter.cut() {
            self.support
                .notify_rejected(&item.tx_id, reason.to_string());
        }
        self.support.reset_created();
    }

    /// Entries are applied in log order, so once an entry of `term` is applied every entry
    /// of an earlier term that will ever commit is already in the ledger: an envelope
    /// this node forwarded to an earlier term's leader and not yet written was lost with
    /// that leader. (A waiter whose envelope was written is gone already, so telling the
    /// others is a no-op for it.)
    pub(super) fn forget_lost_forwards(&mut self, term: u64) {
        let lost: Vec<String> = {
            let mut forwarded = self
                .shared
                .forwarded
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let (old, keep): (Vec<_>, Vec<_>) = forwarded.drain(..).partition(|(_, t)| *t < term);
            forwarded.extend(keep);
            old.into_iter().map(|(id, _)| id).collect()
        };
        for id in lost {
            self.support.notify_rejected(
                &id,
                "the raft leader that took the envelope failed before ordering it; resubmit".into(),
            );
        }
    }

    /// Blocks this node proposed in a term before `term` and has not written: lost. The
    /// same argument as for forwards — entries are applied in log order, so once an entry
    /// of `term` is applied, no entry of an earlier term will be applied after it. Without
    /// this, a deposed leader's lost proposal waited for its height to be written by
    /// someone; when no more envelopes came, its committed-mode waiters waited forever
    /// (found by the raft simulation, seed 30).
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
                    self.support.notify_rejected(
                        &id,
                        "the raft leader changed before the envelope was ordered; resubmit".into(),
                    );
                }
            }
        }
    }

    /// This node's proposals for heights the ledger already holds (written from pulled
    /// blocks, after a snapshot): envelopes the block written there does not carry were
    /// lost, and their waiters learn it (those it carries learned their block when it was
    /// written). Before, such proposals stayed in flight forever and their committed-mode
    /// waiters never heard (found by the raft simulation, seed 785).
    pub(super) fn settle_written_proposals(&mut self) {
        let height = self.support.height();
        let decided = {
            let rest = self.inflight.split_off(&height);
            std::mem::replace(&mut self.inflight, rest)
        };
        for (number, proposed) in decided {
            let carried: HashSet<String> = match self.support.ledger().block(number) {
                Ok(Some(b)) => b
                    .data
                    .iter()
                    .flat_map(|d| d.data.iter())
                    .filter_map(|e| tx_id_of(e))
                    .collect(),
                _ => HashSet::new(),
            };
            for id in proposed.tx_ids.iter().filter(|id| !carried.contains(*id)) {
                self.support.notify_rejected(
                    id,
                    "the raft leader changed before the envelope was ordered; resubmit".into(),
                );
            }
        }
    }

    /// Proposals of an earlier term that are not in the log (the log is fully applied and
    /// the ledger is past none of them): their waiters learn they were dropped.
    pub(super) fn forget_lost_proposals(&mut self) {
        let height = self.support.height();
        let lost = self.inflight.split_off(&height);
        for (_, b) in lost {
            for id in b.tx_ids {
                self.support.notify_rejected(
                    &id,
                    "the raft leader changed before the envelope was ordered; resubmit".into(),
                );
            }
        }
    }
}
