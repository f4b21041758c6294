//! Admin requests as tests send them, including ones stamped at a chosen time (replay
//! protection is about timestamps).

use bytes::Bytes;
use prost::Message as _;

use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::{
    admin_command, AdminCommand, JoinChannel, ListChannels, RemoveChannel,
};
use ordo_proto::pb::common::{Block, Envelope, HeaderType};

/// A signed ADMIN_COMMAND from `who` stamped `timestamp_ms`.
pub fn request_at(who: &Identity, command: admin_command::Command, timestamp_ms: u64) -> Envelope {
    let cmd = AdminCommand {
        command: Some(command),
    };
    ordo_proto::envelope::create_signed(
        who,
        "-",
        HeaderType::AdminCommand,
        Bytes::from(cmd.encode_to_vec()),
        timestamp_ms,
    )
    .0
}

/// A signed ADMIN_COMMAND from `who` stamped now.
pub fn request(who: &Identity, command: admin_command::Command) -> Envelope {
    request_at(who, command, ordo_proto::now_ms())
}

/// Join the channel of `genesis`.
pub fn join(genesis: &Block) -> admin_command::Command {
    admin_command::Command::Join(JoinChannel {
        genesis_block: genesis.encode_to_vec().into(),
    })
}

/// Remove `channel`.
pub fn remove(channel: &str) -> admin_command::Command {
    admin_command::Command::Remove(RemoveChannel {
        channel_id: channel.into(),
    })
}

/// List the node's channels.
pub fn list() -> admin_command::Command {
    admin_command::Command::List(ListChannels {})
}
