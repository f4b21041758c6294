//! Admin requests (`ordo.admin.Admin/Execute`) through the real handlers of the in-process
//! orderer and peer: header type, freshness, the node's org admins, the signature, replay
//! protection, the command and its arguments (a genesis block to join, channel names,
//! backup names), and the command itself.
//!
//! Input: a mode byte, then bytes. Bit 6 of the mode sends the request to the peer instead
//! of the orderer. Top bit set: the bytes are the request envelope as received. Otherwise
//! they are a payload signed by the fixture member bits 3–5 pick, restamped as bits 0–2
//! say ([`fixture::Restamp`]).
//!
//! Invariants: a refusal is a documented gRPC code with a reason
//! ([`fixture::assert_documented_refusal`]); a backup is written under the node's own
//! `backups/` directory and nowhere else, whatever the request names.

use bytes::Bytes;
use prost::Message;

use ordo_proto::envelope::create_signed_with_nonce;
use ordo_proto::pb::admin::{admin_command, AdminCommand, AdminResponse, Backup, GetChannelInfo};
use ordo_proto::pb::common::HeaderType;
use ordo_testkit::admin;
use ordo_testkit::ChannelBuilder;

use crate::fixture::{self, members, runtime, CHANNEL, NOW_MS};
use crate::nodes::{orderer, peer};

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((mode, rest)) = fixture::split(data) else {
        return;
    };
    let Some(request) = fixture::request(mode, rest) else {
        return;
    };
    let to_peer = mode & 0x40 != 0;
    // Started outside the runtime (their start blocks on it).
    let (orderer, peer) = (orderer(), peer());
    let answer: Result<AdminResponse, tonic::Status> = runtime().block_on(async {
        if to_peer {
            peer.admin.execute(request).await
        } else {
            orderer.admin.execute(request).await
        }
    });
    let response = match answer {
        Ok(response) => response,
        Err(refusal) => return fixture::assert_documented_refusal(&refusal),
    };
    if let Some(backup) = &response.backup {
        let node = fixture::scratch(if to_peer { "peer" } else { "orderer" });
        let root = node.join("backups");
        assert!(
            std::path::Path::new(&backup.path).starts_with(&root),
            "a backup at {} outside {}",
            backup.path,
            root.display()
        );
    }
}

/// Commands by org A's admin: list, info, a backup, a join of a new solo channel, a
/// remove of a channel the node does not serve; and a list by a client.
pub fn seeds() -> Vec<Vec<u8>> {
    let m = members();
    let other = ChannelBuilder::new("fuzz-joined")
        .org(&ordo_testkit::TestOrg::with_ca("A", m.ca_a.clone()))
        .genesis(NOW_MS);
    let commands = [
        admin::list(),
        admin_command::Command::Info(GetChannelInfo {
            channel_id: CHANNEL.into(),
        }),
        admin_command::Command::Backup(Backup {
            name: "fuzz-backup".into(),
            channel_id: CHANNEL.into(),
        }),
        admin::join(&other),
        admin::remove("no-such-channel"),
    ];
    // Fixed nonces: the same seed bytes on every run.
    let payload = |who, command, n: u8| -> Bytes {
        let data = AdminCommand {
            command: Some(command),
        };
        create_signed_with_nonce(
            who,
            "-",
            HeaderType::AdminCommand,
            data.encode_to_vec().into(),
            NOW_MS,
            &[n; 24],
        )
        .0
        .payload
    };
    let mut seeds = Vec::new();
    for (n, command) in commands.into_iter().enumerate() {
        let p = payload(&m.admin_a, command, n as u8);
        // Org A's admin (signer 1), restamped now; to the orderer and to the peer.
        seeds.push([&[(1u8 << 3) | 0b001][..], &p].concat());
        seeds.push([&[0x40 | (1u8 << 3) | 0b001][..], &p].concat());
    }
    seeds.push([&[0b001u8][..], &payload(&m.client, admin::list(), 99)].concat());
    seeds
}
