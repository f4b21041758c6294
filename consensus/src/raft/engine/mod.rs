//! The raft engine of one channel: every decision of a raft consenter as a pure function
//! of its inputs — `step(Input) -> Vec<Command>` — over raft-rs's `RawNode` and an
//! in-memory view of the log ([`LogView`]).
//!
//! The engine reads no clock (time arrives as [`Input::Time`]), no OS randomness (raft-rs
//! draws election timeouts from its own RNG unless [`RaftOptions::election_seed`] fixes
//! them, as a simulation does) and no disk: what it knows of the ledger is the
//! [`ChainTip`] it was started with, moved by the blocks it orders and by what a
//! [`Input::CaughtUp`] reports. It writes nothing either; it says what to do:
//!
//! | Command | The driver must |
//! |---|---|
//! | [`Command::Send`] | hand the message to the transport (best effort: raft retransmits) |
//! | [`Command::Persist`] | make the [`LogWrite`] durable (synced except a commit index) |
//! | [`Command::WriteBlock`] | sign and append the block to the ledger (synced), answering its committed-mode waiters |
//! | [`Command::CatchUp`] | make the ledger hold the named block (pulling and verifying the blocks up to it from the other consenters, or checking the one it has), then step [`Input::CaughtUp`] before anything else |
//! | [`Command::Answer`] | answer the proposal's sender |
//! | [`Command::Reject`] | tell the tx id's committed-mode waiter that its envelope will not be written |
//! | [`Command::ArmTimer`] | step [`Input::Time`] no later than then |
//! | [`Command::Reconfigure`] | point the transport at the channel's new consenters |
//! | [`Command::Stop`] | stop stepping the engine (then [`Engine::shut_down`]) |
//!
//! **The driver executes commands in order and stops at the first that fails.** That is
//! the whole durability contract: the engine emits a `Persist` before every message that
//! promises it and before any block that refers to its entries, and applies the write to
//! its own view as it emits it; a failed write stops the node before anything that
//! depended on it leaves, and a crash loses the view together with whatever had not
//! become durable. There is therefore no "persisted" input: by the time the engine is
//! stepped again, every command it returned is done. Sends need no completion either: the
//! transport is best effort and a lost snapshot message is reported as finished at once
//! (see [`ready`]), so the leader probes again instead of waiting for a report that may
//! never come.
//!
//! Inputs arrive between two [`Input::Flush`]es in any number; a flush handles raft's
//! `Ready` — one synced write for everything that arrived — which is the driver's group
//! commit. The rules each part keeps are in its module: [`propose`] (a leader taking
//! envelopes), [`apply`] (committed entries to blocks, membership, compaction), [`ready`]
//! (the `Ready` contract and snapshot installation), [`settle`] (role changes and lost
//! envelopes).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use raft::{RawNode, StateRole};
use tracing::info;

use ordo_proto::block;
use ordo_proto::hash::Hash;
use ordo_proto::pb::common::{Block, Consenter};

use super::storage::{LogView, LogWrite};
use super::RaftOptions;
use crate::chain::ChainError;
use crate::cutter::{BatchItem, BlockCutter};

mod apply;
mod io;
mod propose;
mod ready;
mod settle;
#[cfg(test)]
mod tests;

pub use io::{
    BlockMark, BlockWrite, CaughtUp, ChainTip, Command, EngineStatus, Input, Origin, Proposal,
    Restored, Stopped, WaiterId,
};

/// An envelope in the cutter, with its tx id for answering waiters.
struct Item {
    envelope: Bytes,
    tx_id: String,
}

impl BatchItem for Item {
    fn size_bytes(&self) -> usize {
        self.envelope.len()
    }
}

/// A block this node proposed and has not applied yet.
struct Inflight {
    hash: Hash,
    tx_ids: Vec<String>,
    is_config: bool,
    /// The term it was proposed in.
    term: u64,
}

/// Forwarded envelopes remembered for a leader change (oldest forgotten first; far more
/// than Broadcast streams keep in flight).
const MAX_TRACKED_FORWARDS: usize = 100_000;

/// The raft engine of one channel.
pub struct Engine {
    id: u64,
    channel: String,
    raw: RawNode<LogView>,
    options: RaftOptions,
    cutter: BlockCutter<Item>,
    /// The ledger as the commands emitted so far leave it.
    tip: ChainTip,
    /// Number and hash of the last block built (ahead of `tip` while proposals fly).
    created: (u64, Hash),
    /// Blocks written by entries, for choosing a compaction point.
    marks: VecDeque<BlockMark>,
    /// Proposed blocks by number, until applied.
    inflight: BTreeMap<u64, Inflight>,
    /// Index of the last entry applied to the ledger.
    applied: u64,
    /// Term of the last entry applied.
    applied_term: u64,
    /// A new leader takes envelopes once it has applied up to this index.
    catch_up_to: Option<u64>,
    role: StateRole,
    /// Index of the last membership change applied (compaction never goes below it).
    last_conf_index: u64,
    /// Set once this node applied its own removal.
    evicted: bool,
    /// Envelopes this node forwarded, with the term of the leader that took them.
    forwarded: VecDeque<(String, u64)>,
    /// The time of the first [`Input::Time`].
    started: Option<Duration>,
    /// The time of the last [`Input::Time`].
    now: Duration,
    /// Wall-clock seconds of the last [`Input::Time`].
    unix_secs: u64,
    next_tick: Duration,
    batch_deadline: Option<Duration>,
    /// The last deadline told to the driver.
    armed: Option<Duration>,
    /// Followers sent a snapshot in this flush, reported after it.
    snapshots_sent: Vec<u64>,
    /// A `Ready` paused on a [`Command::CatchUp`].
    paused: Option<raft::Ready>,
    /// Set on [`Input::Halt`] while a leader orders what it took.
    halting: bool,
    /// Set once [`Command::Stop`] was emitted.
    stopped: bool,
    out: Vec<Command>,
}

/// A node's election jitter in `0..election_tick` from `seed` (SplitMix64 of the seed and
/// the node id): the same seed gives every node the same timeout on every run.
pub(crate) fn seeded_jitter(seed: u64, id: u64, election_tick: usize) -> usize {
    let mut z = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % election_tick.max(1) as u64) as usize
}

impl Engine {
    /// Starts the engine of node `id` on channel `channel` from what its driver
    /// `restored`; time starts at zero.
    pub fn new(
        id: u64,
        channel: &str,
        options: RaftOptions,
        restored: Restored,
    ) -> Result<Self, ChainError> {
        let Restored {
            view,
            applied,
            tip,
            marks,
        } = restored;
        // raft-rs draws each election timeout from [min, max) with its own thread RNG;
        // a seeded run fixes every node's timeout instead (distinct per node, so that
        // elections still settle), making the engine a function of the seed.
        let (min_election_tick, max_election_tick) = match options.election_seed {
            Some(seed) => {
                let jitter = seeded_jitter(seed, id, options.election_tick);
                let min = options.election_tick + jitter;
                (min, min + 1)
            }
            None => (0, 0),
        };
        let config = raft::Config {
            id,
            election_tick: options.election_tick,
            heartbeat_tick: options.heartbeat_tick,
            min_election_tick,
            max_election_tick,
            applied,
            max_size_per_msg: 4 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ChainError::Unsupported(format!("raft settings: {e}")))?;
        let logger = super::logger::for_channel(channel);
        let mut raw = RawNode::new(&config, view, &logger)
            .map_err(|e| ChainError::Storage(format!("raft: {e}")))?;
        let voters = raw.store().conf_state().voters.clone();
        if voters == [id] {
            // Alone in the group: no one to wait for.
            let _ = raw.campaign();
        }
        info!(
            channel,
            id = format_args!("{id:x}"),
            applied,
            voters = voters.len(),
            "raft chain started"
        );
        let mut engine = Self {
            id,
            channel: channel.to_string(),
            raw,
            cutter: BlockCutter::new(tip.state.limits),
            created: (tip.height, tip.last_hash),
            tip,
            marks: marks.into(),
            inflight: BTreeMap::new(),
            applied,
            applied_term: 0,
            catch_up_to: None,
            role: StateRole::Follower,
            last_conf_index: applied,
            evicted: false,
            forwarded: VecDeque::new(),
            started: None,
            now: Duration::ZERO,
            unix_secs: 0,
            next_tick: options.tick_interval,
            batch_deadline: None,
            armed: None,
            snapshots_sent: Vec::new(),
            paused: None,
            halting: false,
            stopped: false,
            out: Vec::new(),
            options,
        };
        // A lone voter leads from the start: envelopes queued before its first flush,
        // and a halt that comes before it, find it leading (the conformance suite's
        // `restart_resumes`: a halt before the first flush dropped the queue).
        engine.note_role();
        Ok(engine)
    }

    /// Steps one input; returns what the driver must do, in order.
    pub fn step(&mut self, input: Input) -> Vec<Command> {
        if self.stopped {
            if let Input::Propose(p) = input {
                self.answer(p.waiter, &p.request.tx_id, Err(ChainError::ShuttingDown));
            }
            return std::mem::take(&mut self.out);
        }
        if self.paused.is_some() {
            // Only the catch-up's report may come now; the driver blocks on the
            // catch-up, so anything else is a driver bug, refused without harm.
            match input {
                Input::CaughtUp(c) => self.on_caught_up(c),
                Input::Propose(p) => {
                    let e = self.not_leader_error();
                    self.answer(p.waiter, &p.request.tx_id, Err(e));
                }
                _ => {}
            }
            return self.finish_step();
        }
        match input {
            Input::Time { now, unix_secs } => self.on_time(now, unix_secs),
            Input::Message { from, bytes } => self.on_message(from, &bytes),
            Input::Propose(p) => self.propose(p),
            Input::Forwarded { tx_id, term } => {
                if self.forwarded.len() >= MAX_TRACKED_FORWARDS {
                    self.forwarded.pop_front();
                }
                self.forwarded.push_back((tx_id, term));
            }
            Input::Flush => self.flush(),
            Input::CaughtUp(_) => {}
            Input::Halt => {
                if self.role == StateRole::Leader {
                    // A leader finishes what it took (queued, pending, in flight)
                    // before it stops: the driver hands it every envelope still queued
                    // ([`EngineStatus::takes_proposals`]) and stops once the engine is
                    // [`EngineStatus::drained`] and the queue empty (bounded in real
                    // time by the driver).
                    self.halting = true;
                } else {
                    self.stop(Stopped::Halted);
                }
            }
        }
        self.finish_step()
    }

    /// After the last step: the envelopes cut into no block learn the chain stopped.
    pub fn shut_down(&mut self, reason: &str) -> Vec<Command> {
        self.reject_pending(reason);
        self.stopped = true;
        std::mem::take(&mut self.out)
    }

    /// What the engine publishes.
    pub fn status(&self) -> EngineStatus {
        let leader = self.role == StateRole::Leader;
        let active_nodes = if leader {
            self.raw
                .raft
                .prs()
                .iter()
                .filter(|(id, pr)| **id == self.id || pr.recent_active)
                .count() as u64
        } else {
            0
        };
        EngineStatus {
            role: self.role,
            leader: self.raw.raft.leader_id,
            term: self.raw.raft.term,
            committed: self.raw.raft.raft_log.committed,
            applied: self.applied,
            snapshot_index: self.raw.store().snapshot_index(),
            active_nodes,
            accepting: !self.stopped && leader && self.catch_up_to.is_none(),
            takes_proposals: !self.stopped
                && if self.halting {
                    self.drains()
                } else {
                    self.accepting()
                },
            evicted: self.evicted,
            drained: self.drained(),
        }
    }

    /// The channel's name (for logs).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The ledger height as the commands emitted so far leave it.
    pub fn height(&self) -> u64 {
        self.tip.height
    }

    /// Consenter names by raft id of the configuration in force.
    pub fn consenters(&self) -> Vec<Consenter> {
        self.tip
            .state
            .config
            .orderer
            .as_ref()
            .map(|o| o.consenters.clone())
            .unwrap_or_default()
    }

    fn finish_step(&mut self) -> Vec<Command> {
        if !self.stopped {
            let deadline = match self.batch_deadline {
                Some(b) if b < self.next_tick => b,
                _ => self.next_tick,
            };
            if self.armed != Some(deadline) {
                self.armed = Some(deadline);
                self.out.push(Command::ArmTimer(deadline));
            }
        }
        std::mem::take(&mut self.out)
    }

    fn stop(&mut self, why: Stopped) {
        if !self.stopped {
            self.stopped = true;
            self.out.push(Command::Stop(why));
        }
    }

    /// A leader with room in its pipeline and no config block in flight.
    fn accepting(&self) -> bool {
        self.role == StateRole::Leader
            && self.catch_up_to.is_none()
            && self.inflight.len() < self.options.max_inflight_blocks
            && !self.inflight.values().any(|b| b.is_config)
    }

    /// A halting leader drains its queue once it applied its log and no config block
    /// is in flight: envelopes behind a config block must be cut with the limits it
    /// brings (found by the conformance suite under CI load: a halt right after a
    /// batch-size change drained ten envelopes into one block under the old limit).
    fn drains(&self) -> bool {
        self.role == StateRole::Leader
            && self.catch_up_to.is_none()
            && !self.inflight.values().any(|b| b.is_config)
    }

    fn on_time(&mut self, now: Duration, unix_secs: u64) {
        if self.started.is_none() {
            // Ticks count from the first time the engine is told, whatever the driver's
            // clock read then (a simulation restarts a node in the middle of its run).
            self.started = Some(now);
            self.next_tick = now + self.options.tick_interval;
        }
        self.now = self.now.max(now);
        self.unix_secs = unix_secs;
        while self.now >= self.next_tick {
            self.raw.tick();
            self.next_tick += self.options.tick_interval;
        }
        if let Some(d) = self.batch_deadline {
            if self.now >= d {
                self.batch_deadline = None;
                let batch = self.cutter.cut();
                if !batch.is_empty() {
                    self.propose_block(batch, false);
                }
            }
        }
    }

    fn on_message(&mut self, from: u64, bytes: &[u8]) {
        use protobuf::Message as _;
        let msg = match raft::eraftpb::Message::parse_from_bytes(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(channel = %self.channel, error = %e, "undecodable raft message dropped");
                return;
            }
        };
        if msg.from != from || msg.to != self.id {
            tracing::warn!(
                channel = %self.channel,
                sender = format_args!("{from:x}"),
                claimed = format_args!("{:x}", msg.from),
                "raft message with a forged sender or for another node dropped"
            );
            return;
        }
        if let Some(why) = self.aborts_raft(&msg) {
            tracing::warn!(
                channel = %self.channel,
                sender = format_args!("{from:x}"),
                kind = ?msg.get_msg_type(),
                "raft message dropped: {why}"
            );
            return;
        }
        if let Err(e) = self.raw.step(msg) {
            tracing::debug!(channel = %self.channel, error = %e, "raft message refused");
        }
    }

    /// Why raft-rs would abort the process on `msg` (its `fatal!`) or take a peer's word
    /// for a local decision, if it would: a local input (campaign, proposal, leader
    /// transfer, …), a message without a term (a vote request of term 0 makes raft-rs
    /// abort), a heartbeat committing past the end of this node's log, an append whose
    /// entries are out of order or of term 0, one "after entry N of term 0" for N > 0
    /// (raft-rs takes it as matching a log shorter than N), or one that rewrites an entry
    /// this node has committed. A correct consenter never sends any of these (local inputs
    /// stay local, every network message carries its sender's term, every entry but the
    /// founding entry 0 has a term, a leader commits on a follower only what that
    /// follower holds, committed entries never change), so such
    /// a message comes from a faulty or lying consenter — or from the fuzzer
    /// (`fuzz/src/targets/raft_message.rs`, which found them). Dropping it loses nothing
    /// a correct leader needs; stepping it would take down every channel of this node.
    fn aborts_raft(&self, msg: &raft::eraftpb::Message) -> Option<String> {
        use raft::eraftpb::MessageType;
        let log = &self.raw.raft.raft_log;
        let kind = msg.get_msg_type();
        // Raft's own local inputs never travel between nodes here: a peer sending one
        // would make this node campaign, propose or forget a peer on its say-so.
        if matches!(
            kind,
            MessageType::MsgHup
                | MessageType::MsgBeat
                | MessageType::MsgPropose
                | MessageType::MsgUnreachable
                | MessageType::MsgSnapStatus
                | MessageType::MsgCheckQuorum
                | MessageType::MsgReadIndex
                | MessageType::MsgReadIndexResp
                | MessageType::MsgTransferLeader
        ) {
            return Some("a local raft input sent over the network".into());
        }
        // raft-rs takes a term of 0 for a local message and answers a vote request of
        // term 0 with a response raft-rs itself then aborts on.
        if msg.term == 0 {
            return Some("a message without a term".into());
        }
        if kind == MessageType::MsgAppend {
            // raft-rs reads the term of an index past its log's end as 0, so an append
            // "after entry N of term 0" would match a log that does not reach N. Only the
            // founding entry 0 has term 0; every entry raft makes has a term.
            if msg.log_term == 0 && msg.index != 0 {
                return Some(format!(
                    "an append after entry {} of term 0 (only entry 0 has term 0)",
                    msg.index
                ));
            }
            // A correct leader's entries follow its previous entry one by one, with terms
            // that never go down nor pass its own (nor are 0); raft-rs slices its log on
            // that premise.
            let mut expected = msg.index.checked_add(1);
            let mut term = msg.log_term;
            for e in msg.get_entries() {
                if Some(e.index) != expected || e.term == 0 || e.term < term || e.term > msg.term {
                    return Some(format!(
                        "an append whose entries do not follow entry {} of term {} in order",
                        msg.index, msg.log_term
                    ));
                }
                expected = e.index.checked_add(1);
                term = e.term;
            }
        }
        match kind {
            MessageType::MsgHeartbeat if msg.commit > log.last_index() => Some(format!(
                "a heartbeat commits to {} past this log's last index {}",
                msg.commit,
                log.last_index()
            )),
            // raft-rs refuses (safely) an append whose previous entry does not match.
            MessageType::MsgAppend if log.match_term(msg.index, msg.log_term) => msg
                .get_entries()
                .iter()
                .filter(|e| e.index <= log.committed)
                .find(|e| log.term(e.index).ok() != Some(e.term))
                .map(|e| {
                    format!(
                        "an append rewrites committed entry {} (term {}; committed up to {})",
                        e.index, e.term, log.committed
                    )
                }),
            _ => None,
        }
    }

    /// The group commit: raft's `Ready`, role changes, a removal, a halting leader's
    /// progress.
    fn flush(&mut self) {
        self.on_ready();
        if self.paused.is_some() || self.stopped {
            return;
        }
        self.after_ready();
    }

    /// What follows a handled `Ready` (also after a paused one resumes).
    fn after_ready(&mut self) {
        self.note_role();
        if self.evicted {
            self.leave();
            self.stop(Stopped::Evicted);
            return;
        }
        if self.halting && self.role == StateRole::Leader && self.drains() {
            // One step of a graceful stop: once this leader has applied its log,
            // everything pending is proposed.
            let batch = self.cutter.cut();
            self.batch_deadline = None;
            if !batch.is_empty() {
                self.propose_block(batch, false);
            }
        }
    }

    /// A halting node with nothing left to order: a follower, or a leader that applied
    /// its log, holds nothing pending and has no block in flight. Only the driver knows
    /// whether envelopes still wait in its queue, so it decides when to stop.
    fn drained(&self) -> bool {
        self.halting
            && (self.role != StateRole::Leader
                || (self.drains() && self.cutter.pending_count() == 0 && self.inflight.is_empty()))
    }

    /// Builds the block that follows the last one built.
    fn create_next_block(&mut self, data: Vec<Bytes>) -> Block {
        let b = block::build(self.created.0, self.created.1, data);
        self.created = (self.created.0 + 1, block::hash(&b));
        b
    }

    /// Forgets blocks built but not written: the next one follows the ledger's tip.
    fn reset_created(&mut self) {
        self.created = (self.tip.height, self.tip.last_hash);
    }

    /// Takes back `b`, the last block built, whose proposal was dropped.
    fn uncreate(&mut self, b: &Block) {
        let number = block::number(b);
        if self.created.0 != number + 1 {
            return;
        }
        let prev = b
            .header
            .as_ref()
            .and_then(|h| Hash::try_from(h.previous_hash.as_ref()).ok());
        if let Some(prev) = prev {
            self.created = (number, prev);
        }
    }

    /// Emits a raft-state write and shows it to raft (see the module docs).
    fn persist(&mut self, w: LogWrite) {
        self.raw.mut_store().apply(&w);
        self.out.push(Command::Persist(w));
    }

    fn reject(&mut self, tx_id: &str, reason: impl Into<String>) {
        self.out.push(Command::Reject {
            tx_id: tx_id.to_string(),
            reason: reason.into(),
        });
    }
}
