//! The thin driver of a channel's raft [`Engine`]: it feeds the engine what arrives and
//! executes the engine's commands, in order, against RocksDB ([`DiskLog`], the ledger
//! through [`ChainSupport`]), the Cluster transport and the proposals' senders.
//!
//! A turn takes whatever arrived (raft messages, forwarded-envelope records, envelopes
//! while the engine takes them), then the time, then a flush — one synced write for all
//! of it. The first command that fails stops the node (see the engine's durability
//! contract). What only a simulation needs — a manual clock, a crash between two writes —
//! comes through the [`Environment`] the driver is built with, so production types carry
//! none of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft::StateRole;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use ordo_proto::block;

use super::disk::DiskLog;
use super::engine::{
    BlockMark, BlockWrite, CaughtUp, ChainTip, Command, Engine, Input, Origin, Restored, Stopped,
    WaiterId,
};
use super::storage::LogWrite;
use super::{Answer, Proposal, RaftSetup, Shared};
use crate::chain::ChainError;
use crate::support::ChainSupport;

mod catch_up;

/// Raft messages taken per turn before the flush (bounds latency).
const MAX_STEPS_PER_TURN: usize = 256;
/// Envelopes taken per turn.
const MAX_PROPOSALS_PER_TURN: usize = 1_024;
/// Blocks searched back from the tip for the one at the log's snapshot.
const MAX_SNAPSHOT_SEARCH: u64 = 100_000;
/// How long a halting leader may take to order what it took.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Points between two durable writes where a simulated crash can stop the node. A
/// crash between turns finds every write of a turn done; the windows inside one are
/// where the raft state and the ledger disagree after a restart (see
/// [`super::recovery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Committed entries written to the ledger as blocks; the flush's entries and hard
    /// state (its commit index) not yet persisted.
    AfterApply,
    /// The flush's entries and hard state persisted; the messages that wait for them
    /// not sent.
    AfterPersist,
    /// A snapshot's missing blocks pulled into the ledger; the snapshot not yet recorded
    /// in the raft state.
    AfterBlockPull,
}

/// Where a driver runs: its clock and, in a simulation, its crash points.
pub(super) trait Environment: Send + 'static {
    /// Time since the driver started.
    fn now(&self) -> Duration;
    /// Whether the node dies here, before doing anything more.
    fn crash_here(&mut self, _point: CrashPoint) -> bool {
        false
    }
}

/// Real time, and no crash but real ones.
pub(super) struct RealTime {
    epoch: std::time::Instant,
}

impl RealTime {
    pub(super) fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
        }
    }
}

impl Environment for RealTime {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// What woke the driver.
pub(super) enum Arrival {
    /// Halt was requested (or the inputs closed).
    Halt,
    /// A raft message.
    Message {
        /// The authenticated sender.
        from: u64,
        /// The encoded message.
        bytes: Vec<u8>,
    },
    /// An envelope for the leader.
    Proposal(Proposal),
    /// The engine's timer.
    Timer,
}

/// Why the driver stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    /// Halt was requested and done (or a block pull was interrupted by it).
    Halted,
    /// This node applied its own removal.
    Evicted,
    /// Storage, or a peer's data, failed in a way the node cannot get past.
    Failed(String),
    /// The environment's crash point was reached.
    Crashed,
}

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

pub(super) struct Driver<E: Environment> {
    engine: Engine,
    env: E,
    support: Arc<ChainSupport>,
    disk: DiskLog,
    transport: Arc<dyn super::RaftTransport>,
    shared: Arc<Shared>,
    proposals: mpsc::Receiver<Proposal>,
    steps: mpsc::Receiver<(u64, Vec<u8>)>,
    halt: CancellationToken,
    failed: Arc<AtomicBool>,
    /// Senders waiting for the engine's answer.
    waiters: HashMap<WaiterId, Answer>,
    next_waiter: WaiterId,
    /// When the engine wants its next [`Input::Time`].
    deadline: Duration,
    /// Set on halt while a leader finishes what it took (bounded in real time).
    draining_until: Option<std::time::Instant>,
    /// A catch-up's report, stepped once the commands before it are done.
    caught_up: Option<CaughtUp>,
    stop: Option<Stop>,
    /// The runtime that runs the network side (block pulls block on it).
    handle: tokio::runtime::Handle,
}

/// Loads the raft state and the ledger facts an engine starts from, repairing the raft
/// state where a crash left the ledger ahead of it.
fn restore(support: &ChainSupport, voters: &[u64]) -> Result<(DiskLog, Restored), String> {
    let (disk, mut view) =
        DiskLog::load(support.ledger().consensus_log(), voters).map_err(|e| e.to_string())?;
    let ledger = support.ledger();
    let height = ledger.height();
    // The block below the height: the last held, or — for a node that joined after a
    // config block and has applied nothing since — that block, kept in the ledger's base.
    let tip_block = ledger
        .tip_block()
        .map_err(|e| e.to_string())?
        .map(|b| (height - 1, b));
    let repair = super::recovery::reconcile(
        support.channel_id(),
        &view,
        tip_block.as_ref().map(|(n, b)| (*n, b)),
        &support.state().config,
    );
    if let Some(w) = &repair.write {
        disk.write(w).map_err(|e| e.to_string())?;
        view.apply(w);
    }
    // The blocks written by entries since the log's snapshot, and the last one before.
    let mut marks = Vec::new();
    // Pruning keeps the snapshot's block (`Chain::prune_ceiling`), so the walk ends
    // before the first block held; the bound is a guard.
    let lowest = height
        .saturating_sub(MAX_SNAPSHOT_SEARCH)
        .max(ledger.first_block());
    for n in (lowest..height).rev() {
        let Some(b) = ledger.block(n).map_err(|e| e.to_string())? else {
            break;
        };
        let index = super::raft_position(&b).map(|(i, _)| i).unwrap_or(0);
        marks.push(BlockMark {
            index,
            number: n,
            hash: block::hash(&b),
        });
        if index <= view.snapshot_index() {
            break;
        }
    }
    // The walk reached the first block held without passing the log's snapshot: on a node
    // that joined after a config block, that block — kept in the ledger's base — is the
    // last one at or below it.
    let passed_snapshot = marks
        .last()
        .is_some_and(|m| m.index <= view.snapshot_index());
    if !passed_snapshot && lowest == ledger.first_block() {
        let below_first = ledger.first_block().checked_sub(1);
        let based = match below_first {
            Some(n) if n + 1 == height => tip_block.as_ref().map(|(_, b)| b.clone()),
            Some(n) => ledger
                .base()
                .map_err(|e| e.to_string())?
                .and_then(|b| b.config_block)
                .filter(|c| block::number(c) == n),
            None => None,
        };
        if let (Some(n), Some(b)) = (below_first, based) {
            marks.push(BlockMark {
                index: super::raft_position(&b).map(|(i, _)| i).unwrap_or(0),
                number: n,
                hash: block::hash(&b),
            });
        }
    }
    marks.reverse();
    let tip = ChainTip {
        height,
        last_hash: ledger.last_hash().unwrap_or(block::GENESIS_PREVIOUS_HASH),
        state: support.state(),
    };
    Ok((
        disk,
        Restored {
            view,
            applied: repair.applied,
            tip,
            marks,
        },
    ))
}

impl<E: Environment> Driver<E> {
    pub(super) fn new(
        support: Arc<ChainSupport>,
        setup: &RaftSetup,
        links: Links,
        env: E,
    ) -> Result<Self, ChainError> {
        let Links {
            shared,
            proposals,
            steps,
            halt,
            failed,
        } = links;
        let (disk, restored) = restore(&support, &setup.voters).map_err(ChainError::Storage)?;
        let engine = Engine::new(setup.id, support.channel_id(), setup.options, restored)?;
        let driver = Self {
            engine,
            env,
            support,
            disk,
            transport: setup.transport.clone(),
            shared,
            proposals,
            steps,
            halt,
            failed,
            waiters: HashMap::new(),
            next_waiter: 0,
            deadline: setup.options.tick_interval,
            draining_until: None,
            caught_up: None,
            stop: None,
            handle: tokio::runtime::Handle::current(),
        };
        driver.publish();
        Ok(driver)
    }

    pub(super) fn channel_id(&self) -> &str {
        self.support.channel_id()
    }

    /// Runs turns as inputs arrive until the node stops, then [`Driver::finish`].
    pub(super) fn run(mut self, handle: &tokio::runtime::Handle) {
        loop {
            let input = self.next_input(handle);
            if !self.turn(input) {
                break;
            }
        }
        self.finish();
    }

    /// Waits for the next thing to happen.
    fn next_input(&mut self, handle: &tokio::runtime::Handle) -> Arrival {
        let halting = self.draining_until.is_some();
        let takes = self.engine.status().takes_proposals && !halting;
        let wake = tokio::time::Instant::now() + self.deadline.saturating_sub(self.env.now());
        let halt = self.halt.clone();
        let steps = &mut self.steps;
        let proposals = &mut self.proposals;
        handle.block_on(async move {
            tokio::select! {
                biased;
                _ = halt.cancelled(), if !halting => Arrival::Halt,
                m = steps.recv() => m.map(|(from, bytes)| Arrival::Message { from, bytes }).unwrap_or(Arrival::Halt),
                p = proposals.recv(), if takes => p.map(Arrival::Proposal).unwrap_or(Arrival::Halt),
                _ = tokio::time::sleep_until(wake) => Arrival::Timer,
            }
        })
    }

    /// One turn: what arrived, then what else is already waiting (bounded), the time
    /// and a flush. False once the node stopped.
    pub(super) fn turn(&mut self, first: Arrival) -> bool {
        match first {
            Arrival::Halt => {
                if self.draining_until.is_none() {
                    self.draining_until = Some(std::time::Instant::now() + DRAIN_LIMIT);
                }
                self.feed(Input::Halt);
            }
            Arrival::Message { from, bytes } => self.feed(Input::Message { from, bytes }),
            Arrival::Proposal(p) => self.propose(p),
            Arrival::Timer => {}
        }
        for _ in 0..MAX_STEPS_PER_TURN {
            if self.stop.is_some() {
                break;
            }
            match self.steps.try_recv() {
                Ok((from, bytes)) => self.feed(Input::Message { from, bytes }),
                Err(_) => break,
            }
        }
        let forwarded: Vec<(String, u64)> = self
            .shared
            .forwarded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for (tx_id, term) in forwarded {
            self.feed(Input::Forwarded { tx_id, term });
        }
        // A halting leader takes the whole queue before it decides it is done: an
        // envelope acknowledged as queued is ordered, not dropped (found by
        // `single_node_orders_and_resumes_after_restart` under load: a halt that came
        // before the loop took the queue lost ten acknowledged envelopes).
        let limit = if self.draining_until.is_some() {
            usize::MAX
        } else {
            MAX_PROPOSALS_PER_TURN
        };
        for _ in 0..limit {
            if self.stop.is_some() || !self.engine.status().takes_proposals {
                break;
            }
            match self.proposals.try_recv() {
                Ok(p) => self.propose(p),
                Err(_) => break,
            }
        }
        let now = self.env.now();
        self.feed(Input::Time {
            now,
            unix_secs: ordo_proto::now_ms() / 1000,
        });
        self.feed(Input::Flush);
        self.publish();
        if self.stop.is_none() && self.engine.status().role != StateRole::Leader {
            // Envelopes queued while this node led: whoever waits for them learns
            // that it no longer does (they would otherwise sit in the queue).
            while let Ok(p) = self.proposals.try_recv() {
                self.propose(p);
            }
        }
        if let Some(until) = self.draining_until {
            if self.stop.is_none() && self.engine.status().drained {
                // Done once nothing waits in the queue either.
                match self.proposals.try_recv() {
                    Ok(p) => self.propose(p),
                    Err(_) => self.stop = Some(Stop::Halted),
                }
            }
            if self.stop.is_none() && std::time::Instant::now() >= until {
                self.stop = Some(Stop::Halted);
            }
        }
        match &self.stop {
            None => true,
            Some(Stop::Failed(e)) => {
                error!(channel = self.channel_id(), error = %e, "raft storage failed; the chain stops");
                self.failed.store(true, Ordering::Release);
                self.support
                    .fail_all_waiters(&format!("raft storage failure: {e}"));
                false
            }
            Some(Stop::Evicted) => {
                self.shared.evicted.store(true, Ordering::Release);
                false
            }
            Some(_) => false,
        }
    }

    /// The environment (a simulation arms its crash points there).
    pub(super) fn env_mut(&mut self) -> &mut E {
        &mut self.env
    }

    /// Why the driver stopped, once it did.
    pub(super) fn stopped(&self) -> Option<&Stop> {
        self.stop.as_ref()
    }

    /// After the last turn: nobody may wait forever for an answer.
    pub(super) fn finish(mut self) {
        self.shared.is_leader.store(false, Ordering::Release);
        self.shared.accepting.store(false, Ordering::Release);
        let commands = self.engine.shut_down("the raft chain is shutting down");
        for c in commands {
            if let Command::Reject { tx_id, reason } = c {
                self.support.notify_rejected(&tx_id, reason);
            }
        }
        self.proposals.close();
        while let Ok(p) = self.proposals.try_recv() {
            self.answer_now(p, Err(ChainError::ShuttingDown));
        }
        for (_, done) in self.waiters.drain() {
            let _ = done.send(Err(ChainError::ShuttingDown));
        }
        info!(
            channel = self.channel_id(),
            height = self.support.height(),
            "raft chain stopped"
        );
    }

    /// Hands a queued envelope to the engine, keeping its sender until it is answered.
    fn propose(&mut self, p: Proposal) {
        let waiter = p.done.map(|done| {
            self.next_waiter += 1;
            self.waiters.insert(self.next_waiter, done);
            self.next_waiter
        });
        self.feed(Input::Propose(super::engine::Proposal {
            request: p.request,
            is_config: p.is_config,
            forwarded: p.forwarded,
            waiter,
        }));
    }

    /// Answers a queued envelope the engine will never see.
    fn answer_now(&self, p: Proposal, result: Result<u64, ChainError>) {
        match (p.done, result) {
            (Some(done), result) => {
                let _ = done.send(result);
            }
            (None, Err(e)) => self
                .support
                .notify_rejected(&p.request.tx_id, e.to_string()),
            (None, Ok(_)) => {}
        }
    }

    /// Steps `input` and executes what it asks (and any catch-up's report after it).
    fn feed(&mut self, input: Input) {
        if self.stop.is_some() {
            if let Input::Propose(p) = input {
                if let Some(done) = p.waiter.and_then(|w| self.waiters.remove(&w)) {
                    let _ = done.send(Err(ChainError::ShuttingDown));
                }
            }
            return;
        }
        let commands = self.engine.step(input);
        self.execute(commands);
        while let Some(report) = self.caught_up.take() {
            if self.stop.is_some() {
                break;
            }
            let commands = self.engine.step(Input::CaughtUp(report));
            self.execute(commands);
        }
    }

    /// Executes commands in order; the first that fails stops the node.
    fn execute(&mut self, commands: Vec<Command>) {
        for command in commands {
            if self.stop.is_some() {
                return;
            }
            match command {
                Command::Send { to, message } => self.transport.send(to, message),
                Command::Persist(w) => self.persist(&w),
                Command::WriteBlock(w) => self.write_block(w),
                Command::CatchUp {
                    to,
                    hash,
                    sources,
                    tx_ids_at,
                } => match self.catch_up(to, hash, &sources, &tx_ids_at) {
                    Ok(report) => {
                        if self.env.crash_here(CrashPoint::AfterBlockPull) {
                            self.stop = Some(Stop::Crashed);
                        } else {
                            self.caught_up = Some(report);
                        }
                    }
                    Err(stop) => self.stop = Some(stop),
                },
                Command::Answer { waiter, result } => {
                    if let Some(done) = self.waiters.remove(&waiter) {
                        let _ = done.send(result);
                    }
                }
                Command::Reject { tx_id, reason } => self.support.notify_rejected(&tx_id, reason),
                Command::ArmTimer(at) => self.deadline = at,
                Command::Reconfigure(consenters) => {
                    self.transport.reconfigure(&consenters);
                    let mut names = self.shared.names.write().unwrap_or_else(|p| p.into_inner());
                    for c in &consenters {
                        names.insert(super::raft_id(&c.id), c.id.clone());
                    }
                }
                Command::Stop(why) => {
                    self.stop = Some(match why {
                        Stopped::Halted => Stop::Halted,
                        Stopped::Evicted => Stop::Evicted,
                        Stopped::Failed(e) => Stop::Failed(e),
                    })
                }
            }
        }
    }

    fn persist(&mut self, w: &LogWrite) {
        let append = matches!(w, LogWrite::Append { .. });
        if append && self.env.crash_here(CrashPoint::AfterApply) {
            self.stop = Some(Stop::Crashed);
            return;
        }
        let started = std::time::Instant::now();
        if let Err(e) = self.disk.write(w) {
            self.stop = Some(Stop::Failed(e.to_string()));
            return;
        }
        if append {
            self.shared.persist_micros.fetch_add(
                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            if self.env.crash_here(CrashPoint::AfterPersist) {
                self.stop = Some(Stop::Crashed);
            }
        }
    }

    fn write_block(&mut self, w: BlockWrite) {
        let number = block::number(&w.block);
        let written = match w.origin {
            Origin::Proposed => {
                self.support
                    .write_proposed_block(w.block, w.metadata, w.logged_at, &w.tx_ids)
            }
            Origin::ProposedConfig => {
                self.support
                    .write_config_block(w.block, w.metadata, w.logged_at)
            }
            Origin::Replicated => self
                .support
                .write_replicated(w.block, w.metadata, w.logged_at),
        };
        if let Err(e) = written {
            self.stop = Some(Stop::Failed(format!("writing block {number}: {e}")));
        }
    }

    /// Publishes the engine's status for `status()` and metrics.
    fn publish(&self) {
        let s = self.engine.status();
        if self.shared.leader.swap(s.leader, Ordering::AcqRel) != s.leader {
            self.shared.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.committed.store(s.committed, Ordering::Relaxed);
        self.shared.applied.store(s.applied, Ordering::Relaxed);
        self.shared
            .snapshot_index
            .store(s.snapshot_index, Ordering::Relaxed);
        self.shared
            .active_nodes
            .store(s.active_nodes, Ordering::Relaxed);
        self.shared.term.store(s.term, Ordering::Release);
        self.shared
            .is_leader
            .store(s.role == StateRole::Leader, Ordering::Release);
        self.shared.accepting.store(s.accepting, Ordering::Release);
        let name = match s.role {
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
}
