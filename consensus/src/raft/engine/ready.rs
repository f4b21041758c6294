//! raft-rs's `Ready` contract, as commands, and installing a leader's snapshot.
//!
//! For each `Ready`, in this order: messages a leader may send at once; a snapshot
//! (the `Ready` pauses on a [`Command::CatchUp`] until the ledger holds the blocks up to
//! it); committed entries applied (blocks written — their entries were persisted in an
//! earlier `Ready`, raft-rs hands out only those); new entries and hard state persisted
//! in one synced write; the messages that had to wait for that write; then the light
//! ready's commit index (not synced), messages and committed entries; compaction.
//!
//! Snapshots sent to followers are reported finished as soon as they are handed to the
//! transport. A leader that sent a snapshot pauses replication to that follower until
//! the application reports the snapshot's fate; the transport is best effort, so waiting
//! for a delivery report would leave the follower behind for good when the snapshot is
//! lost (found by the raft simulation, seed 13: a follower stuck 7 blocks behind
//! forever). Reported finished, the leader probes the follower: it answers from the
//! snapshot if it got it, and otherwise its rejection makes the leader send a new one.

use protobuf::Message as _;
use raft::eraftpb::{Message as RaftMessage, MessageType};
use raft::{Ready, SnapshotStatus};
use tracing::{info, warn};

use super::{BlockMark, CaughtUp, Command, Engine, Stopped};
use crate::raft::parse_snapshot_data;

impl Engine {
    /// Handles raft's `Ready`, if any.
    pub(super) fn on_ready(&mut self) {
        if !self.raw.has_ready() {
            return;
        }
        let mut ready = self.raw.ready();
        if !ready.messages().is_empty() {
            self.send(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            if let Err(e) = self.begin_install(&ready) {
                self.fail(e);
                return;
            }
            self.paused = Some(ready);
            return;
        }
        self.finish_ready(ready);
    }

    /// The rest of a `Ready` once any snapshot in it is installed.
    fn finish_ready(&mut self, mut ready: Ready) {
        if let Err(e) = self.apply(ready.take_committed_entries()) {
            return self.fail(e);
        }
        let entries = ready.take_entries();
        let hs = ready.hs().cloned();
        if let Some(w) = self.raw.store().append(entries, hs) {
            self.persist(w);
        }
        if !ready.persisted_messages().is_empty() {
            self.send(ready.take_persisted_messages());
        }
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let w = self.raw.store().commit(commit);
            self.persist(w);
        }
        self.send(light.take_messages());
        if let Err(e) = self.apply(light.take_committed_entries()) {
            return self.fail(e);
        }
        self.raw.advance_apply();
        for to in std::mem::take(&mut self.snapshots_sent) {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        if let Err(e) = self.maybe_compact() {
            self.fail(e);
        }
    }

    /// The node cannot go on: its raft state or a peer's data is unusable.
    pub(super) fn fail(&mut self, reason: String) {
        warn!(channel = %self.channel, error = %reason, "the raft engine stops");
        self.stop(Stopped::Failed(reason));
    }

    fn send(&mut self, messages: Vec<RaftMessage>) {
        for m in messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.push(m.to);
            }
            match m.write_to_bytes() {
                Ok(message) => self.out.push(Command::Send { to: m.to, message }),
                Err(e) => warn!(error = %e, "raft message does not encode"),
            }
        }
    }

    /// A snapshot from the leader: this node's log is behind the others' compaction
    /// point. The ledger must first hold the block the snapshot names: pulled (and
    /// verified) from the other consenters, the leader first, or — if the ledger is
    /// past it — checked to be the same block.
    fn begin_install(&mut self, ready: &Ready) -> Result<(), String> {
        let snap = ready.snapshot();
        let meta = snap.get_metadata();
        let (number, hash) = parse_snapshot_data(snap.get_data()).ok_or_else(|| {
            format!(
                "raft snapshot at index {} carries no block position",
                meta.index
            )
        })?;
        info!(
            channel = %self.channel,
            index = meta.index,
            block = number,
            height = self.tip.height,
            "installing a raft snapshot"
        );
        let leader = self.raw.raft.leader_id;
        let mut sources: Vec<u64> = self
            .voters()
            .into_iter()
            .filter(|id| *id != self.id && *id != leader)
            .collect();
        if leader != 0 && leader != self.id {
            sources.insert(0, leader);
        }
        let tx_ids_at = self.inflight.range(..=number).map(|(n, _)| *n).collect();
        self.out.push(Command::CatchUp {
            to: number,
            hash,
            sources,
            tx_ids_at,
        });
        Ok(())
    }

    /// The ledger holds the snapshot's block: the raft log restarts at the snapshot and
    /// the paused `Ready` goes on.
    pub(super) fn on_caught_up(&mut self, caught_up: CaughtUp) {
        let Some(ready) = self.paused.take() else {
            return;
        };
        let snap = ready.snapshot().clone();
        let meta = snap.get_metadata();
        let Some((number, hash)) = parse_snapshot_data(snap.get_data()) else {
            return self.fail(format!("raft snapshot at index {} unreadable", meta.index));
        };
        if caught_up.tip.height <= number {
            return self.fail(format!(
                "the catch-up to block {number} left the ledger at height {}",
                caught_up.tip.height
            ));
        }
        let moved = caught_up.tip.height != self.tip.height;
        self.tip = caught_up.tip;
        if moved {
            self.reset_created();
        }
        let w = self.raw.store().restart(&snap, self.applied);
        self.persist(w);
        self.applied = meta.index;
        // What entries would have told this node one by one, the snapshot tells at once:
        // its proposals below the snapshot's height are decided (by the blocks now in the
        // ledger), and those of earlier terms above it are lost.
        self.settle_written_proposals(&caught_up.carried);
        if meta.term > self.applied_term {
            self.forget_lost_forwards(meta.term);
            self.forget_proposals_before(meta.term);
        }
        self.applied_term = meta.term;
        self.last_conf_index = meta.index;
        self.marks.clear();
        self.marks.push_back(BlockMark {
            index: meta.index,
            number,
            hash,
        });
        self.on_config_applied();
        let voters = &meta.get_conf_state().voters;
        if !voters.is_empty() && !voters.contains(&self.id) {
            self.evicted = true;
        }
        self.finish_ready(ready);
        if !self.stopped {
            self.after_ready();
        }
    }
}
