//! The simulated network of the RocksDB simulation: messages in flight, and block pulls
//! served from the nodes' ledgers (a node that is down serves from its disk).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ordo_consensus::chain::{BoxFuture, ChainError, OrderRequest};
use ordo_consensus::raft::RaftTransport;
use ordo_ledger::BlockStore;
use ordo_proto::pb::common::Block;

/// The network: messages in flight and the nodes' ledgers (for block pulls).
#[derive(Default)]
pub(super) struct SimNet {
    /// (from, to, message) sent and not yet delivered or lost.
    pub(super) in_flight: Mutex<Vec<(u64, u64, Vec<u8>)>>,
    /// Ledgers of the nodes that are up.
    pub(super) ledgers: Mutex<HashMap<u64, BlockStore>>,
    /// Every node's ledger directory.
    pub(super) dirs: Mutex<HashMap<u64, std::path::PathBuf>>,
}

pub(super) struct Transport {
    pub(super) me: u64,
    pub(super) net: Arc<SimNet>,
}

impl RaftTransport for Transport {
    fn send(&self, to: u64, message: Vec<u8>) {
        self.net
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((self.me, to, message));
    }

    fn submit(
        &self,
        _to: u64,
        _request: OrderRequest,
        _is_config: bool,
    ) -> BoxFuture<'_, Result<u64, ChainError>> {
        // Clients of the simulation talk to nodes directly; nothing is forwarded.
        Box::pin(async {
            Err(ChainError::NotReady {
                reason: "no forwarding in the simulation".into(),
            })
        })
    }

    fn pull_blocks(
        &self,
        from: u64,
        start: u64,
        end: u64,
    ) -> BoxFuture<'_, Result<Vec<Block>, ChainError>> {
        let store = self
            .net
            .ledgers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&from)
            .cloned();
        // A node that is down serves from its disk: its blocks are durable, and a real
        // puller would retry until the node is back. (Waiting here would stop the whole
        // simulation, which runs every node on this one thread.)
        let dir = self
            .net
            .dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&from)
            .cloned();
        Box::pin(async move {
            let store = match (store, dir) {
                (Some(s), _) => s,
                (None, Some(dir)) => {
                    BlockStore::open(&dir).map_err(|e| ChainError::Storage(e.to_string()))?
                }
                (None, None) => {
                    return Err(ChainError::NotReady {
                        reason: format!("node {from:x} is unknown"),
                    })
                }
            };
            store
                .blocks(start, end + 1)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ChainError::Storage(e.to_string()))
        })
    }
}
