//! Running a node: gRPC services and the operations endpoint, until shutdown.

use std::future::Future;
use std::sync::Arc;

use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;

use ordo_node::certinfo::CertMetrics;
use ordo_node::health::{serve_health, ReadinessProbe};
use ordo_node::readiness::ReadinessCheck;
use ordo_node::{GrpcListener, ListenerMetrics, NodeTls, Readiness};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use ordo_consensus::kafka::{KafkaConsenter, KafkaNodeSettings};
use ordo_consensus::raft::RaftConsenter;
use ordo_consensus::solo::SoloConsenter;
use ordo_consensus::Consenters;
use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::admin_server::{Admin, AdminServer};
use ordo_proto::pb::admin::AdminResponse;
use ordo_proto::pb::cluster::cluster_server::ClusterServer;
use ordo_proto::pb::common::Envelope;
use ordo_proto::pb::orderer::atomic_broadcast_server::AtomicBroadcast;
use ordo_proto::pb::orderer::{BroadcastResponse, DeliverResponse};
use prost::Message;
use tokio_stream::StreamExt;

use crate::admin::AdminHandler;
use crate::atomic::AtomicBroadcastService;
use crate::broadcast::BroadcastHandler;
use crate::cluster::{ClusterDialer, ClusterService, OrdererNetwork, MAX_CLUSTER_MESSAGE};
use crate::config::OrdererConfig;
use crate::deliver::{DeliverHandler, MAX_DELIVER_STREAMS_PER_READER};
use crate::inflight::BroadcastBuffers;
use crate::metrics::Metrics;
use crate::registry::{Registry, RegistryError};

/// Why the node could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum OrdererError {
    /// The identity files could not be loaded.
    #[error("identity: {0}")]
    Identity(#[from] ordo_proto::identity::IdentityError),
    /// The identity's certificate is unusable.
    #[error("identity certificate: {0}")]
    Cert(#[from] ordo_proto::cert::CertError),
    /// Opening the channels failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
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

/// The generated server's side of AtomicBroadcast. [`AtomicBroadcastService`] routes
/// Deliver past it (blocks as stored bytes); its `deliver` serves the same stream decoded,
/// for a caller that uses the generated server directly.
struct BroadcastService {
    broadcast: BroadcastHandler,
    deliver: DeliverHandler,
}

type DecodedDeliverStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<DeliverResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AtomicBroadcast for BroadcastService {
    type BroadcastStream = ReceiverStream<Result<BroadcastResponse, Status>>;
    type DeliverStream = DecodedDeliverStream;

    async fn broadcast(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::BroadcastStream>, Status> {
        let inbound = request
            .into_inner()
            .map(|item| item.map(crate::broadcast::ReceivedEnvelope::from));
        Ok(self.broadcast.handle(inbound))
    }

    async fn deliver(
        &self,
        request: Request<Envelope>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let stream = self.deliver.handle(request.into_inner()).map(|item| {
            let block = ordo_proto::pb::common::Block::decode(item?.block)
                .map_err(|e| Status::internal(format!("stored block: {e}")))?;
            Ok(DeliverResponse { block: Some(block) })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

struct AdminService {
    handler: AdminHandler,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn execute(&self, request: Request<Envelope>) -> Result<Response<AdminResponse>, Status> {
        self.handler
            .execute(request.into_inner())
            .await
            .map(Response::new)
    }
}

/// The backends this node runs, by consensus type: one registration line each.
fn consenters(config: &OrdererConfig, identity: &Identity, dialer: &ClusterDialer) -> Consenters {
    let mut consenters = Consenters::new();
    consenters
        .register(Arc::new(SoloConsenter::default()))
        .register(Arc::new(KafkaConsenter::new(KafkaNodeSettings {
            node_name: config.node.name.clone(),
            brokers: config.kafka.brokers.clone(),
            properties: config.kafka.properties.clone(),
            delivery_timeout: Duration::from_millis(config.kafka.delivery_timeout_ms),
            retry_backoff: Duration::from_millis(config.kafka.retry_backoff_ms),
        })))
        .register(Arc::new(RaftConsenter::new(
            identity.cert_bytes().clone(),
            Arc::new(OrdererNetwork {
                identity: identity.clone(),
                dialer: dialer.clone(),
            }),
        )));
    consenters
}

/// Runs the node on the given listeners until `shutdown` resolves, then stops gracefully:
/// streams end with SERVICE_UNAVAILABLE, every chain writes what it has accepted, and the
/// ledgers close. `grpc` is a TCP listener, or in-process pipes for tests that run the
/// node under a paused clock ([`ordo_node::memory_listener`]).
pub async fn run(
    config: OrdererConfig,
    grpc: impl Into<GrpcListener> + Send,
    ops: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OrdererError> {
    let grpc = grpc.into();
    let identity = Identity::load(&config.identity.key_file, &config.identity.cert_file)?;
    ordo_node::certinfo::log_identity_validity(&identity);
    let tls = if config.tls.enabled {
        Some(NodeTls::load(&config.tls)?)
    } else {
        warn!("TLS is off: every gRPC link of this node is plaintext (development only)");
        None
    };
    let dialer = ClusterDialer {
        transport: tls
            .as_ref()
            .map(|t| t.client_transport())
            .unwrap_or_default(),
        source_addr: config.node.cluster_source_addr,
    };
    ordo_node::data_dir::prepare(&config.node.data_dir)?;
    let consenters = consenters(&config, &identity, &dialer);
    let backend_metrics = consenters.metrics();
    let registry = Arc::new(Registry::open(
        &config.node.data_dir,
        identity.clone(),
        crate::registry::ChannelLimits {
            dedupe_window: config.limits.dedupe_window,
            waiters: ordo_consensus::support::WaiterLimits {
                capacity: config.limits.commit_waiters,
                timeout: std::time::Duration::from_secs(config.limits.commit_wait_s),
            },
        },
        &config.node.name,
        consenters,
        dialer,
        tls.as_ref().map(|t| t.trust().clone()),
    )?);
    let listener_metrics = ListenerMetrics::new();
    let cert_metrics = CertMetrics::new();
    let mut metrics = Metrics::new(&backend_metrics);
    metrics.register_listener(&listener_metrics);
    metrics.register_certs(&cert_metrics);
    let metrics = Arc::new(metrics);
    let token = CancellationToken::new();
    if let Some(tls) = &tls {
        tls.spawn_reloader(
            Duration::from_millis(config.tls.reload_interval_ms),
            token.clone(),
        );
        {
            let registry = registry.clone();
            ordo_node::trust::spawn_sync(move || registry.sync_trust(), token.clone());
        }
    }
    // Committed-mode waiters past their deadline are answered within a tenth of the wait
    // (between 100 ms and 1 s) by one sweep for the whole node.
    let commit_wait = Duration::from_secs(config.limits.commit_wait_s);
    crate::broadcast::sweep_commit_waiters(
        registry.clone(),
        (commit_wait / 10).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        token.clone(),
    );
    let max_msg = config.limits.max_grpc_message_bytes;

    let deliver = DeliverHandler {
        registry: registry.clone(),
        metrics: metrics.clone(),
        shutdown: token.clone(),
        streams: ordo_node::stream_budget::StreamLimiter::new(MAX_DELIVER_STREAMS_PER_READER),
    };
    let broadcast = BroadcastHandler {
        registry: registry.clone(),
        metrics: metrics.clone(),
        max_envelope_bytes: max_msg,
        inflight: config.limits.broadcast_inflight,
        shutdown: token.clone(),
    };
    let svc = BroadcastService {
        broadcast: broadcast.clone(),
        deliver: deliver.clone(),
    };
    let admin = AdminService {
        handler: AdminHandler::new(
            registry.clone(),
            metrics.clone(),
            &identity,
            config.limits.admin_clock_skew_s,
        )?,
    };

    let grpc_addr = grpc.describe();
    let ops_addr = display_addr(ops.local_addr());
    let ops_token = token.clone();
    let readiness = {
        let registry = registry.clone();
        let identity = identity.clone();
        let tls = tls.clone();
        let certs = cert_metrics.clone();
        let check: ReadinessCheck = Arc::new(move || {
            // Renewed certificates show in the metrics within one evaluation.
            certs.record_own(&identity, tls.as_deref());
            Box::pin(crate::ops::readiness_problems(
                registry.clone(),
                identity.clone(),
                tls.clone(),
            ))
        });
        Readiness::spawn(check, token.clone())
    };
    let health = {
        let readiness = readiness.clone();
        let probe: ReadinessProbe = Arc::new(move || readiness.is_ready());
        serve_health(ORDERER_SERVICES, probe, token.clone()).await
    };
    {
        let registry = registry.clone();
        let token = token.clone();
        ordo_ledger::scrub::spawn(
            move || {
                registry
                    .list()
                    .iter()
                    .map(|c| c.support.ledger().clone())
                    .collect()
            },
            config.ledger.scrub_bytes_per_sec,
            async move { token.cancelled().await },
        );
    }
    {
        let registry = registry.clone();
        let token = token.clone();
        let ledger = config.ledger.clone();
        ordo_ledger::pruner::spawn(
            move || {
                registry
                    .list()
                    .iter()
                    .map(|c| ordo_ledger::pruner::PruneTarget {
                        channel: c.support.channel_id().to_string(),
                        store: c.support.ledger().clone(),
                        retention: ledger.retention(c.support.channel_id()),
                        ceiling: c.chain.prune_ceiling(),
                    })
                    .collect()
            },
            config.ledger.any_retention(),
            config.ledger.archive_dir.clone(),
            config.ledger.prune_bytes_per_sec,
            async move { token.cancelled().await },
        );
    }
    let ops_task = tokio::spawn(crate::ops::serve(
        ops,
        registry.clone(),
        metrics.clone(),
        readiness,
        async move { ops_token.cancelled().await },
    ));
    {
        let token = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            info!("shutting down: ending streams, draining chains");
            token.cancel();
        });
    }
    info!(
        node = %config.node.name,
        grpc = %grpc_addr,
        ops = %ops_addr,
        tls = tls.is_some(),
        channels = registry.list().len(),
        "orderer ready"
    );
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
        .max_concurrent_streams(config.limits.max_concurrent_streams)
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .layer(ordo_node::DecodeErrorLayer)
        .add_service(health)
        .add_service(ordo_node::reflection::v1(ORDERER_SERVICES)?)
        .add_service(ordo_node::reflection::v1alpha(ORDERER_SERVICES)?)
        .add_service(AtomicBroadcastService::new(
            svc,
            broadcast,
            deliver,
            max_msg,
            BroadcastBuffers::new(
                config.limits.broadcast_buffer_bytes,
                metrics.broadcast_buffered_bytes.clone(),
            ),
        ))
        .add_service(
            ClusterServer::new(ClusterService {
                registry: registry.clone(),
                shutdown: token.clone(),
                tls: tls.is_some(),
            })
            .max_decoding_message_size(MAX_CLUSTER_MESSAGE)
            .max_encoding_message_size(MAX_CLUSTER_MESSAGE),
        )
        .add_service(
            AdminServer::new(admin)
                .max_decoding_message_size(max_msg)
                .max_encoding_message_size(max_msg),
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
    registry.shutdown().await;
    let ops_result = ops_task.await;
    result?;
    if let Ok(Err(e)) = ops_result {
        return Err(OrdererError::Ops(e));
    }
    info!("orderer stopped");
    Ok(())
}

/// The orderer's gRPC services, as the health service names them.
const ORDERER_SERVICES: &[&str] = &[
    "ordo.orderer.AtomicBroadcast",
    "ordo.admin.Admin",
    "ordo.cluster.Cluster",
];

/// A listener's address for logs: `127.0.0.1:7050`, not `Some(127.0.0.1:7050)`.
fn display_addr(addr: std::io::Result<std::net::SocketAddr>) -> String {
    addr.map(|a| a.to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}
