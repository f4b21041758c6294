//! The peer node: channels followed and committed, the Admin, Query, Endorser and Gateway
//! services, and the operations endpoint (`/healthz`, `/readyz`, `/metrics`), until a shutdown future
//! resolves.

pub mod admin;
pub mod channels;
pub mod config;
pub mod discovery;
pub mod endorser;
pub mod events;
pub mod gateway;
pub mod metrics;
mod ops;
pub mod query;

use std::future::Future;
use std::sync::Arc;

use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;

use ordo_node::NodeTls;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use ordo_proto::identity::{Identity, IdentityError};
use ordo_proto::pb::admin::admin_server::{Admin, AdminServer};
use ordo_proto::pb::admin::AdminResponse;
use ordo_proto::pb::common::Envelope;
use ordo_proto::pb::discovery::discovery_server::DiscoveryServer;
use ordo_proto::pb::query::query_server::{Query, QueryServer};
use ordo_proto::pb::query::QueryResponse;

use ordo_node::stream_budget::BudgetStream;
use ordo_proto::pb::gateway::endorser_server::{Endorser, EndorserServer};
use ordo_proto::pb::gateway::events_server::{Events, EventsServer};
use ordo_proto::pb::gateway::gateway_server::{Gateway, GatewayServer};
use ordo_proto::pb::gateway::{BlockEventsResponse, ChaincodeEventsResponse};
use ordo_proto::pb::gateway::{
    CommitStatusResponse, EndorseRequest, EndorseResponse, EvaluateResponse, ProposalResponse,
    SubmitResponse,
};

use crate::chaincode::Limits;
use admin::PeerAdmin;
use channels::{ChannelError, FollowerSettings, PeerChannels};
use config::PeerConfig;
use endorser::PeerEndorser;
use events::PeerEvents;
use gateway::PeerGateway;
use query::PeerQuery;

/// The peer's gRPC services, as the health service names them.
const PEER_SERVICES: &[&str] = &[
    "ordo.admin.Admin",
    "ordo.discovery.Discovery",
    "ordo.gateway.Endorser",
    "ordo.gateway.Gateway",
    "ordo.gateway.Events",
    "ordo.query.Query",
];

/// Largest gRPC message the peer accepts or sends.
const MAX_GRPC_MESSAGE_BYTES: usize = 80 * 1024 * 1024;

/// Why the peer could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum PeerError {
    /// The identity files could not be loaded.
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    /// The identity's certificate is unusable.
    #[error("identity certificate: {0}")]
    Cert(#[from] ordo_proto::cert::CertError),
    /// Opening the channels failed.
    #[error(transparent)]
    Channels(#[from] ChannelError),
    /// The data directory cannot be created or written.
    #[error(transparent)]
    DataDir(#[from] ordo_node::data_dir::DataDirError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The operations endpoint failed.
    #[error("operations endpoint: {0}")]
    Ops(std::io::Error),
    /// The TLS key pair or CA files could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] ordo_node::tls::NodeTlsError),
    /// The embedded protocol descriptors do not build a reflection service.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

struct AdminService(PeerAdmin);

#[tonic::async_trait]
impl Admin for AdminService {
    async fn execute(&self, request: Request<Envelope>) -> Result<Response<AdminResponse>, Status> {
        self.0
            .execute(request.into_inner())
            .await
            .map(Response::new)
    }
}

struct EndorserService(Arc<PeerEndorser>);

#[tonic::async_trait]
impl Endorser for EndorserService {
    async fn process_proposal(
        &self,
        request: Request<Envelope>,
    ) -> Result<Response<ProposalResponse>, Status> {
        self.0.process(request.get_ref()).await.map(Response::new)
    }
}

struct GatewayService(PeerGateway);

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn evaluate(
        &self,
        request: Request<Envelope>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        self.0.evaluate(request.get_ref()).await.map(Response::new)
    }

    async fn endorse(
        &self,
        request: Request<EndorseRequest>,
    ) -> Result<Response<EndorseResponse>, Status> {
        self.0.endorse(request.get_ref()).await.map(Response::new)
    }

    async fn submit(&self, request: Request<Envelope>) -> Result<Response<SubmitResponse>, Status> {
        self.0.submit(request.get_ref()).await.map(Response::new)
    }

    async fn commit_status(
        &self,
        request: Request<Envelope>,
    ) -> Result<Response<CommitStatusResponse>, Status> {
        self.0
            .commit_status(request.get_ref())
            .await
            .map(Response::new)
    }
}

struct EventsService(PeerEvents);

#[tonic::async_trait]
impl Events for EventsService {
    type ChaincodeEventsStream = BudgetStream<Result<ChaincodeEventsResponse, Status>>;
    type BlockEventsStream = BudgetStream<Result<BlockEventsResponse, Status>>;

    async fn chaincode_events(
        &self,
        request: Request<Envelope>,
    ) -> Result<Response<Self::ChaincodeEventsStream>, Status> {
        self.0
            .chaincode_events(request.get_ref())
            .map(Response::new)
    }

    async fn block_events(
        &self,
        request: Request<Envelope>,
    ) -> Result<Response<Self::BlockEventsStream>, Status> {
        self.0.block_events(request.get_ref()).map(Response::new)
    }
}

struct QueryService(PeerQuery);

#[tonic::async_trait]
impl Query for QueryService {
    async fn query(&self, request: Request<Envelope>) -> Result<Response<QueryResponse>, Status> {
        self.0.execute(request.get_ref()).map(Response::new)
    }
}

/// Runs the peer on the given listeners until `shutdown` resolves; then stops following,
/// lets a block being committed finish, and closes the ledgers.
pub async fn run(
    config: PeerConfig,
    grpc: TcpListener,
    ops: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), PeerError> {
    let identity = Identity::load(&config.identity.key_file, &config.identity.cert_file)?;
    ordo_node::certinfo::log_identity_validity(&identity);
    let tls = if config.tls.enabled {
        Some(NodeTls::load(&config.tls)?)
    } else {
        warn!("TLS is off: every gRPC link of this node is plaintext (development only)");
        None
    };
    let transport = tls
        .as_ref()
        .map(|t| t.client_transport())
        .unwrap_or_default();
    let pool = Arc::new(ordo_node::ClientPool::new(transport));
    let commit_metrics = metrics::CommitMetrics::new();
    let settings = FollowerSettings {
        identity: identity.clone(),
        static_endpoints: config.deliver.orderer_endpoints.clone(),
        deliver: config.deliver_config(),
        max_lag_blocks: config.node.ready_max_lag_blocks,
        pool: pool.clone(),
        trust: tls.as_ref().map(|t| t.trust().clone()),
        metrics: commit_metrics.clone(),
    };
    ordo_node::data_dir::prepare(&config.node.data_dir)?;
    let channels = Arc::new(PeerChannels::open(&config.node.data_dir, settings)?);
    let admin = AdminService(PeerAdmin::new(channels.clone(), &identity)?);
    let query = QueryService(PeerQuery::new(channels.clone()));
    let bindings = endorser::RuntimeBindings::new(config.chaincodes.clone().into_iter().collect());
    let endorser = Arc::new(PeerEndorser::new(
        channels.clone(),
        identity.clone(),
        Limits::default(),
        bindings.clone(),
    ));
    let discovery = Arc::new(discovery::Discovery::new(
        config.discovery_settings(),
        identity.clone(),
        bindings,
    ));
    let gateway = GatewayService(PeerGateway::new(
        endorser.clone(),
        config.gateway_settings(),
        config.deliver.orderer_endpoints.clone(),
        pool.clone(),
        discovery.clone(),
    ));
    let endorser = EndorserService(endorser);
    let token = CancellationToken::new();
    if let Some(tls) = &tls {
        tls.spawn_reloader(
            Duration::from_millis(config.tls.reload_interval_ms),
            token.clone(),
        );
        {
            let channels = channels.clone();
            ordo_node::trust::spawn_sync(move || channels.sync_trust(), token.clone());
        }
    }
    let events = EventsService(PeerEvents::new(channels.clone(), token.clone()));
    if config.discovery.enabled {
        discovery::spawn_announcer(
            discovery.clone(),
            channels.clone(),
            pool.clone(),
            token.clone(),
        );
    } else {
        info!("discovery is off: the gateway asks only [gateway] endorsers");
    }
    let discovery_view = discovery.clone();
    let discovery = discovery::DiscoveryService::new(discovery, channels.clone());
    ordo_node::reachability::spawn_watch(
        "[gateway] endorsers",
        config.gateway.endorsers.clone(),
        token.clone(),
    );
    ordo_node::reachability::spawn_watch(
        "[deliver] orderer_endpoints",
        config.deliver.orderer_endpoints.clone(),
        token.clone(),
    );
    {
        let token = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            info!("shutting down: stopping the followers");
            token.cancel();
        });
    }
    {
        let channels = channels.clone();
        let token = token.clone();
        ordo_ledger::scrub::spawn(
            move || channels.list().iter().map(|c| c.ledger().clone()).collect(),
            config.ledger.scrub_bytes_per_sec,
            async move { token.cancelled().await },
        );
    }
    {
        let channels = channels.clone();
        let token = token.clone();
        ordo_ledger::expiry::spawn_compactor(
            move || {
                channels
                    .list()
                    .iter()
                    .map(|c| (c.id().to_string(), c.ledger().clone()))
                    .collect()
            },
            async move { token.cancelled().await },
        );
    }
    {
        let channels = channels.clone();
        let token = token.clone();
        let ledger = config.ledger.clone();
        ordo_ledger::pruner::spawn(
            move || {
                channels
                    .list()
                    .iter()
                    .map(|c| ordo_ledger::pruner::PruneTarget {
                        channel: c.id().to_string(),
                        store: c.ledger().clone(),
                        retention: ledger.retention(c.id()),
                        // A peer's committer needs only its last block.
                        ceiling: u64::MAX,
                    })
                    .collect()
            },
            config.ledger.any_retention(),
            config.ledger.archive_dir.clone(),
            config.ledger.prune_bytes_per_sec,
            async move { token.cancelled().await },
        );
    }
    let ops_token = token.clone();
    let listener_metrics = ordo_node::ListenerMetrics::new();
    let cert_metrics = ordo_node::certinfo::CertMetrics::new();
    let readiness = {
        let channels = channels.clone();
        let tls = tls.clone();
        let certs = cert_metrics.clone();
        let identity = identity.clone();
        let check: ordo_node::readiness::ReadinessCheck = Arc::new(move || {
            // Renewed certificates show in the metrics within one evaluation.
            certs.record_own(&identity, tls.as_deref());
            Box::pin(ops::readiness_problems(channels.clone(), tls.clone()))
        });
        ordo_node::Readiness::spawn(check, token.clone())
    };
    let health = {
        let readiness = readiness.clone();
        let probe: ordo_node::health::ReadinessProbe = Arc::new(move || readiness.is_ready());
        ordo_node::health::serve_health(PEER_SERVICES, probe, token.clone()).await
    };
    let peer_metrics = Arc::new(metrics::PeerMetrics::new(
        &commit_metrics,
        channels.clone(),
        &listener_metrics,
        &cert_metrics,
        discovery_view,
    ));
    let ops_task = tokio::spawn(ops::serve(
        ops,
        channels.clone(),
        peer_metrics,
        readiness.clone(),
        async move { ops_token.cancelled().await },
    ));
    info!(node = %config.node.name, grpc = %grpc.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = tls.is_some(), channels = channels.list().len(), "peer ready");
    let incoming = ordo_node::incoming(
        grpc,
        tls.as_ref().map(|t| t.server_config()),
        config.connections.limits(),
        listener_metrics,
        token.clone(),
    );
    let serve_token = token.clone();
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(config.connections.max_streams_per_connection)
        .layer(ordo_node::DecodeErrorLayer)
        .add_service(health)
        .add_service(ordo_node::reflection::v1(PEER_SERVICES)?)
        .add_service(ordo_node::reflection::v1alpha(PEER_SERVICES)?)
        .add_service(
            AdminServer::new(admin)
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            DiscoveryServer::new(discovery)
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            EndorserServer::new(endorser)
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            GatewayServer::new(gateway)
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            EventsServer::new(events)
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            QueryServer::new(query)
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, async move { serve_token.cancelled().await });
    let result = match ordo_node::serve_with_drain(
        result,
        token.clone(),
        config.connections.drain_timeout(),
    )
    .await
    {
        ordo_node::Drained::Finished(r) => r,
        ordo_node::Drained::TimedOut => Ok(()),
    };
    token.cancel();
    channels.shutdown().await;
    let ops_result = ops_task.await;
    result?;
    if let Ok(Err(e)) = ops_result {
        return Err(PeerError::Ops(e));
    }
    info!("peer stopped");
    Ok(())
}
