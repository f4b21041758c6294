//! The block writer of the backends that cut on one task and write on another (solo,
//! kafka): one loop, so that what a failed write does is decided once.
//!
//! Each [`WriteJob`] is one cut batch. The loop makes the next block of it, signs and
//! appends it through [`ChainSupport`] (which tells committed-mode waiters), and tells the
//! submitter of a config block once it is durable. On the first failed write it tells that
//! submitter why, hands the reason to the backend's `on_failure` (which stops the chain and
//! fails its waiters) and ends: a ledger that refused a block is not written again.

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
            }
            Err(e) => {
                if let Some(done) = job.config_done {
                    let _ = done.send(Err(e.to_string()));
                }
                on_failure(e.to_string());
                return;
            }
        }
    }
}
