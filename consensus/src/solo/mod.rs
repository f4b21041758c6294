//! The solo backend: one node orders everything. For development and single-org use.
//!
//! Two stages so that cutting never waits for a disk flush:
//! - the *cutter task* receives envelopes from a bounded queue (backpressure for
//!   Broadcast), feeds the pure [`engine::SoloEngine`] (cutter and batch timer) and
//!   carries out what it decides;
//! - the *writer task* turns each cut batch into a block, signs it and appends it to the
//!   ledger with one fsync per block, each write on tokio's blocking pool (the fsync
//!   blocks; on the pool, a paused test clock knows a write is under way).
//!
//! A config envelope is written before the cutter takes the next envelope, so every
//! envelope that follows is checked against the new configuration. On halt the queue is
//! closed and drained and the pending batch is cut and written: an envelope that was
//! acknowledged as enqueued is not lost by a graceful shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::chain::{BoxFuture, Chain, ChainError, ChainStatus, OrderRequest};
use crate::support::ChainSupport;
use crate::writer::WriteJob;

pub mod engine;
use engine::{Command, Input, SoloEngine};

/// Tunables of the solo backend.
#[derive(Debug, Clone, Copy)]
pub struct SoloOptions {
    /// Envelopes that may wait for the cutter before `order` waits (backpressure).
    pub queue_capacity: usize,
    /// Cut batches that may wait for the writer.
    pub write_queue_capacity: usize,
}

impl Default for SoloOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 4_096,
            write_queue_capacity: 8,
        }
    }
}

enum Msg {
    Normal(OrderRequest),
    Config(OrderRequest),
}

/// Builds solo chains (with [`SoloOptions`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct SoloConsenter {
    /// The options every solo chain of the node gets.
    pub options: SoloOptions,
}

impl crate::consenter::Consenter for SoloConsenter {
    fn consensus_type(&self) -> &'static str {
        "solo"
    }

    fn handle_chain(
        &self,
        support: Arc<ChainSupport>,
        _closed: CancellationToken,
    ) -> Result<Arc<dyn Chain>, crate::chain::ChainError> {
        Ok(SoloChain::start(support, self.options))
    }
}

/// A running solo chain.
pub struct SoloChain {
    tx: mpsc::Sender<Msg>,
    halt: CancellationToken,
    failed: Arc<AtomicBool>,
    stopped: Mutex<watch::Receiver<bool>>,
}

impl SoloChain {
    /// Starts the chain's tasks on the current Tokio runtime.
    pub fn start(support: Arc<ChainSupport>, opts: SoloOptions) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let (wtx, wrx) = mpsc::channel(opts.write_queue_capacity.max(1));
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let halt = CancellationToken::new();
        let failed = Arc::new(AtomicBool::new(false));
        let (writer_done_tx, writer_done_rx) = oneshot::channel();
        {
            let support = support.clone();
            let failed = failed.clone();
            let halt = halt.clone();
            let on_failure = {
                let support = support.clone();
                move |e: String| {
                    error!(channel = support.channel_id(), error = %e, "writing a block failed; the chain stops");
                    failed.store(true, Ordering::Release);
                    halt.cancel();
                    support.fail_all_waiters(&format!("ledger failure: {e}"));
                }
            };
            tokio::spawn(async move {
                crate::writer::run_on_blocking_pool(support, wrx, on_failure).await;
                // Every clone of the support this task made is dropped by now (each write
                // was awaited), so the ledger is released before the stop is reported and
                // whoever waits on `halt` can reopen it.
                let _ = writer_done_tx.send(());
            });
        }
        tokio::spawn(cutter_loop(
            support,
            rx,
            wtx,
            halt.clone(),
            failed.clone(),
            async move {
                let _ = writer_done_rx.await;
                let _ = stopped_tx.send(true);
            },
        ));
        Arc::new(Self {
            tx,
            halt,
            failed,
            stopped: Mutex::new(stopped_rx),
        })
    }

    fn check_running(&self) -> Result<(), ChainError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(ChainError::Storage(
                "the chain stopped after a ledger failure".into(),
            ));
        }
        if self.halt.is_cancelled() {
            return Err(ChainError::ShuttingDown);
        }
        Ok(())
    }

    async fn enqueue(&self, msg: Msg) -> Result<(), ChainError> {
        self.check_running()?;
        tokio::select! {
            r = self.tx.send(msg) => r.map_err(|_| ChainError::ShuttingDown),
            _ = self.halt.cancelled() => Err(ChainError::ShuttingDown),
        }
    }
}

impl Chain for SoloChain {
    fn order(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(self.enqueue(Msg::Normal(req)))
    }

    fn configure(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(self.enqueue(Msg::Config(req)))
    }

    fn wait_ready(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async move { self.check_running() })
    }

    fn status(&self) -> ChainStatus {
        ChainStatus {
            role: "solo".into(),
            leader: None,
            term: 0,
        }
    }

    fn halt(&self) -> BoxFuture<'_, ()> {
        self.halt.cancel();
        let mut rx = self
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
    }
}

async fn cutter_loop(
    support: Arc<ChainSupport>,
    mut rx: mpsc::Receiver<Msg>,
    wtx: mpsc::Sender<WriteJob>,
    halt: CancellationToken,
    failed: Arc<AtomicBool>,
    on_exit: impl std::future::Future<Output = ()>,
) {
    let mut driver = Driver {
        engine: SoloEngine::new(support.state()),
        epoch: Instant::now(),
        deadline: None,
        support,
        wtx,
    };
    info!(channel = driver.support.channel_id(), "solo chain started");
    loop {
        let sleep_until = driver
            .deadline
            .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(3600));
        let alive = tokio::select! {
            biased;
            _ = halt.cancelled() => break,
            _ = tokio::time::sleep_until(sleep_until), if driver.deadline.is_some() => {
                let time = driver.time();
                driver.run(time).await
            }
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                driver.envelope(msg).await
            }
        };
        if !alive || failed.load(Ordering::Acquire) {
            break;
        }
    }
    // Drain: everything already accepted is ordered and written before stopping.
    rx.close();
    while let Some(msg) = rx.recv().await {
        if failed.load(Ordering::Acquire) || !driver.envelope(msg).await {
            break;
        }
    }
    if !failed.load(Ordering::Acquire) {
        let commands = driver.engine.drain();
        driver.execute(commands).await;
    }
    let Driver { support, wtx, .. } = driver;
    drop(wtx);
    let channel = support.channel_id().to_string();
    let height = support.height();
    drop(support);
    on_exit.await;
    info!(%channel, height, "solo chain stopped");
}

/// Feeds the [`SoloEngine`] and executes its commands: blocks to the writer task,
/// refusals to the committed-mode waiters, the batch timer.
struct Driver {
    engine: SoloEngine,
    support: Arc<ChainSupport>,
    wtx: mpsc::Sender<WriteJob>,
    epoch: Instant,
    /// When the engine wants the time next.
    deadline: Option<Instant>,
}

impl Driver {
    fn time(&self) -> Input {
        Input::Time {
            now: self.epoch.elapsed(),
            unix_secs: ordo_proto::now_ms() / 1000,
        }
    }

    /// Steps an envelope (after the time, so that its batch timer starts now).
    async fn envelope(&mut self, msg: Msg) -> bool {
        let time = self.time();
        if !self.run(time).await {
            return false;
        }
        let (request, is_config) = match msg {
            Msg::Normal(r) => (r, false),
            Msg::Config(r) => (r, true),
        };
        self.run(Input::Envelope { request, is_config }).await
    }

    /// Steps `input` and executes what it asks; false when the chain must stop.
    async fn run(&mut self, input: Input) -> bool {
        let commands = self.engine.step(input);
        self.execute(commands).await
    }

    async fn execute(&mut self, commands: Vec<Command>) -> bool {
        let mut queue: std::collections::VecDeque<Command> = commands.into();
        while let Some(command) = queue.pop_front() {
            match command {
                Command::Write {
                    envelopes,
                    config: false,
                } => {
                    if !send(&self.wtx, envelopes).await {
                        return false;
                    }
                }
                Command::Write {
                    envelopes,
                    config: true,
                } => {
                    let (done_tx, done_rx) = oneshot::channel();
                    let job = WriteJob {
                        envelopes,
                        metadata: Bytes::new(),
                        config_done: Some(done_tx),
                    };
                    if self.wtx.send(job).await.is_err() {
                        return false;
                    }
                    match done_rx.await {
                        Ok(Ok(())) => {
                            let state = self.support.state();
                            info!(
                                channel = self.support.channel_id(),
                                sequence = state.sequence(),
                                "configuration updated"
                            );
                            queue.extend(self.engine.step(Input::ConfigWritten(state)));
                        }
                        Ok(Err(e)) => {
                            warn!(error = %e, "config block not written");
                            return false;
                        }
                        Err(_) => return false,
                    }
                }
                Command::Reject { tx_id, reason } => {
                    debug!(%tx_id, %reason, "envelope refused");
                    self.support.notify_rejected(&tx_id, reason);
                }
                Command::ArmTimer(at) => self.deadline = at.map(|d| self.epoch + d),
            }
        }
        true
    }
}

async fn send(wtx: &mpsc::Sender<WriteJob>, data: Vec<Bytes>) -> bool {
    wtx.send(WriteJob {
        envelopes: data,
        metadata: Bytes::new(),
        config_done: None,
    })
    .await
    .is_ok()
}
