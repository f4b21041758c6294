//! Test fixtures shared by the engines' transcript tests: one org whose keys come from
//! fixed seeds, a channel genesis block, envelopes named by a number.

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use prost::Message as _;

use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::common::{
    AckMode, BatchSize, Block, ChannelConfig, HeaderType, OrdererConfig, Organization, Role,
};
use ordo_proto::policy::build as policy;

/// The channel of every fixture.
pub(crate) const CHANNEL: &str = "engine-test";

/// A key from a fixed seed byte.
pub(crate) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The channel's genesis block: one org, consenters `1..=size`, blocks of at most
/// `max_count` envelopes.
pub(crate) fn genesis(size: u64, max_count: u32) -> Block {
    let consenters = (1..=size)
        .map(|n| {
            let name = format!("orderer{n}");
            let identity = Identity::enroll(
                &key(1),
                key(10 + n as u8),
                &Enrollment::new("A", Role::Orderer, &name),
            );
            ordo_proto::pb::common::Consenter {
                id: name,
                endpoint: format!("test:{n}"),
                certificate: identity.cert_bytes().clone(),
                ..Default::default()
            }
        })
        .collect();
    let config = ChannelConfig {
        channel_id: CHANNEL.into(),
        sequence: 0,
        orgs: vec![Organization {
            name: "A".into(),
            root_public_keys: vec![key(1).verifying_key().to_bytes().to_vec().into()],
            ..Default::default()
        }],
        orderer: Some(OrdererConfig {
            consensus_type: "raft".into(),
            batch_size: Some(BatchSize {
                max_message_count: max_count,
                absolute_max_bytes: 4096,
                preferred_max_bytes: 4096,
            }),
            batch_timeout_ms: 50,
            ack_mode: AckMode::Committed as i32,
            consenters,
            ..Default::default()
        }),
        readers: Some(policy::any_member(&[], &[])),
        writers: Some(policy::any_member(&[], &[Role::Client])),
        admins: Some(policy::majority(&[], Role::Admin)),
        block_validation: Some(policy::any_member(&[], &[Role::Orderer])),
        chaincodes: vec![],
    };
    ordo_proto::config::genesis_block(&config, 1).expect("genesis")
}

pub(crate) fn client() -> Identity {
    Identity::enroll(
        &key(1),
        key(2),
        &Enrollment::new("A", Role::Client, "client"),
    )
}

/// An envelope whose tx id the test names by `n`.
pub(crate) fn envelope(n: u64, size: usize) -> (Bytes, String) {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    let (env, tx_id) = ordo_proto::envelope::create_signed_with_nonce(
        &client(),
        CHANNEL,
        HeaderType::Message,
        Bytes::from(vec![b'x'; size]),
        1,
        &nonce,
    );
    (Bytes::from(env.encode_to_vec()), tx_id)
}
