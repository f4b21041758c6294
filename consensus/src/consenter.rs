//! The consenter boundary on the orderer's side: one [`Consenter`] per consensus type,
//! registered by name in [`Consenters`], builds each channel's [`Chain`].
//!
//! The orderer keeps a map of consenters and looks a channel's up by the consensus type
//! its configuration names; it sees only `dyn Chain` afterwards. What the orderer needs
//! beyond ordering is on [`Chain`] too: its status, its metrics (declared by the
//! consenter, [`Consenter::metrics`], so the orderer can export them without knowing the
//! backend) and, for backends whose orderers talk to each other, a
//! [`crate::chain::ClusterMember`]. Adding a backend means a module in this crate, its
//! `Consenter`, and one `register` line where the orderer builds its map.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::chain::{BoxFuture, Chain, ChainError, ChainStatus, MetricDesc, OrderRequest};
use crate::support::ChainSupport;

/// Builds the chains of one consensus type.
pub trait Consenter: Send + Sync + 'static {
    /// The consensus type channel configurations name (`orderer.consensus_type`).
    fn consensus_type(&self) -> &'static str;

    /// Starts the chain of the channel `support` holds. `closed` is cancelled when the
    /// channel is removed or the node stops (background tasks of the chain end with it).
    fn handle_chain(
        &self,
        support: Arc<ChainSupport>,
        closed: CancellationToken,
    ) -> Result<Arc<dyn Chain>, ChainError>;

    /// The metrics this backend's chains report ([`Chain::metrics`]).
    fn metrics(&self) -> &'static [MetricDesc] {
        &[]
    }

    /// Why a backup of this backend's channels would be unsafe to restore, if it would
    /// be (the orderer refuses to write one).
    fn backup_refusal(&self) -> Option<&'static str> {
        None
    }

    /// Whether a node can join a running channel of this type after a config block,
    /// without its history ([`Consenter::prepare_join`]); checked before anything is
    /// pulled. A single-orderer backend cannot: there is no other orderer to join.
    fn joins_after_config_block(&self) -> bool {
        false
    }

    /// Readies `ledger` — new, and already started right after `join_block`
    /// ([`ordo_ledger::BlockStore::start_after_config_block`]) — for a node that joins a
    /// running channel of this type without its history: whatever the backend must record
    /// or check so that [`Consenter::handle_chain`] resumes right after that block.
    /// `join_block` is the other orderers' copy, checked by the caller against the one the
    /// admin gave. The default refuses: a channel of this type is joined from its genesis
    /// block.
    fn prepare_join(
        &self,
        ledger: &ordo_ledger::BlockStore,
        join_block: &ordo_proto::pb::common::Block,
    ) -> Result<(), ChainError> {
        let _ = (ledger, join_block);
        Err(ChainError::Unsupported(format!(
            "a {} channel is joined from its genesis block",
            self.consensus_type()
        )))
    }
}

/// The consenters of a node, by consensus type.
#[derive(Default, Clone)]
pub struct Consenters {
    by_type: BTreeMap<&'static str, Arc<dyn Consenter>>,
}

impl Consenters {
    /// No consenter: every channel would be refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `consenter` under its consensus type (replacing one of the same type).
    pub fn register(&mut self, consenter: Arc<dyn Consenter>) -> &mut Self {
        self.by_type.insert(consenter.consensus_type(), consenter);
        self
    }

    /// The consenter for `consensus_type`, or why there is none.
    pub fn get(&self, consensus_type: &str) -> Result<&Arc<dyn Consenter>, ChainError> {
        self.by_type.get(consensus_type).ok_or_else(|| {
            ChainError::Unsupported(format!(
                "consensus type {consensus_type:?} is not available in this build (it has: {})",
                self.by_type.keys().copied().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Every metric any registered backend reports, each name once.
    pub fn metrics(&self) -> Vec<MetricDesc> {
        let mut seen = std::collections::BTreeSet::new();
        self.by_type
            .values()
            .flat_map(|c| c.metrics().iter().copied())
            .filter(|d| seen.insert(d.name))
            .collect()
    }
}

/// The chain of a channel this node serves but does not order for (an orderer that is
/// not one of a raft channel's consenters): its blocks are served, every envelope is
/// refused with the reason.
pub struct InactiveChain {
    reason: String,
}

impl InactiveChain {
    /// A chain that refuses everything with `reason`.
    pub fn new(reason: String) -> Arc<Self> {
        Arc::new(Self { reason })
    }
}

impl Chain for InactiveChain {
    fn order(&self, _req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>> {
        let reason = self.reason.clone();
        Box::pin(async move { Err(ChainError::NotReady { reason }) })
    }

    fn configure(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>> {
        self.order(req)
    }

    fn wait_ready(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        let reason = self.reason.clone();
        Box::pin(async move { Err(ChainError::NotReady { reason }) })
    }

    fn status(&self) -> ChainStatus {
        ChainStatus {
            role: "inactive".into(),
            leader: None,
            term: 0,
        }
    }

    fn halt(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::MetricKind;

    struct Fake(&'static str, &'static [MetricDesc]);

    impl Consenter for Fake {
        fn consensus_type(&self) -> &'static str {
            self.0
        }
        fn handle_chain(
            &self,
            _support: Arc<ChainSupport>,
            _closed: CancellationToken,
        ) -> Result<Arc<dyn Chain>, ChainError> {
            Ok(InactiveChain::new(self.0.into()))
        }
        fn metrics(&self) -> &'static [MetricDesc] {
            self.1
        }
    }

    const SHARED: MetricDesc = MetricDesc {
        name: "shared",
        help: "h",
        kind: MetricKind::Gauge,
    };

    #[test]
    fn consenters_are_found_by_type_and_an_unknown_type_names_the_known_ones() {
        let mut c = Consenters::new();
        c.register(Arc::new(Fake("a", &[SHARED])))
            .register(Arc::new(Fake("b", &[SHARED])));
        assert_eq!(c.get("a").map(|c| c.consensus_type()).ok(), Some("a"));
        let Err(ChainError::Unsupported(why)) = c.get("bft") else {
            panic!("an unknown type is unsupported");
        };
        assert!(why.contains("\"bft\"") && why.contains("a, b"), "{why}");
        assert_eq!(
            c.metrics(),
            vec![SHARED],
            "a name declared twice is exported once"
        );
    }
}
