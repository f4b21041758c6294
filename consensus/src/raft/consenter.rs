//! The raft [`Consenter`]: a channel's chain on this node when the node is one of the
//! channel's consenters (found by its identity certificate), an [`InactiveChain`] that
//! serves blocks and orders nothing when it is not. The network between consenters is
//! the orderer's ([`ClusterNetwork`]); this crate only asks it for a [`RaftTransport`]
//! per channel.

use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{raft_id, RaftChain, RaftMetrics, RaftOptions, RaftSetup, RaftTransport};
use crate::chain::{
    BoxFuture, Chain, ChainError, ClusterMember, MetricDesc, MetricKind, MetricSample, OrderRequest,
};
use crate::consenter::{Consenter, InactiveChain};
use crate::support::ChainSupport;
use ordo_proto::pb::common::Consenter as ConsenterEntry;

/// How a raft chain reaches the channel's other consenters.
pub trait ClusterNetwork: Send + Sync + 'static {
    /// The transport of `channel` for this node (raft id `self_id`) to `consenters`;
    /// its background tasks end when `closed` is cancelled.
    fn transport(
        &self,
        channel: &str,
        consenters: &[ConsenterEntry],
        self_id: u64,
        closed: CancellationToken,
    ) -> Result<Arc<dyn RaftTransport>, ChainError>;
}

/// Builds raft chains.
pub struct RaftConsenter {
    /// This node's identity certificate: its entry among a channel's consenters.
    certificate: Bytes,
    network: Arc<dyn ClusterNetwork>,
}

impl RaftConsenter {
    /// A consenter for the node whose identity certificate is `certificate`.
    pub fn new(certificate: Bytes, network: Arc<dyn ClusterNetwork>) -> Self {
        Self {
            certificate,
            network,
        }
    }
}

const REFUSAL: &str = "raft channel: a consenter restored to an earlier raft log and vote could lose committed blocks; recover a raft orderer by joining it again from the other consenters";

const METRICS: &[MetricDesc] = &[
    MetricDesc {
        name: "raft_is_leader",
        help: "1 if this node is the channel's raft leader",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "raft_term",
        help: "Raft term",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "raft_leader_changes",
        help: "Raft leader changes seen since start",
        kind: MetricKind::Counter,
    },
    MetricDesc {
        name: "raft_committed_index",
        help: "Index of the last committed raft entry",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "raft_applied_index",
        help: "Index of the last raft entry applied to the ledger",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "raft_persist_seconds",
        help: "Time spent persisting raft entries and hard state, fsync included",
        kind: MetricKind::SecondsCounter,
    },
    MetricDesc {
        name: "raft_active_nodes",
        help: "Consenters the leader heard from recently (0 on followers)",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "raft_snapshot_index",
        help: "Raft index of the last snapshot; the log holds only entries after it",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "cluster_messages_dropped",
        help: "Raft messages dropped because a consenter's send queue was full",
        kind: MetricKind::Counter,
    },
    MetricDesc {
        name: "cluster_connects",
        help: "Raft streams to other consenters opened or reopened",
        kind: MetricKind::Counter,
    },
];

impl RaftMetrics {
    /// The readings of the raft metrics this module declares (the transport adds its
    /// own).
    pub fn samples(&self) -> Vec<MetricSample> {
        let s = |name, value: u64| MetricSample {
            name,
            value: value as f64,
        };
        vec![
            s("raft_is_leader", u64::from(self.is_leader)),
            s("raft_term", self.term),
            s("raft_leader_changes", self.leader_changes),
            s("raft_committed_index", self.committed_index),
            s("raft_applied_index", self.applied_index),
            MetricSample {
                name: "raft_persist_seconds",
                value: self.persist_micros as f64 / 1e6,
            },
            s("raft_active_nodes", self.active_nodes),
            s("raft_snapshot_index", self.snapshot_index),
        ]
    }
}

impl Consenter for RaftConsenter {
    fn consensus_type(&self) -> &'static str {
        "raft"
    }

    fn handle_chain(
        &self,
        support: Arc<ChainSupport>,
        closed: CancellationToken,
    ) -> Result<Arc<dyn Chain>, ChainError> {
        let state = support.state();
        let orderer = state.config.orderer.clone().unwrap_or_default();
        let Some(me) = orderer
            .consenters
            .iter()
            .find(|c| c.certificate == self.certificate)
        else {
            warn!(
                channel = support.channel_id(),
                "this node is not a consenter of the raft channel; it serves its blocks and orders nothing"
            );
            return Ok(InactiveChain::new(format!(
                "this orderer is not a consenter of channel {:?}",
                support.channel_id()
            )));
        };
        let self_id = raft_id(&me.id);
        let transport =
            self.network
                .transport(support.channel_id(), &orderer.consenters, self_id, closed)?;
        let setup = RaftSetup {
            id: self_id,
            voters: orderer.consenters.iter().map(|c| raft_id(&c.id)).collect(),
            names: orderer
                .consenters
                .iter()
                .map(|c| (raft_id(&c.id), c.id.clone()))
                .collect(),
            transport,
            options: RaftOptions::from_config(orderer.raft.as_ref()),
        };
        Ok(RaftChain::start(support, setup)?)
    }

    fn joins_after_config_block(&self) -> bool {
        true
    }

    /// The raft log starts as a snapshot at the entry that carried the join block, with
    /// its consenters as voters ([`super::prepare_join`]): the leader replicates only what
    /// follows, or sends a snapshot and the node pulls the blocks after the join block.
    fn prepare_join(
        &self,
        ledger: &ordo_ledger::BlockStore,
        join_block: &ordo_proto::pb::common::Block,
    ) -> Result<(), ChainError> {
        super::prepare_join(ledger.consensus_log(), join_block)
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        METRICS
    }

    fn backup_refusal(&self) -> Option<&'static str> {
        Some(REFUSAL)
    }
}

impl ClusterMember for RaftChain {
    fn step(&self, from: u64, message: &[u8]) {
        RaftChain::step(self, from, message);
    }

    fn submit_forwarded(
        &self,
        request: OrderRequest,
        is_config: bool,
    ) -> BoxFuture<'_, Result<u64, ChainError>> {
        Box::pin(RaftChain::submit_forwarded(self, request, is_config))
    }
}
