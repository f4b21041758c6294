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

use ordo_proto::authz::NodeAdmins;
use ordo_proto::cluster_auth::{self, Purpose};
use ordo_proto::config_change::{self, CurrentConfig};
use ordo_proto::pb::admin::{admin_command, AdminCommand, RemoveChannel};
use ordo_proto::pb::common::{
    AckMode, BatchSize, BlockHeader, CertificateBody, ChaincodeDefinition, ChannelConfig,
    ConfigEnvelope, ConfigSignature, ConfigUpdate, Consenter, HeaderType, OrdererConfig,
    Organization, RaftConfig, Role,
};
use ordo_proto::pb::discovery::PeerInfo;
use ordo_proto::policy::build as policy;
use ordo_proto::{
    block, cert, config, crypto, discovery, envelope, hash, identity::Identity, merkle,
};

/// The time every new vector is made and checked at: 1,750,000,000,000 ms.
const T_MS: u64 = 1_750_000_000_000;

/// A member of BankA certified by `ca`: key seed `seed` repeated, valid from
/// 1,700,000,000 to 1,900,000,000 s.
fn member(ca: &SigningKey, seed: u8, role: Role, subject: &str, serial: u64) -> Identity {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let body = CertificateBody {
        org: "BankA".into(),
        role: role as i32,
        subject: subject.into(),
        public_key: key.verifying_key().to_bytes().to_vec().into(),
        not_before: 1_700_000_000,
        not_after: 1_900_000_000,
        issuer_public_key: Default::default(),
        serial,
    };
    let cert = cert::issue(ca, body).encode_to_vec();
    Identity::new(key, cert.into()).expect("identity")
}

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
        tx_validity_window_s: 0,
    };
    let genesis = config::genesis_block(&cfg, 1_750_000_000_000).expect("valid config");
    v.insert("genesis_block", hex::encode(genesis.encode_to_vec()));
    v.insert("genesis_block_hash", hex::encode(block::hash(&genesis)));
    v.insert("channel_config", hex::encode(cfg.encode_to_vec()));

    let admin = member(&ca, 0x44, Role::Admin, "admin@BankA", 9);
    let orderer = member(&ca, 0x55, Role::Orderer, "orderer0@BankA", 10);
    channel_config_vectors(&mut v, &ca, &orderer);
    config_update_vectors(&mut v, &cfg, &admin, &orderer);
    admin_vectors(&mut v, &admin, &peer);
    cluster_auth_vectors(&mut v, &ca, &orderer, &env.encode_to_vec());
    v
}

/// A configuration with every field set (two orgs, raft, a chaincode, a lifecycle
/// policy). Its TLS entries are placeholder bytes, not certificates: the configuration
/// rules do not parse them.
fn channel_config_vectors(
    v: &mut BTreeMap<&'static str, String>,
    ca: &SigningKey,
    orderer: &Identity,
) {
    let bank_b_ca = SigningKey::from_bytes(&[0x12; 32]);
    let full = ChannelConfig {
        channel_id: "golden".into(),
        sequence: 3,
        orgs: vec![
            Organization {
                name: "BankA".into(),
                root_public_keys: vec![ca.verifying_key().to_bytes().to_vec().into()],
                tls_root_certs: vec![Bytes::from_static(b"tls-root-der")],
                tls_revoked_cert_hashes: vec![hash::sha256(b"revoked-tls-der").to_vec().into()],
                anchor_peers: vec!["peer0.banka.example:7051".into()],
            },
            Organization {
                name: "BankB".into(),
                root_public_keys: vec![bank_b_ca.verifying_key().to_bytes().to_vec().into()],
                ..Default::default()
            },
        ],
        orderer: Some(OrdererConfig {
            consensus_type: "raft".into(),
            batch_size: Some(BatchSize {
                max_message_count: 500,
                absolute_max_bytes: 10 << 20,
                preferred_max_bytes: 2 << 20,
            }),
            batch_timeout_ms: 2_000,
            consenters: vec![Consenter {
                id: "orderer0".into(),
                endpoint: "orderer0.banka.example:7050".into(),
                certificate: orderer.cert_bytes().clone(),
                tls_cert: Bytes::from_static(b"orderer0-tls-der"),
            }],
            kafka: None,
            raft: Some(RaftConfig {
                tick_interval_ms: 100,
                election_tick: 10,
                heartbeat_tick: 1,
                max_inflight_blocks: 5,
                snapshot_interval_bytes: 64 << 20,
            }),
            ack_mode: AckMode::Committed as i32,
        }),
        readers: Some(policy::any_member(&[], &[])),
        writers: Some(policy::any_member(&["BankA", "BankB"], &[Role::Client])),
        admins: Some(policy::majority(&[], Role::Admin)),
        block_validation: Some(policy::n_out_of(1, &[("BankA", Role::Orderer)])),
        chaincodes: vec![ChaincodeDefinition {
            name: "bank".into(),
            version: "1.0".into(),
            endorsement_policy: Some(policy::majority(&[], Role::Peer)),
            runtime: "builtin:bank".into(),
            sequence: 1,
            retired: false,
        }],
        lifecycle: Some(policy::n_out_of(
            2,
            &[("BankA", Role::Admin), ("BankB", Role::Admin)],
        )),
        tx_validity_window_s: 1800,
    };
    config::validate(&full).expect("the full configuration is valid");
    v.insert("channel_config_full", hex::encode(full.encode_to_vec()));
}

/// A config update of the minimal configuration (sequence 1, batch timeout 200 ms)
/// signed by BankA's admin, and the CONFIG envelope an orderer makes of it; checked with
/// the peers' own rule.
fn config_update_vectors(
    v: &mut BTreeMap<&'static str, String>,
    current: &ChannelConfig,
    admin: &Identity,
    orderer: &Identity,
) {
    let mut proposed = current.clone();
    proposed.sequence = 1;
    if let Some(o) = proposed.orderer.as_mut() {
        o.batch_timeout_ms = 200;
    }
    let config_bytes = Bytes::from(proposed.encode_to_vec());
    let update = ConfigUpdate {
        config: config_bytes.clone(),
        signatures: vec![ConfigSignature {
            signer: admin.cert_bytes().clone(),
            signature: admin.sign(&config_bytes).to_vec().into(),
        }],
    };
    let (update_env, _) = envelope::create_signed_with_nonce(
        admin,
        "golden",
        HeaderType::ConfigUpdate,
        update.encode_to_vec().into(),
        T_MS,
        b"config-update-nonce",
    );
    let update_bytes = update_env.encode_to_vec();
    let (config_env, _) = envelope::create_signed_with_nonce(
        orderer,
        "golden",
        HeaderType::Config,
        ConfigEnvelope {
            config: config_bytes,
            last_update: update_bytes.clone().into(),
        }
        .encode_to_vec()
        .into(),
        T_MS + 1_000,
        b"config-nonce",
    );
    let config_env = config_env.encode_to_vec();
    let msp = cert::Msp::from_config(current).expect("msp");
    let org_names = vec!["BankA".to_string()];
    let current_config = CurrentConfig {
        config: current,
        msp: &msp,
        org_names: &org_names,
    };
    let (accepted, _) = config_change::check(&current_config, &config_env)
        .expect("every peer accepts the config envelope");
    assert_eq!(accepted, proposed);
    v.insert("config_update_envelope", hex::encode(&update_bytes));
    v.insert("config_envelope", hex::encode(&config_env));
}

/// An Admin request (RemoveChannel "golden") by BankA's admin: the exact bytes signed
/// (the envelope's payload), the signature, and the envelope; the peer of seed 0x33, a
/// node of BankA, authorizes it.
fn admin_vectors(v: &mut BTreeMap<&'static str, String>, admin: &Identity, node: &Identity) {
    let command = AdminCommand {
        command: Some(admin_command::Command::Remove(RemoveChannel {
            channel_id: "golden".into(),
        })),
    };
    let (request, tx_id) = envelope::create_signed_with_nonce(
        admin,
        "-",
        HeaderType::AdminCommand,
        command.encode_to_vec().into(),
        T_MS,
        b"admin-nonce",
    );
    let unpacked = envelope::unpack(&request).expect("a well-formed request");
    NodeAdmins::for_identity(node)
        .expect("node admins")
        .authorize(&request, &unpacked.header.creator, T_MS / 1000)
        .expect("the node's org admin may remove a channel");
    v.insert("admin_command", hex::encode(command.encode_to_vec()));
    v.insert("admin_request_payload", hex::encode(&request.payload));
    v.insert("admin_request_signature", hex::encode(&request.signature));
    v.insert("admin_request", hex::encode(request.encode_to_vec()));
    v.insert("admin_request_tx_id", tx_id);
}

/// ClusterAuth proofs by the consenter of seed 0x55 on channel "golden": a Step stream's
/// (empty context) and a forwarded Submit's (context: SHA-256 of the envelope bytes). The
/// signed bytes are built here by hand from the documented layout, and the code's
/// signature must verify over them.
fn cluster_auth_vectors(
    v: &mut BTreeMap<&'static str, String>,
    ca: &SigningKey,
    orderer: &Identity,
    envelope_bytes: &[u8],
) {
    let consenters = vec![Consenter {
        id: "orderer0".into(),
        endpoint: "orderer0.banka.example:7050".into(),
        certificate: orderer.cert_bytes().clone(),
        ..Default::default()
    }];
    let msp =
        cert::Msp::new([("BankA".to_string(), vec![ca.verifying_key().to_bytes()])]).expect("msp");
    let digest = hash::sha256(envelope_bytes);
    let key =
        crypto::parse_public_key(orderer.signing_key().verifying_key().as_bytes()).expect("key");
    for (name, purpose, tag, context) in [
        ("cluster_auth_step", Purpose::Step, &b"step"[..], &b""[..]),
        (
            "cluster_auth_submit",
            Purpose::Submit,
            &b"submit"[..],
            &digest[..],
        ),
    ] {
        let mut signed = b"ordo-cluster".to_vec();
        signed.extend_from_slice(tag);
        signed.push(0);
        signed.extend_from_slice(b"golden");
        signed.push(0);
        signed.extend_from_slice(&T_MS.to_be_bytes());
        signed.extend_from_slice(context);
        let auth = cluster_auth::sign(orderer, purpose, "golden", context, T_MS);
        crypto::verify(&key, &signed, &auth.signature)
            .expect("the proof signs the documented bytes");
        let sender = cluster_auth::verify(
            Some(&auth),
            &consenters,
            &msp,
            purpose,
            "golden",
            context,
            T_MS,
        )
        .expect("a consenter accepts the proof");
        assert_eq!(sender.id, "orderer0");
        let bytes_name = match purpose {
            Purpose::Step => "cluster_auth_step_signed_bytes",
            Purpose::Submit => "cluster_auth_submit_signed_bytes",
        };
        v.insert(bytes_name, hex::encode(&signed));
        v.insert(name, hex::encode(auth.encode_to_vec()));
    }
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
