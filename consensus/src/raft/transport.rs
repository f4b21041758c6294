//! How a raft node reaches the other consenters of its channel.
//!
//! The chain needs three things from the network, so that is all [`RaftTransport`]
//! asks: send a raft message to a node (best effort — raft tolerates loss, and a full
//! queue must drop rather than stall the raft loop), forward an envelope to the leader
//! and learn whether it took it, and pull blocks from another consenter (a node whose log
//! is behind the others' snapshots catches up from their ledgers, not their logs). The orderer implements it over its gRPC Cluster
//! service; [`LocalNetwork`] connects chains in one process, for tests and simulation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use ordo_proto::pb::common::{Block, Consenter};

use crate::chain::{BoxFuture, ChainError, OrderRequest};

use super::RaftChain;

/// The network as a raft chain sees it.
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends an encoded raft message to node `to`. Must not block; may drop.
    fn send(&self, to: u64, message: Vec<u8>);

    /// Forwards an envelope to node `to` (the leader this node knows) and resolves with
    /// the leader's answer: the leader's term when it took the envelope. `is_config`
    /// tells a config envelope from a normal one.
    fn submit(
        &self,
        to: u64,
        request: OrderRequest,
        is_config: bool,
    ) -> BoxFuture<'_, Result<u64, ChainError>>;

    /// Fetches blocks `start..=end` (or a prefix of them, at least one) from node `from`'s
    /// ledger. The caller verifies what it gets: the other node is not trusted.
    fn pull_blocks(
        &self,
        from: u64,
        start: u64,
        end: u64,
    ) -> BoxFuture<'_, Result<Vec<Block>, ChainError>>;

    /// The channel's consenters changed (a config block was applied): reach the new set.
    fn reconfigure(&self, _consenters: &[Consenter]) {}

    /// The transport's own metrics (names declared by [`super::RaftConsenter`]).
    fn metrics(&self) -> Vec<crate::chain::MetricSample> {
        Vec::new()
    }
}

/// Blocks pulled per request at most (bounds memory while catching up).
pub const MAX_PULL_BLOCKS: u64 = 64;

/// Raft chains of one channel in one process, connected directly. Messages to a node
/// that is not registered (stopped, or cut off with [`LocalNetwork::isolate`]) are lost,
/// as they would be on a network.
#[derive(Default)]
pub struct LocalNetwork {
    nodes: Mutex<HashMap<u64, Weak<RaftChain>>>,
    isolated: Mutex<std::collections::HashSet<u64>>,
}

impl LocalNetwork {
    /// An empty network.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes `chain` reachable as node `id` (replacing a previous registration).
    pub fn register(&self, id: u64, chain: &Arc<RaftChain>) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::downgrade(chain));
    }

    /// Cuts node `id` off (`true`) or reconnects it (`false`): nothing it sends or is
    /// sent arrives while it is cut off.
    pub fn isolate(&self, id: u64, isolated: bool) {
        let mut set = self.isolated.lock().unwrap_or_else(|p| p.into_inner());
        if isolated {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    fn node(&self, from: u64, to: u64) -> Option<Arc<RaftChain>> {
        {
            let isolated = self.isolated.lock().unwrap_or_else(|p| p.into_inner());
            if isolated.contains(&from) || isolated.contains(&to) {
                return None;
            }
        }
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&to)
            .and_then(Weak::upgrade)
    }

    /// The transport node `from` uses.
    pub fn transport(self: &Arc<Self>, from: u64) -> Arc<dyn RaftTransport> {
        Arc::new(LocalTransport {
            network: self.clone(),
            from,
        })
    }
}

struct LocalTransport {
    network: Arc<LocalNetwork>,
    from: u64,
}

impl RaftTransport for LocalTransport {
    fn send(&self, to: u64, message: Vec<u8>) {
        if let Some(node) = self.network.node(self.from, to) {
            node.step(self.from, &message);
        }
    }

    fn submit(
        &self,
        to: u64,
        request: OrderRequest,
        is_config: bool,
    ) -> BoxFuture<'_, Result<u64, ChainError>> {
        let node = self.network.node(self.from, to);
        Box::pin(async move {
            let node = node.ok_or_else(|| ChainError::NotReady {
                reason: format!("leader {to} unreachable"),
            })?;
            node.submit_forwarded(request, is_config).await
        })
    }

    fn pull_blocks(
        &self,
        from: u64,
        start: u64,
        end: u64,
    ) -> BoxFuture<'_, Result<Vec<Block>, ChainError>> {
        let node = self.network.node(self.from, from);
        Box::pin(async move {
            let node = node.ok_or_else(|| ChainError::NotReady {
                reason: format!("node {from} unreachable"),
            })?;
            let ledger = node.support.ledger();
            let end = end.min(start + MAX_PULL_BLOCKS - 1);
            let mut out = Vec::new();
            for n in start..=end {
                match ledger.block(n) {
                    Ok(Some(b)) => out.push(b),
                    Ok(None) => break,
                    Err(e) => return Err(ChainError::Storage(e.to_string())),
                }
            }
            if out.is_empty() {
                return Err(ChainError::NotReady {
                    reason: format!("node {from} has no block {start}"),
                });
            }
            Ok(out)
        })
    }
}
