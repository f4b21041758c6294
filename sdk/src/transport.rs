//! Opening gRPC channels to Ordo nodes, in plaintext or over mutual TLS.
//!
//! Every connection any Ordo process opens — a client to an orderer or peer, a peer to its
//! orderers, one orderer to another, a gateway to other orgs' endorsers — goes through
//! [`Transport`], so the choice between TLS and plaintext is made once per process and
//! cannot be forgotten at one call site.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::tls::ClientTls;

/// How long opening a connection (TCP and the TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How this process connects to Ordo nodes.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// Plain HTTP/2 (development networks started with `ordo up --insecure`).
    #[default]
    Plain,
    /// TLS 1.3, presenting a client certificate when the node asks for one.
    Tls(ClientTls),
}

impl Transport {
    /// Whether connections are encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

/// Options of one connection beyond the transport.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// Local address connections leave from (see the orderer's `cluster_source_addr`).
    pub source_addr: Option<IpAddr>,
}

fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    // The scheme is always http: the connector below does TLS itself, so tonic must not.
    let authority = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr);
    Ok(Endpoint::from_shared(format!("http://{authority}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // Blocks are megabytes: HTTP/2's default 64 KiB window would stall a Deliver
        // stream on a round trip every 64 KiB.
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        // A dead peer behind a silent network is noticed within ~40 s, not never.
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true))
}

/// Opens a gRPC channel to `addr` (`host:port`, or a URL) and waits until it is connected.
pub async fn connect(
    addr: &str,
    transport: &Transport,
) -> Result<Channel, tonic::transport::Error> {
    connect_with(addr, transport, ConnectOptions::default()).await
}

/// [`connect`] with options.
pub async fn connect_with(
    addr: &str,
    transport: &Transport,
    options: ConnectOptions,
) -> Result<Channel, tonic::transport::Error> {
    endpoint(addr)?
        .connect_with_connector(Connector::new(transport, options))
        .await
}

/// A channel to `addr` that connects on first use and reconnects by itself.
pub fn connect_lazy(
    addr: &str,
    transport: &Transport,
    options: ConnectOptions,
) -> Result<Channel, tonic::transport::Error> {
    Ok(endpoint(addr)?.connect_with_connector_lazy(Connector::new(transport, options)))
}

/// The tower connector behind every Ordo channel: TCP (optionally from a source address),
/// then TLS when the transport says so.
#[derive(Clone)]
pub struct Connector {
    transport: Transport,
    options: ConnectOptions,
}

impl Connector {
    /// A connector for `transport`.
    pub fn new(transport: &Transport, options: ConnectOptions) -> Self {
        Self {
            transport: transport.clone(),
            options,
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URI names no host or port.
    #[error("address {0:?} has no host:port")]
    Address(String),
    /// Resolving or reaching the address failed.
    #[error("{addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (untrusted server certificate, wrong name, refused client
    /// certificate, a plaintext server, ...).
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        /// The address.
        addr: String,
        /// What rustls said.
        source: std::io::Error,
    },
}

/// A connected stream, plain or TLS.
pub type Io = TokioIo<MaybeTls>;

/// A TCP stream, with TLS on top or not.
pub enum MaybeTls {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS client side.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
}

async fn open(uri: Uri, transport: Transport, options: ConnectOptions) -> Result<Io, ConnectError> {
    let host = uri
        .host()
        .ok_or_else(|| ConnectError::Address(uri.to_string()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .ok_or_else(|| ConnectError::Address(uri.to_string()))?;
    let addr = format!("{host}:{port}");
    let io = |source| ConnectError::Io {
        addr: addr.clone(),
        source,
    };
    let targets: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(io)?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut tcp = None;
    for target in targets {
        match dial(target, options.source_addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or_else(|| io(last))?;
    // Nagle would hold small gRPC frames back by up to 40 ms.
    tcp.set_nodelay(true).map_err(io)?;
    match transport {
        Transport::Plain => Ok(TokioIo::new(MaybeTls::Plain(tcp))),
        Transport::Tls(tls) => {
            let name = ServerName::try_from(host.clone()).map_err(|e| ConnectError::Tls {
                addr: addr.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            })?;
            let stream = tokio_rustls::TlsConnector::from(tls.config())
                .connect(name, tcp)
                .await
                .map_err(|source| ConnectError::Tls {
                    addr: addr.clone(),
                    source,
                })?;
            Ok(TokioIo::new(MaybeTls::Tls(Box::new(stream))))
        }
    }
}

async fn dial(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(target).await
}

impl tower_service::Service<Uri> for Connector {
    type Response = Io;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Io, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(open(uri, self.transport.clone(), self.options))
    }
}
