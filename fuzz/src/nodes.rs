//! A real orderer's and a real peer's request handlers, built in-process once per fuzzing
//! process on temporary directories, joined to the fixture channel. The targets call the
//! very handlers the gRPC services call, so what is fuzzed is what a node runs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use ordo_consensus::support::WaiterLimits;
use ordo_orderer::admin::AdminHandler;
use ordo_orderer::broadcast::BroadcastHandler;
use ordo_orderer::cluster::ClusterDialer;
use ordo_orderer::deliver::{DeliverHandler, MAX_DELIVER_STREAMS_PER_READER};
use ordo_orderer::metrics::Metrics;
use ordo_orderer::registry::{ChannelLimits, Registry};
use ordo_peer::chaincode::Limits;
use ordo_peer::node::admin::PeerAdmin;
use ordo_peer::node::channels::{FollowerSettings, PeerChannels};
use ordo_peer::node::endorser::{PeerEndorser, RuntimeBindings};
use ordo_peer::node::metrics::CommitMetrics;
use ordo_peer::node::query::PeerQuery;

use crate::fixture::{self, members, runtime};

/// An orderer's client-facing handlers over one solo channel.
pub struct Orderer {
    /// Broadcast (the whole path from a received envelope to the chain).
    pub broadcast: BroadcastHandler,
    /// Deliver.
    pub deliver: DeliverHandler,
    /// Admin (join, remove, list, info, backup).
    pub admin: AdminHandler,
}

/// The orderer (started on first use).
pub fn orderer() -> &'static Orderer {
    static ORDERER: OnceLock<Orderer> = OnceLock::new();
    ORDERER.get_or_init(|| runtime().block_on(start_orderer()))
}

async fn start_orderer() -> Orderer {
    let identity = members().orderer.clone();
    let registry = Arc::new(
        Registry::open(
            fixture::scratch("orderer"),
            identity.clone(),
            ChannelLimits {
                dedupe_window: 10_000,
                waiters: WaiterLimits {
                    capacity: 10_000,
                    timeout: Duration::from_secs(2),
                },
            },
            "orderer0",
            fixture::consenters(),
            ClusterDialer {
                transport: Default::default(),
                source_addr: None,
            },
            None,
        )
        .expect("the orderer opens"),
    );
    registry
        .join(fixture::genesis().clone())
        .await
        .expect("the orderer joins the fixture channel");
    let metrics = Arc::new(Metrics::new(&[]));
    let shutdown = CancellationToken::new();
    Orderer {
        broadcast: BroadcastHandler {
            registry: registry.clone(),
            metrics: metrics.clone(),
            max_envelope_bytes: 1 << 20,
            inflight: 64,
            shutdown: shutdown.clone(),
        },
        deliver: DeliverHandler {
            registry: registry.clone(),
            metrics: metrics.clone(),
            shutdown,
            streams: ordo_node::stream_budget::StreamLimiter::new(MAX_DELIVER_STREAMS_PER_READER),
        },
        admin: AdminHandler::new(registry, metrics, &identity, 60).expect("admin handler"),
    }
}

/// A peer's request handlers over the fixture channel (which stays at its genesis
/// block: no orderer is reachable from the peer).
pub struct Peer {
    /// The endorser (proposal checks and simulation).
    pub endorser: PeerEndorser,
    /// Query.
    pub query: PeerQuery,
    /// The peer's Admin.
    pub admin: PeerAdmin,
    /// Its channels (the fixture channel).
    pub channels: Arc<PeerChannels>,
}

/// The peer (started on first use).
pub fn peer() -> &'static Peer {
    static PEER: OnceLock<Peer> = OnceLock::new();
    PEER.get_or_init(|| runtime().block_on(start_peer()))
}

async fn start_peer() -> Peer {
    let identity = members().peer.clone();
    let settings = FollowerSettings {
        identity: identity.clone(),
        // Nothing listens there: the channel stays at its genesis block.
        static_endpoints: vec!["127.0.0.1:1".into()],
        deliver: Default::default(),
        max_lag_blocks: 1,
        pool: Arc::new(ordo_node::ClientPool::new(Default::default())),
        trust: None,
        metrics: CommitMetrics::new(),
    };
    let channels =
        Arc::new(PeerChannels::open(fixture::scratch("peer"), settings).expect("the peer opens"));
    channels
        .join(fixture::genesis().clone())
        .await
        .expect("the peer joins the fixture channel");
    Peer {
        endorser: PeerEndorser::new(
            channels.clone(),
            identity.clone(),
            Limits::default(),
            RuntimeBindings::new(Default::default()),
        ),
        query: PeerQuery::new(channels.clone()),
        admin: PeerAdmin::new(channels.clone(), &identity).expect("peer admin"),
        channels,
    }
}
