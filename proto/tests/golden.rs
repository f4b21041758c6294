//! Golden vectors: every hash and signed encoding two nodes must agree on, computed from
//! fixed inputs and compared with `testdata/golden.txt`. An accidental change to any of
//! them — a field renumbered, a hash input reordered, a domain tag edited — fails here
//! before it can fork a network.
//!
//! To accept an intended change, run with `ORDO_REGENERATE_GOLDEN=1` and commit the
//! new file together with a note on compatibility.

use std::collections::BTreeMap;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use prost::Message;

use ordo_proto::pb::common::{
    AckMode, BatchSize, BlockHeader, CertificateBody, ChannelConfig, HeaderType, OrdererConfig,
    Organization, Role,
};
use ordo_proto::pb::discovery::PeerInfo;
use ordo_proto::policy::build as policy;
use ordo_proto::{block, cert, config, discovery, envelope, hash, identity::Identity, merkle};

fn vectors() -> BTreeMap<&'static str, String> {
    let mut v = BTreeMap::new();
    let ca = SigningKey::from_bytes(&[0x11; 32]);
    let member_key = SigningKey::from_bytes(&[0x22; 32]);
    let body = CertificateBody {
        org: "BankA".into(),
        role: Role::Client as i32,
        subject: "client@BankA".into(),
        public_key: member_key.verifying_key().to_bytes().to_vec().into(),
        not_before: 1_700_000_000,
        not_after: 1_900_000_000,
        issuer_public_key: Default::default(),
        serial: 7,
    };
    let cert_bytes = cert::issue(&ca, body).encode_to_vec();
    v.insert("certificate", hex::encode(&cert_bytes));
    let id = Identity::new(member_key, cert_bytes.clone().into()).expect("identity");

    v.insert("tx_id", hash::tx_id(b"nonce-0123456789", &cert_bytes));

    // A peer's signed announcement (ordo.discovery).
    let peer_key = SigningKey::from_bytes(&[0x33; 32]);
    let peer_body = CertificateBody {
        org: "BankA".into(),
        role: Role::Peer as i32,
        subject: "peer0@BankA".into(),
        public_key: peer_key.verifying_key().to_bytes().to_vec().into(),
        not_before: 1_700_000_000,
        not_after: 1_900_000_000,
        issuer_public_key: Default::default(),
        serial: 8,
    };
    let peer_cert = cert::issue(&ca, peer_body).encode_to_vec();
    let peer = Identity::new(peer_key, peer_cert.clone().into()).expect("peer identity");
    let announcement = discovery::sign(
        &peer,
        &PeerInfo {
            channel_id: "golden".into(),
            endpoint: "peer0.banka.example:7051".into(),
            certificate: peer_cert.into(),
            chaincodes: vec!["bank".into()],
            height: 42,
            issued_ms: 1_750_000_000_000,
        },
    );
    let msp =
        cert::Msp::new([("BankA".to_string(), vec![ca.verifying_key().to_bytes()])]).expect("msp");
    discovery::verify(&announcement, "golden", &msp, 1_750_000_000_000, 20_000)
        .expect("the vector is an announcement every peer accepts");
    v.insert("peer_info", hex::encode(&announcement.info));
    v.insert("peer_info_signature", hex::encode(&announcement.signature));
    let header = BlockHeader {
        number: 42,
        previous_hash: Bytes::from(vec![0xab; 32]),
        data_hash: Bytes::from(vec![0xcd; 32]),
    };
    v.insert(
        "block_header_hash",
        hex::encode(hash::block_header_hash(&header)),
    );

    let leaves: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3]).collect();
    v.insert("merkle_root_5", hex::encode(merkle::root(&leaves)));
    let proof = merkle::inclusion_proof(&leaves, 3).expect("in range");
    v.insert(
        "merkle_proof_5_3",
        proof.iter().map(hex::encode).collect::<Vec<_>>().join(":"),
    );
    v.insert(
        "merkle_root_empty",
        hex::encode(merkle::root::<Vec<u8>>(&[])),
    );

    let (env, tx_id) = envelope::create_signed_with_nonce(
        &id,
        "golden",
        HeaderType::Message,
        Bytes::from_static(b"payload"),
        1_750_000_000_000,
        b"fixed-nonce",
    );
    v.insert("envelope", hex::encode(env.encode_to_vec()));
    v.insert("envelope_tx_id", tx_id);

    v.insert(
        "block_signing_bytes",
        hex::encode(block::signing_bytes(
            &[0x5a; 32],
            3,
            b"consenter",
            1_750_000_000_000,
        )),
    );
    let mut b = block::build(1, [0x77; 32], vec![env.encode_to_vec().into()]);
    block::sign_at(&mut b, &id, 0, Bytes::new(), 1_750_000_000_000);
    v.insert("signed_block", hex::encode(b.encode_to_vec()));

    let cfg = ChannelConfig {
        channel_id: "golden".into(),
        sequence: 0,
        orgs: vec![Organization {
            name: "BankA".into(),
            root_public_keys: vec![ca.verifying_key().to_bytes().to_vec().into()],
            ..Default::default()
        }],
        orderer: Some(OrdererConfig {
            consensus_type: "solo".into(),
            batch_size: Some(BatchSize {
                max_message_count: 10,
                absolute_max_bytes: 1 << 20,
                preferred_max_bytes: 1 << 19,
            }),
            batch_timeout_ms: 100,
            ack_mode: AckMode::Committed as i32,
            ..Default::default()
        }),
        readers: Some(policy::any_member(&[], &[])),
        writers: Some(policy::any_member(&[], &[Role::Client])),
        admins: Some(policy::majority(&[], Role::Admin)),
        block_validation: Some(policy::n_out_of(1, &[("BankA", Role::Orderer)])),
        chaincodes: vec![],
        lifecycle: None,
    };
    let genesis = config::genesis_block(&cfg, 1_750_000_000_000).expect("valid config");
    v.insert("genesis_block", hex::encode(genesis.encode_to_vec()));
    v.insert("genesis_block_hash", hex::encode(block::hash(&genesis)));
    v
}

#[test]
fn golden_vectors_are_unchanged() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/golden.txt");
    let computed = vectors();
    let text: String = computed
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    if std::env::var_os("ORDO_REGENERATE_GOLDEN").is_some() {
        std::fs::write(path, &text).expect("write golden file");
        return;
    }
    let stored = std::fs::read_to_string(path).expect("testdata/golden.txt exists");
    let stored: BTreeMap<&str, &str> = stored
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .collect();
    for (k, v) in &computed {
        assert_eq!(
            stored.get(k).copied(),
            Some(v.as_str()),
            "golden vector {k} changed"
        );
    }
    assert_eq!(
        stored.len(),
        computed.len(),
        "golden file has vectors this test no longer computes"
    );
}
