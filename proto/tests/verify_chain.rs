//! The chain verifier over a real signed chain: a config block switches the block
//! validation policy from the next block on, the sequence must advance by one, signatures
//! are checked against the signer's certificate window, and a resumed verifier continues
//! where a node stopped.

use bytes::Bytes;
use prost::Message;

use ordo_proto::block::{self, BlockError};
use ordo_proto::config;
use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::common::{AckMode, Block, ChannelConfig, Role};
use ordo_proto::policy::build as policy;
use ordo_proto::verify::{ChainVerifier, VerifyError};
use ordo_testkit::{keys, ChannelBuilder, TestOrg};

/// Org "A" under the fixed CA key 1.
fn org() -> TestOrg {
    TestOrg::with_ca("A", keys::fixed(1))
}

/// A member whose key, name and serial number are `seed`, valid from 0 to 10,000 s.
fn member(role: Role, seed: u8) -> Identity {
    let enrollment = Enrollment::new("A", role, &seed.to_string())
        .serial(u64::from(seed))
        .valid(0, 10_000);
    org().enroll(keys::fixed(seed), &enrollment)
}

/// Channel "v" at `sequence` whose blocks `validators` sign.
fn config(sequence: u64, validators: Role) -> ChannelConfig {
    ChannelBuilder::new("v")
        .org(&org())
        .sequence(sequence)
        .timeout_ms(100)
        .ack(AckMode::Enqueued)
        .writers(policy::any_member(&[], &[]))
        .admins(policy::any_member(&[], &[Role::Admin]))
        .block_validation(policy::any_member(&[], &[validators]))
        .build()
}

/// A chain: genesis (orderers validate), 2 blocks, a config block switching
/// BlockValidation to peers, then a block signed by a peer.
fn chain() -> (Vec<Block>, ChannelConfig) {
    let orderer = member(Role::Orderer, 2);
    let peer = member(Role::Peer, 3);
    let genesis = config::genesis_block(&config(0, Role::Orderer), 0).expect("genesis");
    let mut blocks = vec![genesis];
    for i in 1..3u64 {
        let mut b = block::build(
            i,
            block::hash(&blocks[i as usize - 1]),
            vec![Bytes::from(vec![i as u8; 10])],
        );
        block::sign_at(&mut b, &orderer, 0, Bytes::new(), 100_000);
        blocks.push(b);
    }
    let next = config(1, Role::Peer);
    let env_bytes = config_envelope(&next);
    let mut b3 = block::build(3, block::hash(&blocks[2]), vec![env_bytes]);
    block::sign_at(&mut b3, &orderer, 3, Bytes::new(), 100_000);
    blocks.push(b3);
    let mut b4 = block::build(
        4,
        block::hash(&blocks[3]),
        vec![Bytes::from_static(b"after")],
    );
    block::sign_at(&mut b4, &peer, 3, Bytes::new(), 100_000);
    blocks.push(b4);
    (blocks, next)
}

fn config_envelope(cfg: &ChannelConfig) -> Bytes {
    use ordo_proto::pb::common::{ConfigEnvelope, Envelope, Header, HeaderType, Payload};
    let data = ConfigEnvelope {
        config: cfg.encode_to_vec().into(),
        last_update: Bytes::new(),
    };
    let header = Header {
        channel_id: cfg.channel_id.clone(),
        r#type: HeaderType::Config as i32,
        ..Default::default()
    };
    let payload = Payload {
        header: Some(header),
        data: data.encode_to_vec().into(),
    };
    Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    }
    .encode_to_vec()
    .into()
}

#[test]
fn a_config_block_must_advance_the_sequence_by_one() {
    let (blocks, next) = chain();
    let mut v = ChainVerifier::new();
    for b in &blocks[..3] {
        v.check(b, 100).expect("verifies");
    }
    let mut b3 = block::build(
        3,
        block::hash(&blocks[2]),
        vec![config_envelope(&ChannelConfig {
            sequence: 5,
            ..next
        })],
    );
    block::sign_at(&mut b3, &member(Role::Orderer, 2), 3, Bytes::new(), 100_000);
    assert!(matches!(
        v.check(&b3, 100),
        Err(VerifyError::Config { number: 3, .. })
    ));
}

#[test]
fn a_chain_verifies_and_config_blocks_switch_the_policy() {
    let (blocks, _) = chain();
    let mut v = ChainVerifier::new();
    for b in &blocks {
        v.check(b, 100).expect("verifies");
    }
    assert_eq!(v.next_number(), 5);
    // Block 4 signed by the orderer would now fail: peers validate after block 3.
    let mut v = ChainVerifier::new();
    for b in &blocks[..4] {
        v.check(b, 100).expect("verifies");
    }
    let mut forged = blocks[4].clone();
    if let Some(md) = forged.metadata.as_mut() {
        md.signatures.clear();
    }
    block::sign_at(
        &mut forged,
        &member(Role::Orderer, 2),
        3,
        Bytes::new(),
        100_000,
    );
    assert!(matches!(
        v.check(&forged, 100),
        Err(VerifyError::Block(BlockError::Signatures { number: 4, .. }))
    ));
    assert_eq!(v.next_number(), 4, "a refused block changes nothing");
}

#[test]
fn wrong_last_config_and_expired_signers_are_refused() {
    let (blocks, _) = chain();
    let mut v = ChainVerifier::new();
    v.check(&blocks[0], 100).expect("genesis");
    let mut b = blocks[1].clone();
    if let Some(md) = b.metadata.as_mut() {
        md.signatures.clear();
    }
    block::sign_at(&mut b, &member(Role::Orderer, 2), 7, Bytes::new(), 100_000);
    assert_eq!(
        v.check(&b, 100),
        Err(VerifyError::LastConfig {
            number: 1,
            found: 7,
            expected: 0
        })
    );
    // Signed after the orderer's certificate expired (not_after 10,000 s): refused.
    let mut late = blocks[1].clone();
    if let Some(md) = late.metadata.as_mut() {
        md.signatures.clear();
    }
    block::sign_at(
        &mut late,
        &member(Role::Orderer, 2),
        0,
        Bytes::new(),
        20_000_000,
    );
    assert!(matches!(
        v.check(&late, 20_000),
        Err(VerifyError::Block(BlockError::Signatures { .. }))
    ));
    // Stamped far in the verifier's future: refused.
    let mut future = blocks[1].clone();
    if let Some(md) = future.metadata.as_mut() {
        md.signatures.clear();
    }
    block::sign_at(
        &mut future,
        &member(Role::Orderer, 2),
        0,
        Bytes::new(),
        5_000_000,
    );
    assert!(matches!(
        v.check(&future, 100),
        Err(VerifyError::Block(BlockError::Signatures { .. }))
    ));
    // Signed while the certificate was valid: still verifies long after it expired.
    v.check(&blocks[1], 1_000_000)
        .expect("verifiable after expiry");
}

#[test]
fn resume_continues_where_a_node_stopped() {
    let (blocks, next) = chain();
    let mut v = ChainVerifier::resume(4, block::hash(&blocks[3]), next, 3).expect("resume");
    v.check(&blocks[4], 100).expect("block 4 after resuming");
    let mut v = ChainVerifier::resume(4, [9; 32], config(1, Role::Peer), 3).expect("resume");
    assert!(matches!(
        v.check(&blocks[4], 100),
        Err(VerifyError::Block(BlockError::BrokenChain { .. }))
    ));
}
