//! The raft loop of one channel: owns the `RawNode`, the block cutter and the ledger
//! writes, on one thread.
//!
//! Each turn takes whatever arrived (raft messages, envelopes when this node is an
//! accepting leader with room in its pipeline, timers), then handles raft's `Ready`:
//! messages a leader may send at once, the snapshot, committed entries (blocks written to
//! the ledger), new entries and hard state persisted with one sync, then the messages
//! that had to wait for that sync.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, Entry, EntryType, Message as RaftMessage, MessageType, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole, Storage};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::hash::Hash;
use ordo_proto::pb::common::Block;
use ordo_proto::verify::ChainVerifier;

use super::membership::{self, MembershipChange};
use super::storage::LogStorage;
use super::transport::MAX_PULL_BLOCKS;
use super::{consenter_metadata, parse_snapshot_data, raft_position, snapshot_data};
use super::{Answer, Proposal, RaftSetup, Shared};
use crate::chain::ChainError;
use crate::cutter::{BatchItem, BlockCutter};
use crate::support::ChainSupport;
use ordo_ledger::LogPosition;

/// Leading byte of an entry's data: a normal block.
const KIND_BLOCK: u8 = 1;
/// Leading byte of an entry's data: a config block.
const KIND_CONFIG_BLOCK: u8 = 2;
/// Raft messages taken per turn before the loop handles `Ready` (bounds latency).
const MAX_STEPS_PER_TURN: usize = 256;
/// Envelopes taken per turn.
const MAX_PROPOSALS_PER_TURN: usize = 1_024;
/// How long one block pull from one consenter may take before the next is tried.
const PULL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Pause between rounds of block pulls when no consenter could serve them.
const PULL_RETRY: std::time::Duration = std::time::Duration::from_millis(500);
/// Blocks searched back from the tip for the one at a compaction point.
const MAX_SNAPSHOT_SEARCH: u64 = 100_000;

/// Why the raft loop stops.
enum Stop {
    /// Halt was requested while the loop could not finish a step (a pull in progress).
    Halted,
    /// Storage, or a peer's data, failed in a way the loop cannot get past.
    Failed(String),
    /// The simulator's crash point was reached (never in a running orderer).
    Crashed,
}

impl From<String> for Stop {
    fn from(e: String) -> Self {
        Stop::Failed(e)
    }
}

/// Points inside a turn between two durable writes, where a simulated crash can stop
/// the loop ([`super::SteppedRaft::set_crash_point`]). A crash between turns finds every
/// write of a turn done; the windows inside one are where the raft state and the ledger
/// disagree after a restart (see [`super::recovery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Committed entries written to the ledger as blocks; the `Ready`'s entries and hard
    /// state (its commit index) not yet persisted.
    AfterApply,
    /// The `Ready` persisted; its messages not sent, the light ready not handled.
    AfterPersist,
    /// A snapshot's missing blocks pulled into the ledger; the snapshot not yet recorded
    /// in the raft state.
    AfterBlockPull,
}

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

pub(super) struct Driver {
    id: u64,
    raw: RawNode<LogStorage>,
    support: Arc<ChainSupport>,
    transport: Arc<dyn super::RaftTransport>,
    options: super::RaftOptions,
    shared: Arc<Shared>,
    proposals: mpsc::Receiver<Proposal>,
    steps: mpsc::Receiver<(u64, Vec<u8>)>,
    halt: CancellationToken,
    failed: Arc<AtomicBool>,
    cutter: BlockCutter<Item>,
    batch_deadline: Option<Instant>,
    next_tick: Instant,
    /// Proposed blocks by number, until applied.
    inflight: BTreeMap<u64, Inflight>,
    /// Index of the last entry applied to the ledger.
    applied: u64,
    /// Term of the last entry applied.
    applied_term: u64,
    /// A new leader takes envelopes once it has applied up to this index.
    catch_up_to: Option<u64>,
    role: StateRole,
    /// Index of the last membership change applied (compaction never goes below it
    /// while the snapshot's membership would be a later one).
    last_conf_index: u64,
    /// Set once this node applied its own removal.
    evicted: bool,
    /// The runtime that runs the network side (block pulls block on it).
    handle: tokio::runtime::Handle,
    /// A simulator's clock; `None` reads the real one.
    clock: Option<super::stepped::ManualClock>,
    /// Where a simulated crash stops the loop mid-turn (see [`CrashPoint`]); `None`
    /// outside simulation.
    pub(super) crash_at: Option<CrashPoint>,
    /// Set when the loop stopped at `crash_at`.
    pub(super) crashed: bool,
    /// Followers sent a snapshot in this turn's `Ready`, reported after it.
    snapshots_sent: Vec<u64>,
}

pub(super) enum Input {
    Step(u64, Vec<u8>),
    Proposal(Proposal),
    Timer,
    Halt,
}

/// A node's election jitter in `0..election_tick` from `seed` (SplitMix64 of the seed and
/// the node id): the same seed gives every node the same timeout on every run.
pub(super) fn seeded_jitter(seed: u64, id: u64, election_tick: usize) -> usize {
    let mut z = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % election_tick.max(1) as u64) as usize
}

/// A block as raft entry data: a kind byte, then the block encoded without metadata
/// (each node adds its own signature when it applies the entry). Without metadata, the
/// bytes after the kind byte are what the ledger refers to instead of storing the block
/// again ([`logged_position`]).
fn entry_data(block: &Block, is_config: bool) -> Vec<u8> {
    let mut data = Vec::with_capacity(block.encoded_len() + 1);
    data.push(if is_config {
        KIND_CONFIG_BLOCK
    } else {
        KIND_BLOCK
    });
    if let Some(header) = &block.header {
        prost::encoding::message::encode(1, header, &mut data);
    }
    if let Some(body) = &block.data {
        prost::encoding::message::encode(2, body, &mut data);
    }
    data
}

/// Whether a raft entry carries a block the ledger may refer to: compaction keeps such
/// entries on disk (see [`super::storage::LogStorage::compact`]). Erring towards true
/// only keeps an entry longer than needed.
pub(super) fn carries_block(e: &Entry) -> bool {
    e.get_entry_type() == EntryType::EntryNormal
        && matches!(e.data.first(), Some(&KIND_BLOCK) | Some(&KIND_CONFIG_BLOCK))
}

/// Where the block of entry `e` sits in the entry's stored bytes (the protobuf encoding
/// `LogStorage::persist` wrote): rust-protobuf writes `data` after type, term and index
/// and before `context` and `sync_log`, so for a normal entry with neither, `data` ends
/// the encoding and the block starts one byte (the kind) into it. `None` when the block
/// is elsewhere (a conf change's context) — it is then stored inline. The ledger checks
/// the position against the entry before taking it.
fn logged_position(e: &Entry) -> Option<LogPosition> {
    if e.get_entry_type() != EntryType::EntryNormal
        || !e.context.is_empty()
        || e.sync_log
        || e.data.is_empty()
    {
        return None;
    }
    let size = e.compute_size() as usize;
    let offset = size.checked_sub(e.data.len())? + 1;
    Some(LogPosition {
        index: e.index,
        offset: u32::try_from(offset).ok()?,
    })
}

pub(super) use ordo_proto::envelope::tx_id_of;

/// How the raft loop talks to the chain that owns it.
pub(super) struct Links {
    /// What the loop publishes (leader, term, ...).
    pub shared: Arc<Shared>,
    /// Envelopes for the leader.
    pub proposals: mpsc::Receiver<Proposal>,
    /// Raft messages from other nodes.
    pub steps: mpsc::Receiver<(u64, Vec<u8>)>,
    /// Cancelled to stop the loop.
    pub halt: CancellationToken,
    /// Set when the loop stopped on a storage failure.
    pub failed: Arc<AtomicBool>,
}

impl Driver {
    pub(super) fn new(
        support: Arc<ChainSupport>,
        setup: &RaftSetup,
        links: Links,
        clock: Option<super::stepped::ManualClock>,
    ) -> Result<Self, ChainError> {
        let Links {
            shared,
            proposals,
            steps,
            halt,
            failed,
        } = links;
        let mut storage = LogStorage::open(support.ledger().consensus_log(), &setup.voters)
            .map_err(|e| ChainError::Storage(e.to_string()))?;
        let (applied, _) = super::recovery::reconcile(&mut storage, &support)
            .map_err(|e| ChainError::Storage(e.to_string()))?;
        let opts = setup.options;
        // raft-rs draws each election timeout from [min, max) with its own thread RNG;
        // a seeded run fixes every node's timeout instead (distinct per node, so that
        // elections still settle), making the core's behaviour a function of the seed.
        let (min_election_tick, max_election_tick) = match opts.election_seed {
            Some(seed) => {
                let jitter = seeded_jitter(seed, setup.id, opts.election_tick);
                let min = opts.election_tick + jitter;
                (min, min + 1)
            }
            None => (0, 0),
        };
        let config = raft::Config {
            id: setup.id,
            election_tick: opts.election_tick,
            heartbeat_tick: opts.heartbeat_tick,
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
        let logger = super::logger::for_channel(support.channel_id());
        let mut raw = RawNode::new(&config, storage, &logger)
            .map_err(|e| ChainError::Storage(format!("raft: {e}")))?;
        let voters = raw.store().conf_state().voters.clone();
        if voters == [setup.id] {
            // Alone in the group: no one to wait for.
            let _ = raw.campaign();
        }
        let limits = support.state().limits;
        info!(
            channel = support.channel_id(),
            id = format_args!("{:x}", setup.id),
            applied,
            voters = voters.len(),
            "raft chain started"
        );
        let mut driver = Self {
            id: setup.id,
            raw,
            transport: setup.transport.clone(),
            options: opts,
            shared,
            proposals,
            steps,
            halt,
            failed,
            cutter: BlockCutter::new(limits),
            batch_deadline: None,
            next_tick: clock.as_ref().map_or_else(Instant::now, |c| c.now()) + opts.tick_interval,
            inflight: BTreeMap::new(),
            applied,
            applied_term: 0,
            catch_up_to: None,
            role: StateRole::Follower,
            last_conf_index: applied,
            evicted: false,
            handle: tokio::runtime::Handle::current(),
            clock,
            crash_at: None,
            crashed: false,
            snapshots_sent: Vec::new(),
            support,
        };
        driver.publish();
        Ok(driver)
    }

    /// Stops the loop here when the simulator armed a crash at `here`: everything written
    /// so far stays, nothing after it happens — a process killed between two writes.
    fn crash_point(&mut self, here: CrashPoint) -> Result<(), Stop> {
        if self.crash_at == Some(here) {
            return Err(Stop::Crashed);
        }
        Ok(())
    }

    /// The time: the simulator's when it gave a clock, the real one otherwise.
    fn now(&self) -> Instant {
        self.clock.as_ref().map_or_else(Instant::now, |c| c.now())
    }

    pub(super) fn channel_id(&self) -> &str {
        self.support.channel_id()
    }

    fn accepting(&self) -> bool {
        self.role == StateRole::Leader
            && self.catch_up_to.is_none()
            && self.inflight.len() < self.options.max_inflight_blocks
            && !self.inflight.values().any(|b| b.is_config)
    }

    pub(super) fn run(mut self, handle: &tokio::runtime::Handle) {
        // Set on halt while a leader finishes what it accepted (bounded in time).
        let mut draining_until: Option<std::time::Instant> = None;
        loop {
            let input = self.next_input(handle, draining_until.is_some());
            if !self.turn(input, &mut draining_until) {
                break;
            }
        }
        self.finish();
    }

    /// One turn of the loop: `input`, then what else is already waiting (bounded), the
    /// timers, raft's `Ready`. False when the loop must stop. The thread of a
    /// [`super::RaftChain`] runs turns as inputs arrive; a [`super::SteppedRaft`] lets its
    /// caller run them (simulation).
    pub(super) fn turn(
        &mut self,
        input: Input,
        draining_until: &mut Option<std::time::Instant>,
    ) -> bool {
        match input {
            Input::Halt => {
                if self.role != StateRole::Leader {
                    return false;
                }
                // A leader finishes what it took (queued, pending, in flight) and
                // waits, briefly, for the blocks to commit.
                *draining_until =
                    Some(std::time::Instant::now() + std::time::Duration::from_secs(5));
            }
            Input::Step(from, m) => self.step(from, &m),
            Input::Proposal(p) => self.propose(p),
            Input::Timer => {}
        }
        // Take what else is already waiting, up to a bound.
        for _ in 0..MAX_STEPS_PER_TURN {
            match self.steps.try_recv() {
                Ok((from, m)) => self.step(from, &m),
                Err(_) => break,
            }
        }
        for _ in 0..MAX_PROPOSALS_PER_TURN {
            if draining_until.is_some() || !self.accepting() {
                break;
            }
            match self.proposals.try_recv() {
                Ok(p) => self.propose(p),
                Err(_) => break,
            }
        }
        self.on_timers();
        match self.on_ready() {
            Ok(()) => {}
            Err(Stop::Halted) => return false,
            Err(Stop::Crashed) => {
                self.crashed = true;
                return false;
            }
            Err(Stop::Failed(e)) => {
                error!(channel = self.channel_id(), error = %e, "raft storage failed; the chain stops");
                self.failed.store(true, Ordering::Release);
                self.support
                    .fail_all_waiters(&format!("raft storage failure: {e}"));
                return false;
            }
        }
        self.publish();
        if self.role != StateRole::Leader {
            // Envelopes queued while this node led: whoever waits for them learns
            // that it no longer does (they would otherwise sit in the queue).
            while let Ok(p) = self.proposals.try_recv() {
                let e = self.not_leader_error();
                self.answer(p.done, &p.request.tx_id, Err(e));
            }
        }
        if self.evicted {
            self.leave();
            return false;
        }
        if let Some(until) = *draining_until {
            if self.drain_for_halt() || std::time::Instant::now() >= until {
                return false;
            }
        }
        true
    }

    /// After the last turn: nobody may wait forever for an answer.
    pub(super) fn finish(mut self) {
        self.shared.is_leader.store(false, Ordering::Release);
        self.shared.accepting.store(false, Ordering::Release);
        self.reject_pending("the raft chain is shutting down");
        // Answer whoever still waits in the queue.
        self.proposals.close();
        while let Ok(p) = self.proposals.try_recv() {
            self.answer(p.done, &p.request.tx_id, Err(ChainError::ShuttingDown));
        }
        info!(
            channel = self.channel_id(),
            height = self.support.height(),
            "raft chain stopped"
        );
    }

    /// One step of a graceful stop: once this leader has applied its log, everything
    /// queued and pending is proposed. True when there is nothing left to wait for.
    fn drain_for_halt(&mut self) -> bool {
        if self.role != StateRole::Leader {
            return true;
        }
        // Not while a config block is in flight either: envelopes queued behind it must be
        // cut with the limits it brings, as `accepting` makes sure outside a halt (found by
        // the conformance suite under CI load: a halt right after a batch-size change
        // drained ten envelopes into one block under the old limit).
        if self.catch_up_to.is_some() || self.inflight.values().any(|b| b.is_config) {
            return false;
        }
        while let Ok(p) = self.proposals.try_recv() {
            self.propose(p);
        }
        let batch = self.cutter.cut();
        self.batch_deadline = None;
        if !batch.is_empty() {
            self.propose_block(batch, false);
        }
        self.inflight.is_empty()
    }

    fn next_input(&mut self, handle: &tokio::runtime::Handle, halting: bool) -> Input {
        let deadline = match self.batch_deadline {
            Some(b) if b < self.next_tick => b,
            _ => self.next_tick,
        };
        let accepting = self.accepting() && !halting;
        let halt = self.halt.clone();
        let steps = &mut self.steps;
        let proposals = &mut self.proposals;
        handle.block_on(async move {
            tokio::select! {
                biased;
                _ = halt.cancelled(), if !halting => Input::Halt,
                m = steps.recv() => m.map(|(from, m)| Input::Step(from, m)).unwrap_or(Input::Halt),
                p = proposals.recv(), if accepting => p.map(Input::Proposal).unwrap_or(Input::Halt),
                _ = tokio::time::sleep_until(deadline) => Input::Timer,
            }
        })
    }

    fn step(&mut self, from: u64, bytes: &[u8]) {
        let msg = match RaftMessage::parse_from_bytes(bytes) {
            Ok(m) => m,
            Err(e) => {
                warn!(channel = self.channel_id(), error = %e, "undecodable raft message dropped");
                return;
            }
        };
        if msg.from != from || msg.to != self.id {
            warn!(
                channel = self.channel_id(),
                sender = format_args!("{from:x}"),
                claimed = format_args!("{:x}", msg.from),
                "raft message with a forged sender or for another node dropped"
            );
            return;
        }
        if let Err(e) = self.raw.step(msg) {
            debug!(channel = self.channel_id(), error = %e, "raft message refused");
        }
    }

    fn on_timers(&mut self) {
        let now = self.now();
        while now >= self.next_tick {
            self.raw.tick();
            self.next_tick += self.options.tick_interval;
        }
        if let Some(d) = self.batch_deadline {
            if now >= d {
                self.batch_deadline = None;
                let batch = self.cutter.cut();
                if !batch.is_empty() {
                    self.propose_block(batch, false);
                }
            }
        }
    }

    /// Takes one envelope as leader: re-validates it if the config moved, cuts, proposes.
    fn propose(&mut self, p: Proposal) {
        if self.role != StateRole::Leader || self.catch_up_to.is_some() {
            let e = self.not_leader_error();
            self.answer(p.done, &p.request.tx_id, Err(e));
            return;
        }
        let req = p.request;
        if p.is_config {
            if req.config_seq != self.support.sequence() {
                let reason = format!(
                    "config update validated at sequence {} but the channel is at {}",
                    req.config_seq,
                    self.support.sequence()
                );
                self.answer(p.done, &req.tx_id, Err(ChainError::Revalidation(reason)));
                return;
            }
            let change = match self.membership_change(&req.envelope) {
                Ok(c) => c,
                Err(e) => {
                    self.answer(p.done, &req.tx_id, Err(e));
                    return;
                }
            };
            let pending = self.cutter.cut();
            if !pending.is_empty() {
                self.propose_block(pending, false);
            }
            self.batch_deadline = None;
            let item = Item {
                envelope: req.envelope,
                tx_id: req.tx_id,
            };
            let tx_id = item.tx_id.clone();
            self.propose_config_block(item, change);
            self.answer(p.done, &tx_id, Ok(self.raw.raft.term));
            return;
        }
        // As in every backend, the envelope is taken (the chain answers for it) and a
        // refusal on re-validation reaches its committed-mode waiter.
        if req.config_seq < self.support.sequence() {
            if let Err(e) = self.support.revalidate(&req.envelope) {
                debug!(tx_id = %req.tx_id, error = %e, "envelope refused on re-validation");
                self.refuse(p.done, p.forwarded, &req.tx_id, e.to_string());
                return;
            }
        }
        let tx_id = req.tx_id.clone();
        let item = Item {
            envelope: req.envelope,
            tx_id: req.tx_id,
        };
        match self.cutter.ordered(item, false) {
            Ok(o) => {
                for b in o.batches {
                    self.propose_block(b, false);
                }
                self.batch_deadline = if o.pending {
                    self.batch_deadline
                        .or(Some(self.now() + self.support.state().batch_timeout))
                } else {
                    None
                };
                self.answer(p.done, &tx_id, Ok(self.raw.raft.term));
            }
            Err(e) => self.refuse(p.done, p.forwarded, &tx_id, e.to_string()),
        }
    }

    /// A normal envelope taken and then refused: a forwarding follower hears it in the
    /// answer to its Submit (its client's waiter is there); a local one through the
    /// waiter here.
    fn refuse(&self, done: Option<Answer>, forwarded: bool, tx_id: &str, reason: String) {
        if forwarded {
            self.answer(done, tx_id, Err(ChainError::Revalidation(reason)));
        } else {
            self.support.notify_rejected(tx_id, reason);
            self.answer(done, tx_id, Ok(self.raw.raft.term));
        }
    }

    /// Answers a proposal: through its channel when its sender waits (forwarded and
    /// config envelopes), else — a local envelope already acknowledged as taken — a
    /// refusal reaches its committed-mode waiter.
    fn answer(&self, done: Option<Answer>, tx_id: &str, result: Result<u64, ChainError>) {
        match (done, result) {
            (Some(done), result) => {
                let _ = done.send(result);
            }
            (None, Err(e)) => self.support.notify_rejected(tx_id, e.to_string()),
            (None, Ok(_)) => {}
        }
    }

    /// The membership change a config envelope asks for, checked against the live
    /// voters (refused when it changes more than one consenter or would lose quorum; a
    /// consenter whose certificates change must not be needed for quorum meanwhile).
    fn membership_change(&self, envelope: &[u8]) -> Result<MembershipChange, ChainError> {
        let proposed_config = config::config_from_envelope(envelope)
            .map_err(|e| ChainError::Revalidation(format!("config envelope: {e}")))?;
        let proposed = membership::voters_of(&proposed_config);
        let current = self.voters();
        if proposed.is_empty() || current.is_empty() {
            return Ok(MembershipChange::Unchanged);
        }
        let change = membership::change_between(&current, &proposed)
            .map_err(|e| ChainError::Revalidation(e.to_string()))?;
        let rekeyed = membership::rekeyed_between(&self.support.state().config, &proposed_config)
            .map_err(|e| ChainError::Revalidation(e.to_string()))?;
        let active: HashSet<u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, pr)| **id == self.id || pr.recent_active)
            .map(|(id, _)| *id)
            .collect();
        membership::check_quorum(&current, change, &active).map_err(|e| ChainError::NotReady {
            reason: e.to_string(),
        })?;
        if let Some(id) = rekeyed {
            membership::check_rekey_quorum(&current, id, &active).map_err(|e| {
                ChainError::NotReady {
                    reason: e.to_string(),
                }
            })?;
        }
        Ok(change)
    }

    /// The voters in force.
    fn voters(&self) -> BTreeSet<u64> {
        self.raw
            .store()
            .conf_state()
            .voters
            .iter()
            .copied()
            .collect()
    }

    /// Proposes a config block; one that changes the consenters goes as the context of a
    /// raft conf change, so the block and the membership change commit together.
    fn propose_config_block(&mut self, item: Item, change: MembershipChange) {
        let (node_id, change_type) = match change {
            MembershipChange::Unchanged => return self.propose_block(vec![item], true),
            MembershipChange::Add(id) => (id, ConfChangeType::AddNode),
            MembershipChange::Remove(id) => (id, ConfChangeType::RemoveNode),
        };
        let tx_ids = vec![item.tx_id.clone()];
        let block = self.support.create_next_block(vec![item.envelope]);
        let context = entry_data(&block, true);
        let mut cc = ConfChange::default();
        cc.set_change_type(change_type);
        cc.node_id = node_id;
        info!(
            channel = self.channel_id(),
            node = format_args!("{node_id:x}"),
            change = ?change_type,
            block = block::number(&block),
            "proposing a membership change"
        );
        let proposed = self.raw.propose_conf_change(context, cc);
        self.after_proposal(block, tx_ids, true, proposed);
    }

    fn propose_block(&mut self, items: Vec<Item>, is_config: bool) {
        let tx_ids: Vec<String> = items.iter().map(|i| i.tx_id.clone()).collect();
        let block = self
            .support
            .create_next_block(items.into_iter().map(|i| i.envelope).collect());
        let data = entry_data(&block, is_config);
        let proposed = self.raw.propose(Vec::new(), data);
        self.after_proposal(block, tx_ids, is_config, proposed);
    }

    fn after_proposal(
        &mut self,
        block: Block,
        tx_ids: Vec<String>,
        is_config: bool,
        proposed: raft::Result<()>,
    ) {
        let number = block::number(&block);
        match proposed {
            Ok(()) => {
                self.inflight.insert(
                    number,
                    Inflight {
                        hash: block::hash(&block),
                        tx_ids,
                        is_config,
                        term: self.raw.raft.term,
                    },
                );
            }
            Err(e) => {
                warn!(channel = self.channel_id(), block = number, error = %e, "block proposal dropped");
                self.support.uncreate(&block);
                for id in tx_ids {
                    self.support
                        .notify_rejected(&id, format!("raft dropped the proposal: {e}"));
                }
            }
        }
    }

    fn not_leader_error(&self) -> ChainError {
        let leader = self.raw.raft.leader_id;
        if leader == 0 || leader == self.id {
            ChainError::NotReady {
                reason: "no raft leader is ready yet".into(),
            }
        } else {
            ChainError::NotLeader {
                hint: Some(format!("raft node {leader:x}")),
            }
        }
    }

    fn send(&mut self, messages: Vec<RaftMessage>) {
        for m in messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.push(m.to);
            }
            match m.write_to_bytes() {
                Ok(bytes) => self.transport.send(m.to, bytes),
                Err(e) => warn!(error = %e, "raft message does not encode"),
            }
        }
    }

    /// Tells raft that the snapshots it asked to send were handed to the transport.
    ///
    /// A leader that sent a snapshot pauses replication to that follower until the
    /// application reports the snapshot's fate. The transport is best effort (a full queue
    /// or a dead connection drops the message), so waiting for a delivery report would
    /// leave the follower behind for good when the snapshot is lost — found by the raft
    /// simulation in `chaos-tests/` (seed 13: a follower stuck 7 blocks behind forever).
    /// Reported as finished, the leader probes the follower: it answers from the snapshot
    /// if it got it, and otherwise its rejection makes the leader send a new one.
    fn report_snapshots(&mut self) {
        for to in std::mem::take(&mut self.snapshots_sent) {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
    }

    fn on_ready(&mut self) -> Result<(), Stop> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        if !ready.messages().is_empty() {
            self.send(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            self.install_snapshot(&snap)?;
        }
        self.apply(ready.take_committed_entries())?;
        self.crash_point(CrashPoint::AfterApply)?;
        let entries = ready.take_entries();
        let hs = ready.hs().cloned();
        let started = std::time::Instant::now();
        self.raw
            .mut_store()
            .persist(&entries, hs.as_ref())
            .map_err(|e| e.to_string())?;
        if !entries.is_empty() || hs.is_some() {
            self.shared.persist_micros.fetch_add(
                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        self.crash_point(CrashPoint::AfterPersist)?;
        if !ready.persisted_messages().is_empty() {
            self.send(ready.take_persisted_messages());
        }
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw
                .mut_store()
                .set_commit(commit)
                .map_err(|e| e.to_string())?;
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.report_snapshots();
        self.maybe_compact()?;
        Ok(())
    }

    /// A snapshot from the leader: this node's log is behind the others' compaction
    /// point. The blocks up to the snapshot come from the other consenters' ledgers
    /// (verified), then the raft log restarts at the snapshot.
    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), Stop> {
        let meta = snap.get_metadata();
        let (number, hash) = parse_snapshot_data(snap.get_data()).ok_or_else(|| {
            format!(
                "raft snapshot at index {} carries no block position",
                meta.index
            )
        })?;
        info!(
            channel = self.channel_id(),
            index = meta.index,
            block = number,
            height = self.support.height(),
            "installing a raft snapshot"
        );
        if self.support.height() <= number {
            self.pull_blocks_to(number, hash)?;
            self.crash_point(CrashPoint::AfterBlockPull)?;
        } else {
            let ours = self
                .support
                .ledger()
                .block(number)
                .map_err(|e| e.to_string())?
                .map(|b| block::hash(&b));
            if ours != Some(hash) {
                return Err(Stop::Failed(format!(
                    "the raft snapshot names block {number} with another hash than this ledger's: the chains forked"
                )));
            }
        }
        self.raw
            .mut_store()
            .apply_snapshot(snap, self.applied)
            .map_err(|e| e.to_string())?;
        self.applied = meta.index;
        // What entries would have told this node one by one, the snapshot tells at once:
        // its proposals below the snapshot's height are decided (by the blocks now in the
        // ledger), and those of earlier terms above it are lost.
        self.settle_written_proposals();
        if meta.term > self.applied_term {
            self.forget_lost_forwards(meta.term);
            self.forget_proposals_before(meta.term);
        }
        self.applied_term = meta.term;
        self.last_conf_index = meta.index;
        self.on_config_applied();
        let voters = &meta.get_conf_state().voters;
        if !voters.is_empty() && !voters.contains(&self.id) {
            self.evicted = true;
        }
        Ok(())
    }

    /// Fills the ledger up to block `target` (whose hash must be `target_hash`) from the
    /// other consenters, verifying every block against the chain and the configuration
    /// in force as it goes. Tries the leader first; retries until it succeeds or the
    /// chain halts.
    fn pull_blocks_to(&mut self, target: u64, target_hash: Hash) -> Result<(), Stop> {
        let mut attempt = 0u32;
        while self.support.height() <= target {
            if self.halt.is_cancelled() {
                return Err(Stop::Halted);
            }
            let leader = self.raw.raft.leader_id;
            let mut sources: Vec<u64> = self
                .voters()
                .into_iter()
                .filter(|id| *id != self.id && *id != leader)
                .collect();
            if leader != 0 && leader != self.id {
                sources.insert(0, leader);
            }
            let mut progressed = false;
            for source in sources {
                match self.pull_from(source, target, target_hash) {
                    Ok(n) if n > 0 => {
                        progressed = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => warn!(
                        channel = self.channel_id(),
                        source = format_args!("{source:x}"),
                        error = %e,
                        "block pull failed; trying another consenter"
                    ),
                }
            }
            if !progressed {
                attempt += 1;
                if attempt % 20 == 1 {
                    warn!(
                        channel = self.channel_id(),
                        height = self.support.height(),
                        target,
                        "no consenter could serve the missing blocks; retrying"
                    );
                }
                if self.handle.block_on(async {
                    tokio::select! {
                        _ = self.halt.cancelled() => true,
                        _ = tokio::time::sleep(PULL_RETRY) => false,
                    }
                }) {
                    return Err(Stop::Halted);
                }
            }
        }
        info!(
            channel = self.channel_id(),
            height = self.support.height(),
            "caught up from the other consenters' ledgers"
        );
        Ok(())
    }

    /// One pull from one consenter; returns the blocks written.
    fn pull_from(&mut self, source: u64, target: u64, target_hash: Hash) -> Result<u64, String> {
        let start = self.support.height();
        let end = target.min(start + MAX_PULL_BLOCKS - 1);
        let transport = self.transport.clone();
        let blocks = self
            .handle
            .block_on(async {
                tokio::time::timeout(PULL_TIMEOUT, transport.pull_blocks(source, start, end)).await
            })
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let state = self.support.state();
        let prev = self
            .support
            .ledger()
            .last_hash()
            .unwrap_or(block::GENESIS_PREVIOUS_HASH);
        let mut verifier =
            ChainVerifier::resume(start, prev, state.config.clone(), state.last_config_block)
                .map_err(|e| e.to_string())?;
        let now = ordo_proto::now_ms() / 1000;
        let mut written = 0;
        for b in blocks.into_iter().take((end + 1 - start) as usize) {
            let number = block::number(&b);
            verifier
                .check(&b, now)
                .map_err(|e| format!("block {number} refused: {e}"))?;
            if number == target && block::hash(&b) != target_hash {
                return Err(format!(
                    "block {number} does not match the snapshot's hash: the chains forked"
                ));
            }
            let metadata = b
                .metadata
                .as_ref()
                .map(|m| m.consenter_metadata.clone())
                .unwrap_or_default();
            let is_config = config::config_from_block(&b).is_ok();
            self.support
                .write_replicated(b, metadata, None)
                .map_err(|e| format!("writing pulled block {number}: {e}"))?;
            if is_config {
                self.on_config_applied();
            }
            written += 1;
        }
        Ok(written)
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), String> {
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            if e.term > self.applied_term {
                self.applied_term = e.term;
                self.forget_lost_forwards(e.term);
                self.forget_proposals_before(e.term);
            }
            match e.get_entry_type() {
                EntryType::EntryNormal if !e.data.is_empty() => {
                    self.apply_block(e.index, e.term, &e.data, logged_position(&e))?;
                }
                EntryType::EntryNormal => {}
                EntryType::EntryConfChange => self.apply_conf_change(&e)?,
                EntryType::EntryConfChangeV2 => {
                    return Err(format!(
                        "raft entry {} is a joint membership change, which Ordo never proposes",
                        e.index
                    ));
                }
            }
            self.applied = e.index;
        }
        if let Some(target) = self.catch_up_to {
            if self.applied >= target && self.role == StateRole::Leader {
                self.catch_up_to = None;
                self.forget_lost_proposals();
                self.support.reset_created();
                info!(
                    channel = self.channel_id(),
                    term = self.raw.raft.term,
                    height = self.support.height(),
                    "raft leader caught up; accepting envelopes"
                );
            }
        }
        Ok(())
    }

    /// A membership change: the new voter set is made durable first (applying it again
    /// after a crash changes nothing), then its config block is written.
    fn apply_conf_change(&mut self, e: &Entry) -> Result<(), String> {
        let cc = ConfChange::parse_from_bytes(&e.data)
            .map_err(|err| format!("raft entry {} holds no conf change: {err}", e.index))?;
        let cs = self
            .raw
            .apply_conf_change(&cc)
            .map_err(|err| format!("applying the conf change of entry {}: {err}", e.index))?;
        self.raw
            .mut_store()
            .set_conf_state(cs.clone())
            .map_err(|err| err.to_string())?;
        self.last_conf_index = e.index;
        info!(
            channel = self.channel_id(),
            index = e.index,
            node = format_args!("{:x}", cc.node_id),
            change = ?cc.get_change_type(),
            voters = cs.voters.len(),
            "membership changed"
        );
        if !e.context.is_empty() {
            self.apply_block(e.index, e.term, &e.context, None)?;
        }
        if !cs.voters.contains(&self.id) {
            self.evicted = true;
        }
        Ok(())
    }

    /// Writes the block of a committed entry: by reference to the entry (`logged_at`)
    /// when it holds the block at a known place, so the block is stored once.
    fn apply_block(
        &mut self,
        index: u64,
        term: u64,
        data: &[u8],
        logged_at: Option<LogPosition>,
    ) -> Result<(), String> {
        let (kind, body) = data
            .split_first()
            .ok_or_else(|| format!("raft entry {index} is empty"))?;
        let block = Block::decode(body)
            .map_err(|err| format!("raft entry {index} holds no block: {err}"))?;
        let number = block::number(&block);
        let height = self.support.height();
        if number < height {
            // Already in the ledger (written before a restart, or pulled).
            return Ok(());
        }
        if number > height {
            return Err(format!(
                "raft entry {index} holds block {number} but the ledger height is {height}"
            ));
        }
        let metadata = consenter_metadata(index, term);
        // An entry written before blocks went into the log without metadata holds one:
        // its bytes are not the unsigned block, so it is stored inline.
        let logged_at = logged_at.filter(|_| block.metadata.is_none());
        let mine = self.inflight.remove(&number);
        let written = match &mine {
            Some(m) if m.hash == block::hash(&block) => {
                if *kind == KIND_CONFIG_BLOCK {
                    self.support.write_config_block(block, metadata, logged_at)
                } else {
                    self.support.write_block(block, metadata, logged_at)
                }
            }
            _ => {
                if let Some(lost) = &mine {
                    // Another leader's block took this height: ours will never be
                    // written. Tell the waiters of envelopes it does not carry.
                    let carried: HashSet<String> = block
                        .data
                        .iter()
                        .flat_map(|d| d.data.iter())
                        .filter_map(|b| tx_id_of(b))
                        .collect();
                    for id in lost.tx_ids.iter().filter(|id| !carried.contains(*id)) {
                        self.support.notify_rejected(
                            id,
                            "the raft leader changed before the envelope was ordered; resubmit"
                                .into(),
                        );
                    }
                }
                self.support.write_replicated(block, metadata, logged_at)
            }
        };
        let n = written.map_err(|err| format!("writing block {number}: {err}"))?;
        if *kind == KIND_CONFIG_BLOCK {
            self.on_config_applied();
            info!(
                channel = self.channel_id(),
                block = n,
                sequence = self.support.sequence(),
                "configuration updated"
            );
        }
        Ok(())
    }

    /// A config block was written: batch limits, consenter endpoints and names follow it.
    fn on_config_applied(&mut self) {
        let state = self.support.state();
        self.cutter.set_limits(state.limits);
        if let Some(orderer) = state.config.orderer.as_ref() {
            if !orderer.consenters.is_empty() {
                self.transport.reconfigure(&orderer.consenters);
                let mut names = self.shared.names.write().unwrap_or_else(|p| p.into_inner());
                for c in &orderer.consenters {
                    names.insert(super::raft_id(&c.id), c.id.clone());
                }
            }
        }
    }

    /// This node applied its own removal: it stops ordering for the channel. A leader
    /// first tells the others the commit index (so they apply the removal too) and hands
    /// leadership to the most up-to-date remaining voter.
    fn leave(&mut self) {
        self.shared.evicted.store(true, Ordering::Release);
        warn!(
            channel = self.channel_id(),
            height = self.support.height(),
            "this orderer was removed from the channel's consenters; it stops ordering"
        );
        if self.role == StateRole::Leader {
            let successor = self
                .raw
                .raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != self.id)
                .max_by_key(|(_, pr)| pr.matched)
                .map(|(id, _)| *id);
            self.raw.ping();
            if let Some(next) = successor {
                self.raw.transfer_leader(next);
            }
            if let Err(Stop::Failed(e)) = self.on_ready() {
                warn!(channel = self.channel_id(), error = %e, "final raft step failed");
            }
        }
        self.reject_pending(
            "this orderer was removed from the channel's consenters; resubmit to another",
        );
    }

    /// Takes a snapshot and compacts the log once enough has been written since the last
    /// one. The compaction point keeps what live followers still need; a follower that is
    /// down does not hold it back (it catches up from the snapshot and block pulls).
    fn maybe_compact(&mut self) -> Result<(), String> {
        let store = self.raw.store();
        if store.bytes_since_snapshot() < self.options.snapshot_interval_bytes {
            return Ok(());
        }
        let mut floor = self.applied;
        if self.role == StateRole::Leader {
            for (id, pr) in self.raw.raft.prs().iter() {
                if *id != self.id && pr.recent_active {
                    floor = floor.min(pr.matched);
                }
            }
        }
        // The snapshot records the membership in force now, so it cannot sit before the
        // last membership change.
        if floor < self.last_conf_index || floor <= store.first_index().unwrap_or(1) {
            return Ok(());
        }
        let Some((number, hash)) = self.last_block_at(floor)? else {
            return Ok(());
        };
        debug!(
            channel = self.channel_id(),
            index = floor,
            block = number,
            "raft snapshot taken; log compacted"
        );
        self.raw
            .mut_store()
            .compact(floor, snapshot_data(number, &hash), carries_block)
            .map_err(|e| e.to_string())
    }

    /// The number and hash of the last block written by an entry at or before `index`.
    fn last_block_at(&self, index: u64) -> Result<Option<(u64, Hash)>, String> {
        let ledger = self.support.ledger();
        let height = ledger.height();
        for n in (height.saturating_sub(MAX_SNAPSHOT_SEARCH)..height).rev() {
            let Some(b) = ledger.block(n).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            if raft_position(&b).map(|(i, _)| i).unwrap_or(0) <= index {
                return Ok(Some((n, block::hash(&b))));
            }
        }
        Ok(None)
    }

    /// Notes role changes: a new leader first applies its whole log; a deposed one
    /// answers the waiters of envelopes it will never propose.
    fn publish(&mut self) {
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
    fn reject_pending(&mut self, reason: &str) {
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
    fn forget_lost_forwards(&mut self, term: u64) {
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
    fn forget_proposals_before(&mut self, term: u64) {
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
    fn settle_written_proposals(&mut self) {
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
    fn forget_lost_proposals(&mut self) {
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
