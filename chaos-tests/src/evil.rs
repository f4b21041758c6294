//! A lying orderer: a real gRPC AtomicBroadcast server that relays Deliver from an honest
//! orderer and tampers with some blocks on the way — changed envelope bytes under the
//! original header (the data hash no longer matches), or a consistent new header (the
//! orderer signatures no longer match). Peers are given it as their first orderer
//! endpoint; they must refuse every tampered block, fall back to an honest orderer, and
//! end with the same state as peers that never saw it.
//!
//! It speaks mutual TLS on both sides, with a valid certificate of BankA's TLS CA
//! ([`crate::net::LIAR_MEMBER`]): peers dial it over TLS like any orderer endpoint (a
//! plaintext server would be refused at the handshake, and the peer would never see a
//! tampered block — the test would prove nothing), and it reads from the honest orderer
//! as a TLS client. TLS vouches only for who holds the socket; what the blocks say is
//! checked by the peers against the orderers' signatures, which a liar cannot forge.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use ordo_sdk::tls::{ClientTls, ServerStream, ServerTls, TlsFiles};
use ordo_sdk::transport::Transport;

use ordo_proto::pb::common::{Block, Envelope};
use ordo_proto::pb::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};
use ordo_proto::pb::orderer::{deliver_response, BroadcastResponse, DeliverResponse};

/// Every how many blocks one is tampered with.
const TAMPER_EVERY: u64 = 3;
/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The lying orderer's service.
struct Liar {
    honest: String,
    transport: Transport,
    tampered: Arc<AtomicU64>,
}

/// Changes `block` so that no honest orderer could have produced it: odd numbers get one
/// envelope byte flipped under the original header; even numbers get a header that
/// matches the changed data (so only the signatures betray it).
fn tamper(mut block: Block) -> Block {
    let number = block.header.as_ref().map_or(0, |h| h.number);
    let Some(data) = block.data.as_mut() else {
        return block;
    };
    let Some(last) = data.data.last_mut() else {
        return block;
    };
    let mut bytes = last.to_vec();
    if let Some(b) = bytes.last_mut() {
        *b ^= 0x01;
    }
    *last = Bytes::from(bytes);
    if number % 2 == 0 {
        let root = ordo_proto::merkle::root(&data.data);
        if let Some(h) = block.header.as_mut() {
            h.data_hash = root.to_vec().into();
        }
    }
    block
}

#[tonic::async_trait]
impl AtomicBroadcast for Liar {
    type BroadcastStream = ReceiverStream<Result<BroadcastResponse, Status>>;
    type DeliverStream = ReceiverStream<Result<DeliverResponse, Status>>;

    async fn broadcast(
        &self,
        _request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::BroadcastStream>, Status> {
        Err(Status::unimplemented("this orderer only lies about blocks"))
    }

    async fn deliver(
        &self,
        request: Request<Envelope>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let conn = ordo_sdk::orderer::connect(&self.honest, &self.transport)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut client = ordo_sdk::orderer::broadcast_client(conn);
        let mut upstream = client.deliver(request.into_inner()).await?.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let tampered = self.tampered.clone();
        tokio::spawn(async move {
            while let Some(item) = upstream.next().await {
                let item = item.map(|mut resp| {
                    if let Some(deliver_response::Type::Block(b)) = resp.r#type.take() {
                        let number = b.header.as_ref().map_or(0, |h| h.number);
                        let b = if number > 0 && number % TAMPER_EVERY == 0 {
                            tampered.fetch_add(1, Ordering::Relaxed);
                            tamper(b)
                        } else {
                            b
                        };
                        resp.r#type = Some(deliver_response::Type::Block(b));
                    }
                    resp
                });
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A running lying orderer.
pub struct LyingOrderer {
    /// Its address.
    pub addr: SocketAddr,
    /// Blocks it has tampered with so far.
    pub tampered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LyingOrderer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An accepted TLS connection, as tonic serves it.
struct TlsConn(Box<ServerStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.get_mut().0.as_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener` and completes their TLS handshakes, each on its own
/// task (a slow handshake holds up nobody); ends when tonic drops the stream.
fn incoming(listener: TcpListener, tls: ServerTls) -> ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                // A refused handshake (a client without a trusted certificate) just closes.
                if let Ok(stream) = tls.accept(tcp, HANDSHAKE_TIMEOUT).await {
                    let _ = tx.send(Ok(TlsConn(Box::new(stream)))).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

impl LyingOrderer {
    /// Starts one relaying from `honest` (an orderer's address), presenting the TLS key
    /// pair of `tls` to the peers that dial it and to the honest orderer it reads from,
    /// and accepting clients whose certificates chain to `tls.ca`.
    pub async fn start(honest: String, tls: &TlsFiles) -> Result<Self, crate::net::NetError> {
        let server_tls = ServerTls::from_files(tls)?;
        let transport = Transport::Tls(ClientTls::from_files(tls)?);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tampered = Arc::new(AtomicU64::new(0));
        let service = Liar {
            honest,
            transport,
            tampered: tampered.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(
                    AtomicBroadcastServer::new(service)
                        .max_decoding_message_size(ordo_sdk::orderer::MAX_GRPC_MESSAGE_BYTES)
                        .max_encoding_message_size(ordo_sdk::orderer::MAX_GRPC_MESSAGE_BYTES),
                )
                .serve_with_incoming(incoming(listener, server_tls))
                .await;
        });
        Ok(Self {
            addr,
            tampered,
            task,
        })
    }
}
