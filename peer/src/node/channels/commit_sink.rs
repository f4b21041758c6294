//! The committer behind a channel's deliver client, pipelined: block n+1's state-free
//! checks (signatures, certificates, policies) run while block n is finished and written.
//!
//! `deliver(n+1)` makes those checks on the calling thread while the commit of block n
//! runs on the blocking pool, then waits for that commit, then starts block n+1's.
//! So at most one block is in flight, a failure of block n surfaces from `deliver(n+1)`
//! (or from `flush`, which the deliver client calls before it stops), and the channel's
//! status and metrics are updated the moment each block is durable. Checks made with a
//! configuration that block n replaced are made again by the committer.

use std::sync::Arc;

use tokio::task::JoinHandle;

use ordo_proto::pb::common::Block;

use super::PeerChannel;
use crate::committer::{CommitError, Committed, Committer, Prechecker};
use crate::deliver::{BlockSink, SinkError};
use crate::node::metrics::CommitMetrics;
use crate::validator::TxValidationCode;

/// A commit running on the blocking pool; it hands the committer back.
type InFlight = JoinHandle<(Committer, Result<(), CommitError>)>;

/// The pipelined committer of one channel.
pub(super) struct CommitSink {
    /// `None` while a commit is in flight (it holds the committer).
    committer: Option<Committer>,
    in_flight: Option<InFlight>,
    /// Checks coming blocks with the configuration in force after the last block taken.
    prechecker: Prechecker,
    /// The next block wanted: one past the last block taken.
    next: u64,
    channel: Arc<PeerChannel>,
    metrics: CommitMetrics,
}

impl CommitSink {
    pub(super) fn new(
        committer: Committer,
        channel: Arc<PeerChannel>,
        metrics: CommitMetrics,
    ) -> Self {
        Self {
            prechecker: committer.prechecker(),
            next: committer.height(),
            committer: Some(committer),
            in_flight: None,
            channel,
            metrics,
        }
    }

    /// Waits for the commit in flight, if any, and takes the committer back.
    async fn settle(&mut self) -> Result<&mut Committer, SinkError> {
        if let Some(task) = self.in_flight.take() {
            let (committer, outcome) = task
                .await
                .map_err(|e| SinkError::Failed(format!("the commit task failed: {e}").into()))?;
            self.prechecker = committer.prechecker();
            self.committer = Some(committer);
            outcome.map_err(|e| SinkError::Failed(Box::new(e)))?;
        }
        self.committer
            .as_mut()
            .ok_or_else(|| SinkError::Failed("the committer was lost with a failed commit".into()))
    }
}

impl BlockSink for CommitSink {
    fn next_number(&self) -> u64 {
        self.next
    }

    async fn deliver(&mut self, block: Block) -> Result<(), SinkError> {
        let number = ordo_proto::block::number(&block);
        // Overlaps the commit in flight. Stage 1 blocks the thread on its own thread
        // scope; let the runtime move other tasks off it meanwhile.
        let prechecker = self.prechecker.clone();
        let pre = tokio::task::block_in_place(|| prechecker.precheck(&block));
        self.settle().await?;
        let Some(mut committer) = self.committer.take() else {
            return Err(SinkError::Failed("the committer is missing".into()));
        };
        let (channel, metrics) = (self.channel.clone(), self.metrics.clone());
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let outcome = committer.commit_prechecked(block, pre).map(|done| {
                // Counted here, on the one path every committed block takes, once the
                // block is durable.
                metrics.record(&channel.id, &done);
                publish(&channel, &committer, &done);
            });
            (committer, outcome)
        }));
        self.next = number + 1;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.settle().await.map(|_| ())
    }
}

/// Updates the channel's status snapshot after a durable commit.
fn publish(channel: &PeerChannel, committer: &Committer, done: &Committed) {
    let mut st = channel.status.write().unwrap_or_else(|p| p.into_inner());
    st.height = committer.height();
    st.commit_hash = done.commit_hash;
    st.last_block_hash = committer.ledger().last_hash();
    st.blocks_committed += 1;
    st.validate_time += done.validate_time;
    st.write_time += done.write_time;
    st.valid_txs += done.validation.valid_count() as u64;
    for c in &done.validation.codes {
        if *c != TxValidationCode::Valid {
            *st.invalid_txs
                .entry(c.as_str_name().to_string())
                .or_default() += 1;
        }
    }
    if done.validation.config.is_some() {
        let cfg = committer.config().0.clone();
        st.msp = ordo_proto::cert::Msp::from_config(&cfg).ok();
        st.config = Arc::new(cfg);
    }
}
