//! The chaincode shim: serves any [`Chaincode`] as a chaincode server that peers call
//! (chaincode as a service). An external chaincode is `impl Chaincode` plus [`serve`] (or
//! [`serve_with`] to serve over mutual TLS).
//!
//! Each invocation is one `Invoke` stream: the peer sends the invocation, the chaincode
//! runs on a blocking thread and every state access becomes a request on the stream,
//! answered by the peer from its simulation. The chaincode never holds state itself, so
//! a crash mid-invocation loses nothing: the peer's simulation is simply dropped.
//!
//! # Transport
//!
//! As in Fabric's chaincode as a service, the link is mutual TLS: the server presents a
//! certificate the peers trust (issued by an org's TLS CA, with the server's host names as
//! subject alternative names) and accepts only peers whose client certificate chains to the
//! CAs it is given ([`ServeOptions::tls`]). Whoever reaches an unauthenticated chaincode
//! server could run it against made-up state and read whatever it answers, so plaintext is
//! for development only and is logged as such. The listener bounds what a client can hold:
//! at most [`ServeOptions::max_connections`] connections, each of which must finish its
//! handshake (plaintext: send its first byte) within [`ServeOptions::handshake_timeout`];
//! every refused connection is logged with the client's address and the reason (at most
//! [`REFUSAL_LOG_LINES_PER_SECOND`] lines a second). Peers keep one connection per server
//! and multiplex their invocations over it.

use crate::tls::AcceptedStream as Stream;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use ordo_proto::pb::chaincode::chaincode_server::{Chaincode as ChaincodeService, ChaincodeServer};
use ordo_proto::pb::chaincode::{
    chaincode_message, peer_message, ChaincodeMessage, Completed, DelState, GetHistory, GetRange,
    GetState, PeerMessage, PutState, SetEvent, StateResult,
};
use ordo_proto::pb::peer::ChaincodeResponse;

use super::{Chaincode, Context, HistoryItem, RangePage, Response as CcResponse, StateError};
use crate::tls::{AcceptError, Reload, ServerTls};

/// Largest message between peer and chaincode.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Refused connections logged one by one per second at most; the rest are summarised, so
/// a burst of connection attempts cannot flood the log.
pub const REFUSAL_LOG_LINES_PER_SECOND: u64 = 10;

/// How a chaincode server accepts connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Mutual TLS: the server's key pair and the CAs whose client certificates it accepts.
    /// `None`: plaintext (development only; logged as a warning). Default: `None`.
    pub tls: Option<ServerTls>,
    /// How long a new connection may take to complete its TLS handshake (plaintext: to send
    /// its first byte). Default: 10 s.
    pub handshake_timeout: Duration,
    /// Connections open at once; more are closed at once. Peers hold one each. Default:
    /// 1,024.
    pub max_connections: usize,
    /// How often the TLS key pair files are checked for changes; a changed pair is used by
    /// the next handshake (certificate rotation without a restart). Default: 5 s.
    pub reload_interval: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            reload_interval: Duration::from_secs(5),
        }
    }
}

/// Serves `chaincode` on `listener` in plaintext until `shutdown` resolves (see
/// [`serve_with`] for mutual TLS).
pub async fn serve(
    listener: TcpListener,
    chaincode: Arc<dyn Chaincode>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_with(listener, chaincode, ServeOptions::default(), shutdown).await
}

/// Serves `chaincode` on `listener` as `options` say until `shutdown` resolves.
pub async fn serve_with(
    listener: TcpListener,
    chaincode: Arc<dyn Chaincode>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    match &options.tls {
        Some(tls) => {
            info!(cert = %tls.key_pair().cert_path().display(), "chaincode server: mutual TLS");
            spawn_reloader(tls, options.reload_interval);
        }
        None => warn!(
            "chaincode server in PLAINTEXT: anyone who reaches it can run the chaincode and \
             read its answers; use mutual TLS outside development"
        ),
    }
    tonic::transport::Server::builder()
        .add_service(
            ChaincodeServer::new(Shim { chaincode })
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming(listener, options), shutdown)
        .await
}

/// Binds `addr` and serves `chaincode` in plaintext until `shutdown` resolves.
pub async fn serve_addr(
    addr: SocketAddr,
    chaincode: Arc<dyn Chaincode>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = TcpListener::bind(addr).await?;
    serve(listener, chaincode, shutdown).await?;
    Ok(())
}

/// Re-reads the key pair files when they change, for as long as the server holds its TLS
/// configuration (the task holds only a weak reference and ends with the server).
fn spawn_reloader(tls: &ServerTls, interval: Duration) {
    let pair = Arc::downgrade(tls.key_pair());
    let interval = interval.max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(pair) = pair.upgrade() else { return };
            match pair.reload_if_changed() {
                Ok(Reload::Reloaded) => info!(
                    cert = %pair.cert_path().display(),
                    "TLS key pair files changed: reloaded"
                ),
                Ok(Reload::Unchanged) => {}
                Err(e) => warn!(
                    error = %e,
                    "TLS key pair files changed but do not load; the previous pair stays in use"
                ),
            }
        }
    });
}

/// Who is on the other end of a connection to the chaincode server.
#[derive(Debug, Clone)]
pub struct ShimPeer {
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// Whether the connection is TLS (the client then presented a trusted certificate).
    pub tls: bool,
}

/// An accepted connection; holds its place under `max_connections` until dropped.
struct Conn {
    stream: Stream,
    peer: ShimPeer,
    _permit: OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ShimPeer;

    fn connect_info(&self) -> ShimPeer {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Refusal log lines, rate-limited per second.
#[derive(Debug)]
struct RefusalLog {
    window: Mutex<(Instant, u64, u64)>,
}

impl RefusalLog {
    fn new() -> Self {
        Self {
            window: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    fn refuse(&self, peer: SocketAddr, why: &dyn std::fmt::Display) {
        let mut w = match self.window.lock() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        let (start, lines, suppressed) = &mut *w;
        if start.elapsed() >= Duration::from_secs(1) {
            if *suppressed > 0 {
                warn!(
                    suppressed = *suppressed,
                    "more chaincode connections refused in the last second (not logged one by one)"
                );
            }
            *start = Instant::now();
            *lines = 0;
            *suppressed = 0;
        }
        if *lines < REFUSAL_LOG_LINES_PER_SECOND {
            *lines += 1;
            drop(w);
            warn!(%peer, "chaincode connection refused: {why}");
        } else {
            *suppressed += 1;
        }
    }
}

/// Accepted connections, TLS handshakes done, for tonic. The accept loop ends when tonic
/// drops the stream (shutdown).
fn incoming(
    listener: TcpListener,
    options: ServeOptions,
) -> ReceiverStream<Result<Conn, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, options, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    options: ServeOptions,
    tx: mpsc::Sender<Result<Conn, std::io::Error>>,
) {
    let capacity = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let log = Arc::new(RefusalLog::new());
    let mut backoff_ms = 0u64;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = tx.closed() => return,
            r = listener.accept() => match r {
                Ok(c) => { backoff_ms = 0; c }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    backoff_ms = (backoff_ms * 2).clamp(5, 1000);
                    warn!(error = %e, "accept failed; retrying in {backoff_ms} ms");
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = capacity.clone().try_acquire_owned() else {
            log.refuse(
                peer,
                &format!(
                    "server at its limit of {} connections",
                    options.max_connections
                ),
            );
            continue;
        };
        let (tx, log, tls, timeout) = (
            tx.clone(),
            log.clone(),
            options.tls.clone(),
            options.handshake_timeout,
        );
        // Handshakes run on their own tasks: a slow client never holds up the others.
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let stream = match tls {
                Some(tls) => match tls.accept(tcp, timeout).await {
                    Ok(s) => Stream::Tls(Box::new(s)),
                    Err(e @ AcceptError::Closed) => {
                        debug!(%peer, "chaincode connection closed: {e}");
                        return;
                    }
                    Err(e) => {
                        log.refuse(peer, &e);
                        return;
                    }
                },
                None => match first_byte(&tcp, timeout).await {
                    Ok(()) => Stream::Plain(tcp),
                    Err(AcceptError::Closed) => return,
                    Err(e) => {
                        log.refuse(peer, &e);
                        return;
                    }
                },
            };
            let conn = Conn {
                peer: ShimPeer {
                    remote_addr: peer,
                    tls: matches!(stream, Stream::Tls(_)),
                },
                stream,
                _permit: permit,
            };
            info!(%peer, tls = conn.peer.tls, "chaincode connection accepted");
            // The server stopped (shutdown): the connection just closes.
            let _ = tx.send(Ok(conn)).await;
        });
    }
}

/// A plaintext client must send its first byte within `timeout`, and it must not be a TLS
/// ClientHello: a TLS peer against a plaintext server is the usual misconfiguration once
/// peers run TLS, and deserves a line saying so rather than an HTTP/2 protocol error.
async fn first_byte(tcp: &TcpStream, timeout: Duration) -> Result<(), AcceptError> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
        Err(_) => Err(AcceptError::Timeout(timeout)),
        Ok(Ok(0) | Err(_)) => Err(AcceptError::Closed),
        Ok(Ok(_)) if first[0] == crate::tls::TLS_HANDSHAKE_RECORD => {
            Err(AcceptError::TlsOnPlaintext)
        }
        Ok(Ok(_)) => Ok(()),
    }
}

struct Shim {
    chaincode: Arc<dyn Chaincode>,
}

#[tonic::async_trait]
impl ChaincodeService for Shim {
    type InvokeStream = ReceiverStream<Result<ChaincodeMessage, Status>>;

    async fn invoke(
        &self,
        request: Request<Streaming<PeerMessage>>,
    ) -> Result<Response<Self::InvokeStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty invoke stream"))??;
        let Some(peer_message::Kind::Invoke(inv)) = first.kind else {
            return Err(Status::invalid_argument(
                "the first message must be the invocation",
            ));
        };
        let (out_tx, out_rx) = mpsc::channel(16);
        let (result_tx, result_rx) = std::sync::mpsc::channel::<StateResult>();
        // Answers from the peer, in order, to the blocking chaincode thread.
        tokio::spawn(async move {
            while let Some(Ok(msg)) = inbound.next().await {
                if let Some(peer_message::Kind::Result(r)) = msg.kind {
                    if result_tx.send(r).is_err() {
                        return;
                    }
                }
            }
        });
        let chaincode = self.chaincode.clone();
        tokio::task::spawn_blocking(move || {
            let mut ctx = RemoteContext {
                tx_id: inv.tx_id,
                transient: inv.transient,
                out: out_tx.clone(),
                results: result_rx,
            };
            let response = chaincode.invoke(&mut ctx, &inv.function, &inv.args);
            let _ =
                out_tx.blocking_send(Ok(message(chaincode_message::Kind::Completed(Completed {
                    response: Some(ChaincodeResponse {
                        status: response.status,
                        message: response.message,
                        payload: response.payload,
                    }),
                }))));
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }
}

fn message(kind: chaincode_message::Kind) -> ChaincodeMessage {
    ChaincodeMessage { kind: Some(kind) }
}

/// A [`Context`] whose every access is a request to the peer.
struct RemoteContext {
    tx_id: String,
    transient: super::TransientMap,
    out: mpsc::Sender<Result<ChaincodeMessage, Status>>,
    results: std::sync::mpsc::Receiver<StateResult>,
}

impl RemoteContext {
    fn ask(&self, kind: chaincode_message::Kind) -> Result<StateResult, StateError> {
        self.out
            .blocking_send(Ok(message(kind)))
            .map_err(|_| StateError::Unavailable("the peer closed the invocation".into()))?;
        let r = self
            .results
            .recv()
            .map_err(|_| StateError::Unavailable("the peer closed the invocation".into()))?;
        if r.error.is_empty() {
            Ok(r)
        } else {
            Err(StateError::Unavailable(r.error))
        }
    }
}

impl Context for RemoteContext {
    fn tx_id(&self) -> &str {
        &self.tx_id
    }

    fn transient(&self) -> &super::TransientMap {
        &self.transient
    }

    fn get(&mut self, key: &str) -> Result<Option<Bytes>, StateError> {
        let r = self.ask(chaincode_message::Kind::Get(GetState { key: key.into() }))?;
        Ok(r.found.then_some(r.value))
    }

    fn put(&mut self, key: &str, value: Bytes) -> Result<(), StateError> {
        self.ask(chaincode_message::Kind::Put(PutState {
            key: key.into(),
            value,
        }))
        .map(|_| ())
    }

    fn delete(&mut self, key: &str) -> Result<(), StateError> {
        self.ask(chaincode_message::Kind::Del(DelState { key: key.into() }))
            .map(|_| ())
    }

    fn range(&mut self, start: &str, end: &str) -> Result<Vec<(String, Bytes)>, StateError> {
        let r = self.ask(chaincode_message::Kind::Range(GetRange {
            start: start.into(),
            end: end.into(),
            limit: 0,
        }))?;
        Ok(r.items.into_iter().map(|kv| (kv.key, kv.value)).collect())
    }

    fn range_page(
        &mut self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<RangePage, StateError> {
        let r = self.ask(chaincode_message::Kind::Range(GetRange {
            start: start.into(),
            end: end.into(),
            limit: u32::try_from(limit.max(1)).unwrap_or(u32::MAX),
        }))?;
        let items = r.items.into_iter().map(|kv| (kv.key, kv.value)).collect();
        Ok((items, (!r.next_start.is_empty()).then_some(r.next_start)))
    }

    fn history(&mut self, key: &str) -> Result<Vec<HistoryItem>, StateError> {
        let r = self.ask(chaincode_message::Kind::History(GetHistory {
            key: key.into(),
        }))?;
        Ok(r.history
            .into_iter()
            .map(|h| HistoryItem {
                block: h.block,
                tx: h.tx,
                value: (!h.is_delete).then_some(h.value),
            })
            .collect())
    }

    fn set_event(&mut self, name: &str, payload: Bytes) {
        // Events need no answer; an unreachable peer fails the next access or Completed.
        let _ = self.ask(chaincode_message::Kind::Event(SetEvent {
            name: name.into(),
            payload,
        }));
    }
}

/// Why a response from a chaincode server is not a success, for the peer's error.
pub fn unreachable_response(addr: &str, why: &str) -> CcResponse {
    CcResponse::error(500, format!("chaincode server at {addr} failed: {why}"))
}
