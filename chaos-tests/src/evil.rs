//! A lying orderer: a real gRPC AtomicBroadcast server that relays Deliver from an honest
//! orderer and tampers with some blocks on the way — changed envelope bytes under the
//! original header (the data hash no longer matches), or a consistent new header (the
//! orderer signatures no longer match). Peers are given it as their first orderer
//! endpoint; they must refuse every tampered block, fall back to an honest orderer, and
//! end with the same state as peers that never saw it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use ordo_proto::pb::common::{Block, Envelope};
use ordo_proto::pb::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};
use ordo_proto::pb::orderer::{deliver_response, BroadcastResponse, DeliverResponse};

/// Every how many blocks one is tampered with.
const TAMPER_EVERY: u64 = 3;

/// The lying orderer's service.
struct Liar {
    honest: String,
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
        let conn = ordo_sdk::orderer::connect(&self.honest, &ordo_sdk::transport::Transport::Plain)
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

impl LyingOrderer {
    /// Starts one relaying from `honest` (an orderer's address).
    pub async fn start(honest: String) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tampered = Arc::new(AtomicU64::new(0));
        let service = Liar {
            honest,
            tampered: tampered.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(
                    AtomicBroadcastServer::new(service)
                        .max_decoding_message_size(ordo_sdk::orderer::MAX_GRPC_MESSAGE_BYTES)
                        .max_encoding_message_size(ordo_sdk::orderer::MAX_GRPC_MESSAGE_BYTES),
                )
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Ok(Self {
            addr,
            tampered,
            task,
        })
    }
}
