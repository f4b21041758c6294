//! The AtomicBroadcast service as this node serves it: Broadcast through the generated
//! server, Deliver with blocks sent as the ledger stored them.
//!
//! The generated server would make Deliver decode every stored block into a `Block` and
//! encode it again for the wire — a 1 MiB decode, re-encode and two copies per block per
//! reader, for bytes that are already the exact encoding (the ledger stores each block
//! encoded once, at append). [`EncodedDeliverResponse`] is `DeliverResponse` on the wire —
//! an embedded message and a `bytes` field with the same tag have the same encoding — but
//! carries the block as those stored bytes. Clients see no difference (a test decodes one
//! as the other).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{NamedService, ServerStreamingService};
use tonic::{Request, Response, Status};

use ordo_proto::pb::common::Envelope;
use ordo_proto::pb::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};

use crate::deliver::DeliverHandler;

/// The gRPC path of Deliver.
const DELIVER_PATH: &str = "/ordo.orderer.AtomicBroadcast/Deliver";

/// `ordo.orderer.DeliverResponse` with the block as its encoded bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedDeliverResponse {
    /// A block or the final status.
    #[prost(oneof = "EncodedDeliverItem", tags = "1, 2")]
    pub item: Option<EncodedDeliverItem>,
    /// Why the stream ended (with a status).
    #[prost(string, tag = "3")]
    pub info: String,
}

/// The `type` oneof of `DeliverResponse`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EncodedDeliverItem {
    /// An `ordo.common.Status` value: ends the stream.
    #[prost(int32, tag = "1")]
    Status(i32),
    /// An encoded `ordo.common.Block`, exactly as stored.
    #[prost(bytes = "bytes", tag = "2")]
    Block(Bytes),
}

/// AtomicBroadcast: Deliver answered here, everything else by the generated server.
pub struct AtomicBroadcastService<T: AtomicBroadcast> {
    generated: AtomicBroadcastServer<T>,
    deliver: Arc<DeliverHandler>,
    max_message_bytes: usize,
}

impl<T: AtomicBroadcast> AtomicBroadcastService<T> {
    /// Serves `generated` (for Broadcast) and `deliver`, both with the node's message
    /// size limit.
    pub fn new(generated: T, deliver: DeliverHandler, max_message_bytes: usize) -> Self {
        Self {
            generated: AtomicBroadcastServer::new(generated)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            deliver: Arc::new(deliver),
            max_message_bytes,
        }
    }
}

impl<T: AtomicBroadcast> Clone for AtomicBroadcastService<T> {
    fn clone(&self) -> Self {
        Self {
            generated: self.generated.clone(),
            deliver: self.deliver.clone(),
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// One Deliver call.
struct DeliverCall(Arc<DeliverHandler>);

impl ServerStreamingService<Envelope> for DeliverCall {
    type Response = EncodedDeliverResponse;
    type ResponseStream = ReceiverStream<Result<EncodedDeliverResponse, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Envelope>) -> Self::Future {
        let handler = self.0.clone();
        Box::pin(async move { Ok(Response::new(handler.handle(request.into_inner()))) })
    }
}

impl<T: AtomicBroadcast> Service<http::Request<tonic::body::Body>> for AtomicBroadcastService<T> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != DELIVER_PATH {
            return self.generated.call(req);
        }
        let call = DeliverCall(self.deliver.clone());
        let limit = Some(self.max_message_bytes);
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<EncodedDeliverResponse, Envelope>::default();
            let mut grpc =
                tonic::server::Grpc::new(codec).apply_max_message_size_config(limit, limit);
            Ok(grpc.server_streaming(call, req).await)
        })
    }
}

impl<T: AtomicBroadcast> NamedService for AtomicBroadcastService<T> {
    const NAME: &'static str = "ordo.orderer.AtomicBroadcast";
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_proto::pb::common::Status as Code;
    use ordo_proto::pb::orderer::{deliver_response, DeliverResponse};
    use prost::Message;

    #[test]
    fn an_encoded_response_is_a_deliver_response_on_the_wire() {
        let block = ordo_proto::block::build(
            3,
            [7u8; 32],
            vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")],
        );
        let raw = EncodedDeliverResponse {
            item: Some(EncodedDeliverItem::Block(block.encode_to_vec().into())),
            info: String::new(),
        };
        let decoded = DeliverResponse::decode(raw.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(
            decoded.r#type,
            Some(deliver_response::Type::Block(block.clone()))
        );
        let typed = DeliverResponse {
            r#type: Some(deliver_response::Type::Block(block)),
            info: String::new(),
        };
        assert_eq!(typed.encode_to_vec(), raw.encode_to_vec(), "byte-identical");

        let end = EncodedDeliverResponse {
            item: Some(EncodedDeliverItem::Status(Code::NotFound as i32)),
            info: "block 9 is not available yet".into(),
        };
        let decoded = DeliverResponse::decode(end.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(
            decoded.r#type,
            Some(deliver_response::Type::Status(Code::NotFound as i32))
        );
        assert_eq!(decoded.info, "block 9 is not available yet");
    }
}
