//! The AtomicBroadcast service as this node serves it: envelopes taken with their received
//! bytes, blocks sent as the ledger stored them.
//!
//! Broadcast decodes each envelope from the received buffer and keeps that buffer when it
//! is the envelope's canonical encoding ([`ReceivedEnvelope`]): the block takes those
//! bytes instead of a fresh encoding, one copy and allocation fewer per envelope.
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

use bytes::Buf;
use bytes::Bytes;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{NamedService, ServerStreamingService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::{ProstCodec, ProstEncoder};

use ordo_proto::pb::common::Envelope;
use ordo_proto::pb::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};
use ordo_proto::pb::orderer::BroadcastResponse;

use crate::broadcast::{BroadcastHandler, ReceivedEnvelope};
use crate::deliver::DeliverHandler;
use crate::inflight::{BroadcastBuffers, BudgetedBody, StreamShare};

/// The gRPC path of Deliver.
const DELIVER_PATH: &str = "/ordo.orderer.AtomicBroadcast/Deliver";
/// The gRPC path of Broadcast.
const BROADCAST_PATH: &str = "/ordo.orderer.AtomicBroadcast/Broadcast";

/// Broadcast's codec: responses as usual, envelopes as [`ReceivedEnvelope`], each taking
/// its bytes' room in the buffer budget from the stream ([`crate::inflight`]).
struct BroadcastCodec(Arc<StreamShare>);

impl Codec for BroadcastCodec {
    type Encode = BroadcastResponse;
    type Decode = ReceivedEnvelope;
    type Encoder = ProstEncoder<BroadcastResponse>;
    type Decoder = ReceivedDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<BroadcastResponse, Envelope>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ReceivedDecoder(self.0.clone())
    }
}

/// Bytes of the gRPC prefix of every message (compression flag and length).
const GRPC_PREFIX_BYTES: usize = 5;

/// Takes the message's bytes out of the receive buffer (no copy) and decodes them; the
/// envelope holds their room in the budget until its checks begin.
struct ReceivedDecoder(Arc<StreamShare>);

impl Decoder for ReceivedDecoder {
    type Item = ReceivedEnvelope;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        let raw = buf.copy_to_bytes(buf.remaining());
        let held = self.0.decoded(raw.len() + GRPC_PREFIX_BYTES);
        // Bytes that are no Envelope are the client's mistake, not the server's.
        ReceivedEnvelope::decode(raw)
            .map(|e| Some(e.holding(held)))
            .map_err(|e| Status::invalid_argument(format!("not an ordo.common.Envelope: {e}")))
    }
}

/// One Broadcast call.
struct BroadcastCall(Arc<BroadcastHandler>);

impl StreamingService<ReceivedEnvelope> for BroadcastCall {
    type Response = BroadcastResponse;
    type ResponseStream = ReceiverStream<Result<BroadcastResponse, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<ReceivedEnvelope>>) -> Self::Future {
        let handler = self.0.clone();
        Box::pin(async move { Ok(handler.handle(request.into_inner())) })
    }
}

/// `ordo.orderer.DeliverResponse` with the block as its encoded bytes, exactly as the
/// ledger stored them: never decoded and re-encoded on the way out.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedDeliverResponse {
    /// An encoded `ordo.common.Block`.
    #[prost(bytes = "bytes", tag = "2")]
    pub block: Bytes,
}

/// AtomicBroadcast: Broadcast and Deliver answered here, anything else by the generated
/// server (which answers UNIMPLEMENTED for unknown methods).
pub struct AtomicBroadcastService<T: AtomicBroadcast> {
    generated: AtomicBroadcastServer<T>,
    broadcast: Arc<BroadcastHandler>,
    deliver: Arc<DeliverHandler>,
    max_message_bytes: usize,
    buffers: BroadcastBuffers,
}

impl<T: AtomicBroadcast> AtomicBroadcastService<T> {
    /// Serves `broadcast` and `deliver` with the node's message size limit, Broadcast's
    /// received bytes within `buffers`; `generated` answers the rest.
    pub fn new(
        generated: T,
        broadcast: BroadcastHandler,
        deliver: DeliverHandler,
        max_message_bytes: usize,
        buffers: BroadcastBuffers,
    ) -> Self {
        Self {
            generated: AtomicBroadcastServer::new(generated)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            broadcast: Arc::new(broadcast),
            deliver: Arc::new(deliver),
            max_message_bytes,
            buffers,
        }
    }
}

impl<T: AtomicBroadcast> Clone for AtomicBroadcastService<T> {
    fn clone(&self) -> Self {
        Self {
            generated: self.generated.clone(),
            broadcast: self.broadcast.clone(),
            deliver: self.deliver.clone(),
            max_message_bytes: self.max_message_bytes,
            buffers: self.buffers.clone(),
        }
    }
}

/// One Deliver call.
struct DeliverCall(Arc<DeliverHandler>);

impl ServerStreamingService<Envelope> for DeliverCall {
    type Response = EncodedDeliverResponse;
    type ResponseStream =
        ordo_node::stream_budget::BudgetStream<Result<EncodedDeliverResponse, Status>>;
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
        let limit = Some(self.max_message_bytes);
        match req.uri().path() {
            DELIVER_PATH => {
                let call = DeliverCall(self.deliver.clone());
                Box::pin(async move {
                    let codec = ProstCodec::<EncodedDeliverResponse, Envelope>::default();
                    let mut grpc =
                        tonic::server::Grpc::new(codec).apply_max_message_size_config(limit, limit);
                    Ok(grpc.server_streaming(call, req).await)
                })
            }
            BROADCAST_PATH => {
                let call = BroadcastCall(self.broadcast.clone());
                let share = StreamShare::new(self.buffers.clone());
                let (parts, body) = req.into_parts();
                let body = tonic::body::Body::new(BudgetedBody::new(body, share.clone()));
                let req = http::Request::from_parts(parts, body);
                Box::pin(async move {
                    let mut grpc = tonic::server::Grpc::new(BroadcastCodec(share))
                        .apply_max_message_size_config(limit, limit);
                    Ok(grpc.streaming(call, req).await)
                })
            }
            _ => self.generated.call(req),
        }
    }
}

impl<T: AtomicBroadcast> NamedService for AtomicBroadcastService<T> {
    const NAME: &'static str = "ordo.orderer.AtomicBroadcast";
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_proto::pb::orderer::DeliverResponse;
    use prost::Message;

    #[test]
    fn received_bytes_are_kept_only_when_canonical() {
        let env = Envelope {
            payload: Bytes::from_static(b"payload"),
            signature: Bytes::from_static(b"signature"),
        };
        let canonical = Bytes::from(env.encode_to_vec());
        let got = ReceivedEnvelope::decode(canonical.clone()).expect("decode");
        assert_eq!(got.envelope, env);
        assert_eq!(got.canonical_bytes, Some(canonical.clone()));

        // An unknown field (tag 9, varint 1) after the known ones: decodes to the same
        // envelope, but the block must get the canonical encoding, not these bytes.
        let mut padded = canonical.to_vec();
        padded.extend_from_slice(&[0x48, 0x01]);
        let got = ReceivedEnvelope::decode(Bytes::from(padded)).expect("decode");
        assert_eq!(got.envelope, env);
        assert_eq!(got.canonical_bytes, None);

        assert!(ReceivedEnvelope::decode(Bytes::from_static(&[0xff, 0xff])).is_err());
    }

    #[test]
    fn an_encoded_response_is_a_deliver_response_on_the_wire() {
        let block = ordo_proto::block::build(
            3,
            [7u8; 32],
            vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")],
        );
        let raw = EncodedDeliverResponse {
            block: block.encode_to_vec().into(),
        };
        let decoded = DeliverResponse::decode(raw.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(decoded.block, Some(block.clone()));
        let typed = DeliverResponse { block: Some(block) };
        assert_eq!(typed.encode_to_vec(), raw.encode_to_vec(), "byte-identical");
    }
}
