//! In-process connections to a node's gRPC server: the server end of
//! [`GrpcListener::Memory`](super::GrpcListener::Memory).
//!
//! A node served over sockets waits on the kernel, and a paused tokio test clock cannot
//! tell that wait from idleness: it jumps to the next timer while a request is still on
//! the wire. Over these pipes every byte moves inside the runtime, so a test can run a
//! whole node (Broadcast, Deliver, batch timers, commit-waiter deadlines) under
//! `tokio::time::pause` and assert exact virtual times. Production nodes never use them.
//!
//! The connections are plaintext and count against `max_connections` like TCP ones.

use std::sync::Arc;

use tokio::io::DuplexStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::{Conn, ListenerLimits, ListenerMetrics, OpenGuard, PeerInfo, Stream};

/// Bytes one direction of a pipe buffers before the writer waits (as a socket buffer).
const PIPE_BUFFER: usize = 1 << 20;

/// The server end of in-process connections; made by [`memory_listener`].
#[derive(Debug)]
pub struct MemoryListener {
    rx: mpsc::Receiver<DuplexStream>,
}

/// Opens in-process connections to the node serving the matching [`MemoryListener`].
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    tx: mpsc::Sender<DuplexStream>,
}

impl MemoryConnector {
    /// A new connection: the client end of a pipe whose server end the node accepts.
    /// Fails once the node stopped listening.
    pub async fn connect(&self) -> std::io::Result<DuplexStream> {
        let (client, server) = tokio::io::duplex(PIPE_BUFFER);
        self.tx.send(server).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "the in-process node stopped listening",
            )
        })?;
        Ok(client)
    }
}

impl MemoryConnector {
    /// A gRPC channel whose every connection is a new pipe to the node.
    pub async fn channel(&self) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        tonic::transport::Endpoint::from_static("http://in-process.invalid")
            .connect_with_connector(self.clone())
            .await
    }
}

impl tower_service::Service<tonic::codegen::http::Uri> for MemoryConnector {
    type Response = hyper_util::rt::TokioIo<DuplexStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: tonic::codegen::http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect().await.map(hyper_util::rt::TokioIo::new) })
    }
}

/// A listener for in-process connections and the connector that opens them.
pub fn memory_listener() -> (MemoryConnector, MemoryListener) {
    let (tx, rx) = mpsc::channel(64);
    (MemoryConnector { tx }, MemoryListener { rx })
}

/// Accepts in-process connections until `shutdown` (or every connector is gone). A node
/// configured for TLS refuses them all: the pipes carry plaintext only, and serving a
/// TLS node without TLS would test something else than what runs.
pub(super) async fn accept_loop(
    mut listener: MemoryListener,
    tls: bool,
    limits: ListenerLimits,
    metrics: Arc<ListenerMetrics>,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Result<Conn, std::io::Error>>,
) {
    if tls {
        error!("a TLS node cannot be served over in-process pipes; refusing every connection");
    }
    let capacity = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let pipe = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = listener.rx.recv() => match p {
                Some(p) => p,
                None => return,
            },
        };
        if tls {
            continue;
        }
        let Ok(permit) = capacity.clone().try_acquire_owned() else {
            continue;
        };
        metrics.accepted.inc();
        metrics.open.inc();
        let conn = Conn {
            stream: Stream::Memory(pipe),
            info: PeerInfo {
                remote_addr: None,
                client_cert: None,
            },
            _permit: permit,
            _identity: None,
            _open: OpenGuard(metrics.clone()),
        };
        if tx.send(Ok(conn)).await.is_err() {
            return;
        }
    }
}
