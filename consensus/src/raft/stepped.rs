//! A raft chain whose caller runs its turns — for deterministic simulation.
//!
//! [`super::RaftChain`] runs the raft loop on its own thread and takes inputs as they
//! arrive. [`SteppedRaft`] runs the very same loop ([`Driver`]) one turn at a time, when
//! its caller says: a simulator decides which message arrives when, how much (Tokio,
//! paused) time passes between turns, and when a node crashes (drop it; start it again on
//! the same directories: only what was synced survives, as after a real crash). Everything
//! the node sends goes through the [`super::RaftTransport`] the caller gave it.
//!
//! Time is a [`ManualClock`] the simulator advances between turns: raft ticks and batch
//! timeouts fire when it says. Construct the node inside a Tokio runtime context (block
//! pulls from other nodes run on it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::chain::{ChainError, OrderRequest};
use crate::support::ChainSupport;

use super::driver::{Arrival, CrashPoint, Driver, Environment, Links, Stop};
use super::{Proposal, RaftSetup, Shared};

/// A clock that moves only when told: the simulated time of every node of a run.
#[derive(Debug, Clone)]
pub struct ManualClock {
    base: tokio::time::Instant,
    elapsed_micros: Arc<AtomicU64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock at "now".
    pub fn new() -> Self {
        Self {
            base: tokio::time::Instant::now(),
            elapsed_micros: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let micros = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.elapsed_micros.fetch_add(micros, Ordering::AcqRel);
    }

    /// The current simulated time.
    pub fn now(&self) -> tokio::time::Instant {
        self.base + Duration::from_micros(self.elapsed_micros.load(Ordering::Acquire))
    }

    /// Simulated time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_micros(self.elapsed_micros.load(Ordering::Acquire))
    }
}

/// A simulation's environment: its clock, and the crash point it armed.
struct Simulated {
    clock: ManualClock,
    crash_at: Option<CrashPoint>,
}

impl Environment for Simulated {
    fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    fn crash_here(&mut self, point: CrashPoint) -> bool {
        self.crash_at == Some(point)
    }
}

/// One raft node driven turn by turn.
pub struct SteppedRaft {
    driver: Option<Driver<Simulated>>,
    proposals: mpsc::Sender<Proposal>,
    shared: Arc<Shared>,
    failed: Arc<AtomicBool>,
    crashed: bool,
}

impl SteppedRaft {
    /// Opens the node's raft state from `support`'s ledger (as [`super::RaftChain::start`]
    /// does) without starting a thread; its time is `clock`.
    pub fn start(
        support: Arc<ChainSupport>,
        setup: RaftSetup,
        clock: ManualClock,
    ) -> Result<Self, ChainError> {
        let (proposals, proposals_rx) = mpsc::channel(setup.options.queue_capacity.max(1));
        // Messages come in through `receive`, one turn each; this queue stays empty.
        let (_steps, steps_rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            names: RwLock::new(setup.names.clone()),
            ..Shared::default()
        });
        let failed = Arc::new(AtomicBool::new(false));
        let driver = Driver::new(
            support,
            &setup,
            Links {
                shared: shared.clone(),
                proposals: proposals_rx,
                steps: steps_rx,
                halt: CancellationToken::new(),
                failed: failed.clone(),
            },
            Simulated {
                clock,
                crash_at: None,
            },
        )?;
        Ok(Self {
            driver: Some(driver),
            proposals,
            shared,
            failed,
            crashed: false,
        })
    }

    /// Delivers raft message `message` from node `from` and runs a turn. False once the
    /// node stopped (storage failure, removal).
    pub fn receive(&mut self, from: u64, message: Vec<u8>) -> bool {
        self.turn(Arrival::Message {
            from,
            bytes: message,
        })
    }

    /// Runs a turn with no new input: timers against the (Tokio) clock — raft ticks,
    /// the batch timeout — queued envelopes, `Ready`.
    pub fn tick(&mut self) -> bool {
        self.turn(Arrival::Timer)
    }

    /// Queues an envelope for this node's raft loop, as a client of the leader hands it
    /// over; the answer (the leader's term once it took the envelope, or why not) comes
    /// in a later turn. Runs no turn itself.
    pub fn submit(&mut self, request: OrderRequest) -> oneshot::Receiver<Result<u64, ChainError>> {
        let (done, answer) = oneshot::channel();
        let proposal = Proposal {
            request,
            is_config: false,
            forwarded: false,
            done: Some(done),
        };
        if let Err(e) = self.proposals.try_send(proposal) {
            let p = match e {
                mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => p,
            };
            if let Some(done) = p.done {
                let _ = done.send(Err(ChainError::NotReady {
                    reason: "the raft queue is full".into(),
                }));
            }
        }
        answer
    }

    /// Whether this node leads (as of its last turn).
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader.load(Ordering::Acquire)
    }

    /// Whether this node leads and takes envelopes (it has applied its whole log).
    pub fn accepting(&self) -> bool {
        self.shared.accepting.load(Ordering::Acquire)
    }

    /// Its current term.
    pub fn term(&self) -> u64 {
        self.shared.term.load(Ordering::Acquire)
    }

    /// Whether the node stopped (storage failure, its own removal, or a crash point).
    pub fn stopped(&self) -> bool {
        self.driver.is_none() || self.failed.load(Ordering::Acquire)
    }

    /// Arms a crash (or, with `None`, disarms it): the next turn that reaches `point`
    /// stops there, between two writes, and the node is dead (drop it and start it again,
    /// as after a kill). Turns that do not reach the point run as usual.
    pub fn set_crash_point(&mut self, point: Option<CrashPoint>) {
        if let Some(d) = self.driver.as_mut() {
            d.env_mut().crash_at = point;
        }
    }

    /// Whether an armed crash point stopped the node.
    pub fn crashed(&self) -> bool {
        self.crashed
    }

    fn turn(&mut self, arrival: Arrival) -> bool {
        let Some(driver) = self.driver.as_mut() else {
            return false;
        };
        if driver.turn(arrival) {
            return true;
        }
        if let Some(d) = self.driver.take() {
            if d.stopped() == Some(&Stop::Crashed) {
                // A crash answers no one: the waiters' senders just go away.
                self.crashed = true;
            } else {
                d.finish();
            }
        }
        false
    }
}
