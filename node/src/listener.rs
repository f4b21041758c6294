//! The node's gRPC listener: accepts TCP connections, bounds them, completes the TLS
//! handshake within a deadline, and hands tonic only connections that made it.
//!
//! Every gRPC listener of an Ordo node faces the network, so nothing here trusts the other
//! side to behave:
//! - a connection must start its TLS handshake (or, in plaintext, send its first bytes)
//!   within `handshake_timeout`, else it is closed — a slowloris holding thousands of idle
//!   sockets costs nothing;
//! - at most `max_connections` connections are open at once, and at most
//!   `max_connections_per_identity` from one client certificate; a connection over either
//!   cap is closed at once, before any TLS work;
//! - a plaintext client on a TLS listener is recognised by its first byte and told so in
//!   the log, instead of a cryptic handshake error;
//! - every refusal is counted by reason (`<node>_transport_connections_refused_total`) and
//!   logged with the peer's address — at most [`LOG_LINES_PER_SECOND`] lines a second, so
//!   a burst of 10,000 attempts does not flood the log.
//!
//! Established connections are never affected by any of this: handshakes run on their own
//! tasks, and the accept loop never waits for one.

use ordo_sdk::tls::AcceptedStream as Stream;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::certinfo::{rfc3339, CertSummary};
use crate::trust::cert_hash;

mod memory;
pub use memory::{memory_listener, MemoryConnector, MemoryListener};

/// Where a node's gRPC server takes its connections from.
#[derive(Debug)]
pub enum GrpcListener {
    /// A TCP socket: every node that serves a network.
    Tcp(TcpListener),
    /// In-process pipes ([`memory_listener`]): tests that run a node under a paused clock.
    Memory(MemoryListener),
}

impl From<TcpListener> for GrpcListener {
    fn from(listener: TcpListener) -> Self {
        Self::Tcp(listener)
    }
}

impl From<MemoryListener> for GrpcListener {
    fn from(listener: MemoryListener) -> Self {
        Self::Memory(listener)
    }
}

impl GrpcListener {
    /// The address for logs: `127.0.0.1:7050`, or `in-process`.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|e| format!("unknown ({e})")),
            Self::Memory(_) => "in-process".into(),
        }
    }
}

/// Refusal log lines per second at most; the rest are counted and summarised.
pub const LOG_LINES_PER_SECOND: u64 = 10;

/// Limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// How long a new connection may take to complete its TLS handshake (or, in
    /// plaintext, to send its first byte).
    pub handshake_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once with one client certificate (TLS with client
    /// certificates only).
    pub max_connections_per_identity: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_identity: 512,
        }
    }
}

/// Why a connection was closed before it reached gRPC (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Over `max_connections`.
    NodeCapacity,
    /// Over `max_connections_per_identity`.
    IdentityCapacity,
    /// No handshake (or first byte) within the deadline.
    HandshakeTimeout,
    /// A plaintext client on a TLS listener.
    Plaintext,
    /// The handshake failed: untrusted, expired, not-yet-valid or revoked certificate, no
    /// client certificate, protocol error.
    Handshake,
    /// The client went away before the handshake ended.
    Closed,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NodeCapacity => "node_capacity",
            Refusal::IdentityCapacity => "identity_capacity",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::Plaintext => "plaintext",
            Refusal::Handshake => "handshake",
            Refusal::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Connection metrics of a listener.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    accepted: Counter,
    refused: Family<ReasonLabel, Counter>,
    open: Gauge,
    log_window: Mutex<LogWindow>,
}

#[derive(Debug)]
struct LogWindow {
    start: Instant,
    lines: u64,
    suppressed: u64,
}

impl Default for LogWindow {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            lines: 0,
            suppressed: 0,
        }
    }
}

impl ListenerMetrics {
    /// Fresh metrics.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers them as `transport_connections_*` (under the node's own prefix).
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "transport_connections_accepted",
            "gRPC connections accepted (handshake completed)",
            self.accepted.clone(),
        );
        registry.register(
            "transport_connections_refused",
            "gRPC connections closed before reaching gRPC, by reason",
            self.refused.clone(),
        );
        registry.register(
            "transport_connections_open",
            "gRPC connections open now",
            self.open.clone(),
        );
    }

    /// Connections refused for `reason` so far.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.label().into(),
            })
            .get()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.get()
    }

    /// Connections open now.
    pub fn open(&self) -> i64 {
        self.open.get()
    }

    fn refuse(&self, reason: Refusal, peer: SocketAddr, detail: &str) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.label().into(),
            })
            .inc();
        let mut w = match self.log_window.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        if w.start.elapsed() >= Duration::from_secs(1) {
            if w.suppressed > 0 {
                warn!(
                    suppressed = w.suppressed,
                    "more connections refused in the last second (not logged one by one)"
                );
            }
            *w = LogWindow::default();
        }
        if w.lines < LOG_LINES_PER_SECOND {
            w.lines += 1;
            drop(w);
            warn!(%peer, reason = reason.label(), "connection refused: {detail}");
        } else {
            w.suppressed += 1;
        }
    }
}

/// Who is on the other end of an accepted connection; in every request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The remote address.
    pub remote_addr: Option<SocketAddr>,
    /// The client's leaf certificate (DER), when it presented one over TLS.
    pub client_cert: Option<Arc<CertificateDer<'static>>>,
}

impl PeerInfo {
    /// The connection info of `request`, if it came through an Ordo listener.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&PeerInfo> {
        request.extensions().get::<PeerInfo>()
    }
}

/// An accepted connection, ready for gRPC. Holds its capacity permits until dropped.
pub struct Conn {
    stream: Stream,
    info: PeerInfo,
    _permit: OwnedSemaphorePermit,
    _identity: Option<IdentitySlot>,
    _open: OpenGuard,
}

struct OpenGuard(Arc<ListenerMetrics>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.dec();
    }
}

type IdentityCounts = Arc<Mutex<HashMap<[u8; 32], usize>>>;

struct IdentitySlot {
    counts: IdentityCounts,
    key: [u8; 32],
}

impl IdentitySlot {
    fn take(counts: &IdentityCounts, key: [u8; 32], cap: usize) -> Option<Self> {
        let mut m = match counts.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let n = m.entry(key).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            key,
        })
    }
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        let mut m = match self.counts.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// First byte of a TLS record carrying a handshake message (the ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Accepted connections, for `serve_with_incoming_shutdown`.
pub type Incoming = ReceiverStream<Result<Conn, std::io::Error>>;

/// Starts accepting on `listener` until `shutdown` is cancelled. `tls`: the server
/// configuration (see [`crate::tls::NodeTls::server_config`]), or `None` for plaintext.
pub fn incoming(
    listener: impl Into<GrpcListener>,
    tls: Option<Arc<ServerConfig>>,
    limits: ListenerLimits,
    metrics: Arc<ListenerMetrics>,
    shutdown: CancellationToken,
) -> Incoming {
    let (tx, rx) = mpsc::channel(256);
    match listener.into() {
        GrpcListener::Tcp(l) => tokio::spawn(accept_loop(l, tls, limits, metrics, shutdown, tx)),
        GrpcListener::Memory(m) => tokio::spawn(memory::accept_loop(
            m,
            tls.is_some(),
            limits,
            metrics,
            shutdown,
            tx,
        )),
    };
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    limits: ListenerLimits,
    metrics: Arc<ListenerMetrics>,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Result<Conn, std::io::Error>>,
) {
    let capacity = Arc::new(Semaphore::new(limits.max_connections));
    let identities: IdentityCounts = Arc::default();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let backoff = AtomicU64::new(0);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => { backoff.store(0, Ordering::Relaxed); c }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the listener
                    // stays open.
                    let ms = (backoff.load(Ordering::Relaxed) * 2).clamp(5, 1000);
                    backoff.store(ms, Ordering::Relaxed);
                    warn!(error = %e, "accept failed; retrying in {ms} ms");
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = capacity.clone().try_acquire_owned() else {
            metrics.refuse(
                Refusal::NodeCapacity,
                peer,
                &format!(
                    "node at its limit of {} connections",
                    limits.max_connections
                ),
            );
            continue;
        };
        let tx = tx.clone();
        let metrics = metrics.clone();
        let acceptor = acceptor.clone();
        let identities = identities.clone();
        tokio::spawn(async move {
            let handshake = handshake(tcp, peer, acceptor, &identities, limits);
            let result = tokio::time::timeout(limits.handshake_timeout, handshake).await;
            let (stream, info, identity) = match result {
                Err(_) => {
                    metrics.refuse(
                        Refusal::HandshakeTimeout,
                        peer,
                        &format!(
                            "no handshake within {} ms",
                            limits.handshake_timeout.as_millis()
                        ),
                    );
                    return;
                }
                Ok(Err((reason, detail))) => {
                    metrics.refuse(reason, peer, &detail);
                    return;
                }
                Ok(Ok(accepted)) => accepted,
            };
            metrics.accepted.inc();
            metrics.open.inc();
            debug!(%peer, tls = matches!(stream, Stream::Tls(_)), "connection accepted");
            let conn = Conn {
                stream,
                info,
                _permit: permit,
                _identity: identity,
                _open: OpenGuard(metrics.clone()),
            };
            // The server stopped accepting (shutdown): the connection just closes.
            let _ = tx.send(Ok(conn)).await;
        });
    }
}

type Accepted = (Stream, PeerInfo, Option<IdentitySlot>);

async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    identities: &IdentityCounts,
    limits: ListenerLimits,
) -> Result<Accepted, (Refusal, String)> {
    let _ = tcp.set_nodelay(true);
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) | Err(_) => {
            return Err((Refusal::Closed, "closed before sending anything".into()));
        }
        Ok(_) => {}
    }
    let Some(acceptor) = acceptor else {
        let info = PeerInfo {
            remote_addr: Some(peer),
            client_cert: None,
        };
        return Ok((Stream::Plain(tcp), info, None));
    };
    if first[0] != TLS_HANDSHAKE_RECORD {
        return Err((
            Refusal::Plaintext,
            "plaintext client on a TLS listener (use TLS, or `ordo up --insecure` networks \
             only for development)"
                .into(),
        ));
    }
    let tls = acceptor
        .accept(tcp)
        .await
        .map_err(|e| (Refusal::Handshake, format!("TLS handshake failed: {e}")))?;
    let client_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::new(c.clone().into_owned()));
    let identity = match &client_cert {
        Some(cert) => {
            let key = cert_hash(cert);
            match IdentitySlot::take(identities, key, limits.max_connections_per_identity) {
                Some(slot) => Some(slot),
                None => {
                    let who = CertSummary::parse(cert)
                        .map(|s| format!("{} (valid until {})", s.subject, rfc3339(s.not_after)))
                        .unwrap_or_else(|| "an unparsable certificate".into());
                    return Err((
                        Refusal::IdentityCapacity,
                        format!(
                            "{who} already holds {} connections",
                            limits.max_connections_per_identity
                        ),
                    ));
                }
            }
        }
        None => None,
    };
    let info = PeerInfo {
        remote_addr: Some(peer),
        client_cert,
    };
    Ok((Stream::Tls(Box::new(tls)), info, identity))
}
