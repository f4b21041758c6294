//! The consenter boundary: what the orderer asks of a backend ([`Chain`]) and the errors
//! a backend answers with.
//!
//! Drawn where Fabric draws it. The orderer validates an envelope, then hands it to the
//! channel's chain with the config sequence it was validated against; the backend orders
//! it, cuts blocks with the channel's [`crate::cutter::BlockCutter`] and writes them
//! through [`crate::support::ChainSupport`]. If the config sequence moved in between, the
//! backend re-validates before ordering.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use thiserror::Error;

/// A boxed future, so that [`Chain`] stays object-safe (the orderer holds `dyn Chain`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An envelope to order, as validated by the orderer.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    /// The encoded envelope, exactly as it will be stored in the block.
    pub envelope: Bytes,
    /// Its tx id (for logs and commit notifications).
    pub tx_id: String,
    /// The config sequence it was validated against.
    pub config_seq: u64,
}

/// The rest of an acceptance that [`Chain::order_pipelined`] has started: `None` when it
/// is already final, else a future with the final answer.
pub type Pending = Option<BoxFuture<'static, Result<(), ChainError>>>;

/// Why a chain did not take an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChainError {
    /// The chain cannot order right now (starting, no leader, broker unreachable, full).
    #[error("service unavailable: {reason}")]
    NotReady {
        /// Why, for the client.
        reason: String,
    },
    /// This node is not the leader; the hint names the one it knows.
    #[error("not the leader{}", .hint.as_ref().map(|h| format!(" (leader: {h})")).unwrap_or_default())]
    NotLeader {
        /// The leader's node id, when known.
        hint: Option<String>,
    },
    /// The chain is halted or halting.
    #[error("chain is shutting down")]
    ShuttingDown,
    /// Re-validation against a newer configuration refused the envelope.
    #[error("rejected after a configuration change: {0}")]
    Revalidation(String),
    /// Writing to the ledger failed; the chain stops.
    #[error("storage: {0}")]
    Storage(String),
    /// The channel's configuration asks for something this build cannot do.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// What a chain reports about itself (for `ordo channel info` and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    /// "solo", "leader", "follower", "candidate", …
    pub role: String,
    /// The leader this node knows, if any.
    pub leader: Option<String>,
    /// Consensus term (0 for backends without terms).
    pub term: u64,
}

/// How the orderer exports a backend metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A value that goes up and down (an integer).
    Gauge,
    /// A running total kept by the chain since it started (an integer).
    Counter,
    /// A running total of seconds kept by the chain since it started.
    SecondsCounter,
}

/// A metric a backend reports for each of its channels; the orderer exports it as
/// `ordo_orderer_<name>{channel="..."}` without knowing the backend (see
/// [`crate::consenter::Consenter::metrics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDesc {
    /// The name after `ordo_orderer_` (counters get `_total` appended on export).
    pub name: &'static str,
    /// The help text.
    pub help: &'static str,
    /// How it is exported.
    pub kind: MetricKind,
}

/// One reading of a [`MetricDesc`] for one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSample {
    /// The metric's [`MetricDesc::name`].
    pub name: &'static str,
    /// Its value (integers are exact up to 2^53).
    pub value: f64,
}

/// What a chain that runs with other orderers (raft) takes from them; the Cluster service
/// hands it what an authenticated consenter sent.
pub trait ClusterMember: Send + Sync {
    /// A consensus message from consenter `from`; never blocks (may drop when behind).
    fn step(&self, from: u64, message: &[u8]);

    /// An envelope a follower forwarded to this node: ordered if this node leads;
    /// resolves with the term it was accepted in.
    fn submit_forwarded(
        &self,
        request: OrderRequest,
        is_config: bool,
    ) -> BoxFuture<'_, Result<u64, ChainError>>;
}

/// One channel's ordering backend.
pub trait Chain: Send + Sync + 'static {
    /// Orders a normal envelope. Returns once the chain has accepted it (it is then
    /// ordered unless the node crashes before cutting, which the `committed` ack mode
    /// covers). Waits while the chain's bounded queue is full (backpressure).
    fn order(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>>;

    /// Like [`Chain::order`], for callers that keep several envelopes in flight (a
    /// Broadcast stream): resolves once the chain has *taken* the envelope, with, when
    /// the acceptance is not final yet, a future that resolves when it is (Kafka: the
    /// broker's delivery report). A stream can then hand over its next envelope while
    /// the previous one's round trip is still under way, and still answers in order.
    fn order_pipelined(&self, req: OrderRequest) -> BoxFuture<'_, Result<Pending, ChainError>> {
        Box::pin(async move { self.order(req).await.map(|()| None) })
    }

    /// Orders a CONFIG envelope; it will be alone in its block.
    fn configure(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>>;

    /// Resolves once the chain can take envelopes, or with why not.
    fn wait_ready(&self) -> BoxFuture<'_, Result<(), ChainError>>;

    /// The chain's role and leader.
    fn status(&self) -> ChainStatus;

    /// Stops the chain, writing what it has already cut; resolves when it has stopped.
    fn halt(&self) -> BoxFuture<'_, ()>;

    /// The lowest block this backend may still need from its own ledger: pruning
    /// (`ordo_ledger::pruner`) never removes it or anything above it. Every backend needs
    /// the last block (the ledger keeps it anyway); raft also needs the block its last
    /// snapshot names, since recovery walks back to it.
    fn prune_ceiling(&self) -> u64 {
        u64::MAX
    }

    /// The backend's own metrics for this channel, as its consenter declared them.
    fn metrics(&self) -> Vec<MetricSample> {
        Vec::new()
    }

    /// The chain as a member of a cluster of orderers, for backends whose orderers talk
    /// to each other (raft); `None` for the others.
    fn cluster(&self) -> Option<&dyn ClusterMember> {
        None
    }
}
