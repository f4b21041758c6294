//! The raft loop of one channel: owns the `RawNode`, the block cutter and the ledger
//! writes, on one thread.
//!
//! Each turn takes whatever arrived (raft messages, envelopes when this node is an
//! accepting leader with room in its pipeline, timers), then handles raft's `Ready`:
//! messages a leader may send at once, the snapshot, committed entries (blocks written to
//! the ledger), new entries and hard state persisted with one sync, then the messages
//! that had to wait for that sync.
//!
//! The loop's work is split by concern: [`propose`] (the leader taking envelopes),
//! [`apply`] (committed entries to the ledger), [`catch_up`] (installing a snapshot),
//! [`settle`] (role changes and lost envelopes), [`entry`] (what an entry carries).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Message as RaftMessage, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use ordo_proto::hash::Hash;

use super::storage::LogStorage;
use super::{Proposal, RaftSetup, Shared};
use crate::chain::ChainError;
use crate::cutter::{BatchItem, BlockCutter};
use crate::support::ChainSupport;

mod apply;
mod catch_up;
mod entry;
mod propose;
mod settle;

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
}
