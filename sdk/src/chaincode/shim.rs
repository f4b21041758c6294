//! The chaincode shim: serves any [`Chaincode`] as a chaincode server that peers call
//! (chaincode as a service). An external chaincode is `impl Chaincode` plus [`serve`].
//!
//! Each invocation is one `Invoke` stream: the peer sends the invocation, the chaincode
//! runs on a blocking thread and every state access becomes a request on the stream,
//! answered by the peer from its simulation. The chaincode never holds state itself, so
//! a crash mid-invocation loses nothing: the peer's simulation is simply dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use ordo_proto::pb::chaincode::chaincode_server::{Chaincode as ChaincodeService, ChaincodeServer};
use ordo_proto::pb::chaincode::{
    chaincode_message, peer_message, ChaincodeMessage, Completed, DelState, GetHistory, GetRange,
    GetState, PeerMessage, PutState, SetEvent, StateResult,
};
use ordo_proto::pb::peer::ChaincodeResponse;

use super::{Chaincode, Context, HistoryItem, Response as CcResponse, StateError};

/// Largest message between peer and chaincode.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Serves `chaincode` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    chaincode: Arc<dyn Chaincode>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(
            ChaincodeServer::new(Shim { chaincode })
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// Binds `addr` and serves `chaincode` until `shutdown` resolves.
pub async fn serve_addr(
    addr: SocketAddr,
    chaincode: Arc<dyn Chaincode>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = TcpListener::bind(addr).await?;
    serve(listener, chaincode, shutdown).await?;
    Ok(())
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
        }))?;
        Ok(r.items.into_iter().map(|kv| (kv.key, kv.value)).collect())
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
