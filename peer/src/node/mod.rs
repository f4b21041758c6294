//! The peer node: channels followed and committed, the Admin and Query services, and the
//! operations endpoint (`/healthz`, `/readyz`, `/metrics`), until a shutdown future
//! resolves.

pub mod admin;
pub mod channels;
pub mod config;
mod ops;
pub mod query;

use std::future::Future;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::info;

use ordo_proto::identity::{Identity, IdentityError};
use ordo_proto::pb::admin::admin_server::{Admin, AdminServer};
use ordo_proto::pb::admin::AdminResponse;
use ordo_proto::pb::common::Envelope;
use ordo_proto::pb::query::query_server::{Query, QueryServer};
use ordo_proto::pb::query::QueryResponse;

use admin::PeerAdmin;
use channels::{ChannelError, FollowerSettings, PeerChannels};
use config::PeerConfig;
use query::PeerQuery;

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
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The operations endpoint failed.
    #[error("operations endpoint: {0}")]
    Ops(std::io::Error),
}

struct AdminService(PeerAdmin);

#[tonic::async_trait]
impl Admin for AdminService {
    async fn execute(&self, request: Request<Envelope>) -> Result<Response<AdminResponse>, Status> {
        Ok(Response::new(self.0.execute(request.into_inner()).await))
    }
}

struct QueryService(PeerQuery);

#[tonic::async_trait]
impl Query for QueryService {
    async fn query(&self, request: Request<Envelope>) -> Result<Response<QueryResponse>, Status> {
        Ok(Response::new(self.0.execute(request.get_ref())))
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
    let settings = FollowerSettings {
        identity: identity.clone(),
        static_endpoints: config.deliver.orderer_endpoints.clone(),
        deliver: config.deliver_config(),
        max_lag_blocks: config.node.ready_max_lag_blocks,
    };
    let channels = Arc::new(PeerChannels::open(&config.node.data_dir, settings)?);
    let admin = AdminService(PeerAdmin::new(channels.clone(), &identity)?);
    let query = QueryService(PeerQuery::new(channels.clone()));
    let token = CancellationToken::new();
    {
        let token = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            info!("shutting down: stopping the followers");
            token.cancel();
        });
    }
    let ops_token = token.clone();
    let ops_task = tokio::spawn(ops::serve(ops, channels.clone(), async move {
        ops_token.cancelled().await
    }));
    info!(node = %config.node.name, grpc = ?grpc.local_addr().ok(), channels = channels.list().len(), "peer ready");
    let serve_token = token.clone();
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            AdminServer::new(admin)
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            QueryServer::new(query)
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), async move {
            serve_token.cancelled().await
        })
        .await;
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
