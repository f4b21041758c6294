//! The solo backend: one node orders everything. For development and single-org use.
//!
//! Two stages so that cutting never waits for a disk flush:
//! - the *cutter task* receives envelopes from a bounded queue (backpressure for
//!   Broadcast), feeds the [`BlockCutter`] and runs the batch timer;
//! - the *writer thread* turns each cut batch into a block, signs it and appends it to the
//!   ledger with one fsync per block (a plain thread, because the fsync blocks).
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
use crate::cutter::BlockCutter;
use crate::support::ChainSupport;
use crate::writer::WriteJob;

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
            std::thread::Builder::new()
                .name(format!("solo-writer-{}", support.channel_id()))
                .spawn(move || {
                    crate::writer::run(&support, wrx, |e| {
                        error!(channel = support.channel_id(), error = %e, "writing a block failed; the chain stops");
                        failed.store(true, Ordering::Release);
                        halt.cancel();
                        support.fail_all_waiters(&format!("ledger failure: {e}"));
                    });
                    // Release the ledger before reporting the stop, so that whoever waits
                    // on `halt` can reopen it.
                    drop(support);
                    let _ = writer_done_tx.send(());
                })
                .map_err(|e| error!(error = %e, "cannot start the solo writer thread"))
                .ok();
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
    let state = support.state();
    let mut cutter: BlockCutter<Bytes> = BlockCutter::new(state.limits);
    let mut timeout = state.batch_timeout;
    let mut deadline: Option<Instant> = None;
    info!(channel = support.channel_id(), "solo chain started");
    loop {
        let sleep_until =
            deadline.unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = halt.cancelled() => break,
            _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                deadline = None;
                let batch = cutter.cut();
                if !batch.is_empty() && !send(&wtx, batch).await {
                    break;
                }
            }
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                if !handle(&support, &mut cutter, &mut timeout, &mut deadline, &wtx, msg).await {
                    break;
                }
            }
        }
        if failed.load(Ordering::Acquire) {
            break;
        }
    }
    // Drain: everything already accepted is ordered and written before stopping.
    rx.close();
    while let Some(msg) = rx.recv().await {
        if failed.load(Ordering::Acquire)
            || !handle(
                &support,
                &mut cutter,
                &mut timeout,
                &mut deadline,
                &wtx,
                msg,
            )
            .await
        {
            break;
        }
    }
    let batch = cutter.cut();
    if !batch.is_empty() {
        send(&wtx, batch).await;
    }
    drop(wtx);
    let channel = support.channel_id().to_string();
    let height = support.height();
    drop(support);
    on_exit.await;
    info!(%channel, height, "solo chain stopped");
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

/// Handles one message; `false` when the chain must stop.
async fn handle(
    support: &ChainSupport,
    cutter: &mut BlockCutter<Bytes>,
    timeout: &mut std::time::Duration,
    deadline: &mut Option<Instant>,
    wtx: &mpsc::Sender<WriteJob>,
    msg: Msg,
) -> bool {
    match msg {
        Msg::Normal(req) => {
            if req.config_seq < support.sequence() {
                if let Err(e) = support.revalidate(&req.envelope) {
                    debug!(tx_id = %req.tx_id, error = %e, "envelope refused on re-validation");
                    support.notify_rejected(&req.tx_id, e.to_string());
                    return true;
                }
            }
            match cutter.ordered(req.envelope, false) {
                Ok(o) => {
                    for b in o.batches {
                        if !send(wtx, b).await {
                            return false;
                        }
                    }
                    *deadline = if o.pending {
                        deadline.or(Some(Instant::now() + *timeout))
                    } else {
                        None
                    };
                    true
                }
                Err(e) => {
                    support.notify_rejected(&req.tx_id, e.to_string());
                    true
                }
            }
        }
        Msg::Config(req) => {
            if req.config_seq != support.sequence() {
                let reason = format!(
                    "config update validated at sequence {} but the channel is at {}",
                    req.config_seq,
                    support.sequence()
                );
                warn!(tx_id = %req.tx_id, %reason, "config envelope dropped");
                support.notify_rejected(&req.tx_id, reason);
                return true;
            }
            let batches = match cutter.ordered(req.envelope, true) {
                Ok(o) => o.batches,
                Err(e) => {
                    support.notify_rejected(&req.tx_id, e.to_string());
                    return true;
                }
            };
            *deadline = None;
            let n = batches.len();
            for (i, b) in batches.into_iter().enumerate() {
                if i + 1 < n {
                    if !send(wtx, b).await {
                        return false;
                    }
                    continue;
                }
                let (done_tx, done_rx) = oneshot::channel();
                if wtx
                    .send(WriteJob {
                        envelopes: b,
                        metadata: Bytes::new(),
                        config_done: Some(done_tx),
                    })
                    .await
                    .is_err()
                {
                    return false;
                }
                match done_rx.await {
                    Ok(Ok(())) => {
                        let state = support.state();
                        cutter.set_limits(state.limits);
                        *timeout = state.batch_timeout;
                        info!(
                            channel = support.channel_id(),
                            sequence = state.sequence(),
                            "configuration updated"
                        );
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, "config block not written");
                        return false;
                    }
                    Err(_) => return false,
                }
            }
            true
        }
    }
}
