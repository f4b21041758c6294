//! The block writer of the backends that cut on one task and write on another (solo,
//! kafka): one loop, so that what a failed write does is decided once.
//!
//! Each [`WriteJob`] is one cut batch. The loop makes the next block of it, signs and
//! appends it through [`ChainSupport`] (which tells committed-mode waiters), and tells the
//! submitter of a config block once it is durable. On the first failed write it tells that
//! submitter why, hands the reason to the backend's `on_failure` (which stops the chain and
//! fails its waiters) and ends: a ledger that refused a block is not written again.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::support::ChainSupport;

/// One cut batch for the writer.
#[derive(Debug)]
pub struct WriteJob {
    /// The block's envelopes, in order.
    pub envelopes: Vec<Bytes>,
    /// The backend's block metadata (kafka: the partition offset to resume from).
    pub metadata: Bytes,
    /// For a config block: told when it is written, or why not.
    pub config_done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Writes every job of `rx` in order until the queue closes or a write fails (then calls
/// `on_failure` with the reason). Blocking: run it on its own thread.
pub fn run(
    support: &ChainSupport,
    mut rx: mpsc::Receiver<WriteJob>,
    on_failure: impl FnOnce(String),
) {
    while let Some(job) = rx.blocking_recv() {
        if let Err(e) = write(support, job) {
            on_failure(e);
            return;
        }
    }
}

/// [`run`] as a task: each job is written on tokio's blocking pool, one after the other.
/// The runtime then knows a write is under way — a paused test clock does not jump ahead
/// while a block is being made durable, which it does while a plain thread writes.
pub async fn run_on_blocking_pool(
    support: Arc<ChainSupport>,
    mut rx: mpsc::Receiver<WriteJob>,
    on_failure: impl FnOnce(String),
) {
    while let Some(job) = rx.recv().await {
        let support = support.clone();
        let written = tokio::task::spawn_blocking(move || write(&support, job))
            .await
            .unwrap_or_else(|e| Err(format!("the block writer panicked: {e}")));
        if let Err(e) = written {
            on_failure(e);
            return;
        }
    }
}

/// Makes, signs and appends the block of one job; tells a config block's submitter.
fn write(support: &ChainSupport, job: WriteJob) -> Result<(), String> {
    let block = support.create_next_block(job.envelopes);
    let result = if job.config_done.is_some() {
        support.write_config_block(block, job.metadata, None)
    } else {
        support.write_block(block, job.metadata, None)
    };
    match result {
        Ok(n) => {
            if let Some(done) = job.config_done {
                let _ = done.send(Ok(()));
            }
            debug!(channel = support.channel_id(), block = n, "block written");
            Ok(())
        }
        Err(e) => {
            if let Some(done) = job.config_done {
                let _ = done.send(Err(e.to_string()));
            }
            Err(e.to_string())
        }
    }
}
