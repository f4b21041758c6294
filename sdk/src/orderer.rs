//! Talking to an orderer: connecting, and building the signed requests its services take.

use bytes::Bytes;
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::admin_client::AdminClient;
use ordo_proto::pb::admin::{admin_command, AdminCommand};
use ordo_proto::pb::common::{Envelope, HeaderType};
use ordo_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo_proto::pb::orderer::{seek_position, SeekBehavior, SeekInfo, SeekPosition};
use prost::Message;
use tonic::transport::Channel;

/// Largest gRPC message a client accepts: a block of the largest allowed size plus room.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 80 * 1024 * 1024;

/// Opens a gRPC channel to `addr` (`host:port` or a URL) over `transport`.
pub use crate::transport::connect;

/// An AtomicBroadcast client with Ordo's message size limits.
pub fn broadcast_client(channel: Channel) -> AtomicBroadcastClient<Channel> {
    AtomicBroadcastClient::new(channel)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
}

/// An Admin client with Ordo's message size limits.
pub fn admin_client(channel: Channel) -> AdminClient<Channel> {
    AdminClient::new(channel)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
}

/// A seek position: `None` for the newest block, `Some(n)` for block `n`.
pub fn position(n: Option<u64>) -> SeekPosition {
    SeekPosition {
        r#type: Some(match n {
            Some(n) => seek_position::Type::Specified(n),
            None => seek_position::Type::Newest(Default::default()),
        }),
    }
}

/// The oldest position.
pub fn oldest() -> SeekPosition {
    SeekPosition {
        r#type: Some(seek_position::Type::Oldest(Default::default())),
    }
}

/// A signed Deliver request for `channel`.
pub fn seek_request(
    identity: &Identity,
    channel: &str,
    start: SeekPosition,
    stop: Option<SeekPosition>,
    behavior: SeekBehavior,
) -> Envelope {
    let seek = SeekInfo {
        start: Some(start),
        stop,
        behavior: behavior as i32,
    };
    envelope::create_signed(
        identity,
        channel,
        HeaderType::DeliverSeekInfo,
        Bytes::from(seek.encode_to_vec()),
        ordo_proto::now_ms(),
    )
    .0
}

/// A signed Admin request. Channel-less commands (list) use the channel id `-`.
pub fn admin_request(
    identity: &Identity,
    channel: &str,
    command: admin_command::Command,
) -> Envelope {
    let cmd = AdminCommand {
        command: Some(command),
    };
    let channel = if channel.is_empty() { "-" } else { channel };
    envelope::create_signed(
        identity,
        channel,
        HeaderType::AdminCommand,
        Bytes::from(cmd.encode_to_vec()),
        ordo_proto::now_ms(),
    )
    .0
}
