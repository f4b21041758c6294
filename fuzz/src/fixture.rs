//! What every target runs against: one channel of two orgs whose keys come from fixed
//! seeds (so committed corpus files stay valid), and — for the targets that go through a
//! real node's handlers — an orderer and a peer built in-process on temporary directories,
//! once per fuzzing process.
//!
//! Inputs that must carry a valid signature to get past the first check are made with
//! [`sign_payload`]: the fuzzer owns the payload's bytes, the harness signs them (and can
//! restamp the header with the current time and the signer's certificate), so the deep
//! checks behind the signature are reached, not only the signature check.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use prost::Message;

use ordo_consensus::solo::SoloConsenter;
use ordo_consensus::{ConfigState, Consenters};
use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::common::{
    Block, ChaincodeDefinition, ChannelConfig, ConfigUpdate, Envelope, Payload, Role,
};
use ordo_proto::policy::build as policy;
use ordo_testkit::{ChannelBuilder, TestOrg};

/// The channel every target uses.
pub const CHANNEL: &str = "fuzz";

/// The time (Unix seconds) of the targets whose checks take the time as an input; every
/// fixture certificate is valid then.
pub const NOW_SECS: u64 = 1_800_000_000;

/// [`NOW_SECS`] in milliseconds.
pub const NOW_MS: u64 = NOW_SECS * 1000;

/// The genesis block's timestamp (ms).
const GENESIS_MS: u64 = NOW_MS - 60_000;

/// The members of the fixture channel, each with a key from a fixed seed.
pub struct Members {
    /// Org A's CA key.
    pub ca_a: SigningKey,
    /// Org B's CA key.
    pub ca_b: SigningKey,
    /// A client of org A: a writer and reader of the channel.
    pub client: Identity,
    /// An admin of org A.
    pub admin_a: Identity,
    /// An admin of org B (config updates need a majority of admins).
    pub admin_b: Identity,
    /// A peer of org A: the in-process peer, and an endorser.
    pub peer: Identity,
    /// Org A's orderer: the in-process orderer, the solo channel's block signer.
    pub orderer: Identity,
    /// A client of a third org the channel does not know.
    pub stranger: Identity,
}

fn member(ca: &SigningKey, org: &str, role: Role, seed: u8) -> Identity {
    let name = format!("{}{seed}@{org}", role.as_str_name().to_lowercase());
    let enrollment = Enrollment::new(org, role, &name)
        .serial(u64::from(seed))
        .valid(0, u64::MAX / 2);
    Identity::enroll(ca, SigningKey::from_bytes(&[seed; 32]), &enrollment)
}

/// The channel's members (built once).
pub fn members() -> &'static Members {
    static MEMBERS: OnceLock<Members> = OnceLock::new();
    MEMBERS.get_or_init(|| {
        let ca_a = SigningKey::from_bytes(&[0xa0; 32]);
        let ca_b = SigningKey::from_bytes(&[0xb0; 32]);
        let ca_x = SigningKey::from_bytes(&[0xc0; 32]);
        Members {
            client: member(&ca_a, "A", Role::Client, 0xa1),
            admin_a: member(&ca_a, "A", Role::Admin, 0xa2),
            peer: member(&ca_a, "A", Role::Peer, 0xa3),
            orderer: member(&ca_a, "A", Role::Orderer, 0xa4),
            admin_b: member(&ca_b, "B", Role::Admin, 0xb2),
            stranger: member(&ca_x, "X", Role::Client, 0xc1),
            ca_a,
            ca_b,
        }
    })
}

/// The channel's configuration: orgs A and B, solo ordering by A's orderer, chaincodes
/// `bank` (a peer of A endorses) and `kv` (a peer of A or B).
pub fn config() -> &'static ChannelConfig {
    static CONFIG: OnceLock<ChannelConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let m = members();
        ChannelBuilder::new(CHANNEL)
            .org(&TestOrg::with_ca("A", m.ca_a.clone()))
            .org(&TestOrg::with_ca("B", m.ca_b.clone()))
            .max_count(16)
            .timeout_ms(20)
            .writers(policy::any_member(&[], &[Role::Client, Role::Admin]))
            .chaincodes(vec![
                ChaincodeDefinition {
                    name: "bank".into(),
                    version: "1".into(),
                    endorsement_policy: Some(policy::n_out_of(1, &[("A", Role::Peer)])),
                    runtime: "builtin:bank".into(),
                    sequence: 1,
                    retired: false,
                },
                ChaincodeDefinition {
                    name: "kv".into(),
                    version: "1".into(),
                    endorsement_policy: Some(policy::any_member(&[], &[Role::Peer])),
                    runtime: "builtin:kv".into(),
                    sequence: 1,
                    retired: false,
                },
            ])
            .build()
    })
}

/// The channel's genesis block.
pub fn genesis() -> &'static Block {
    static GENESIS: OnceLock<Block> = OnceLock::new();
    GENESIS.get_or_init(|| {
        ordo_proto::config::genesis_block(config(), GENESIS_MS)
            .expect("the fixture config is valid")
    })
}

/// The orderer's view of the channel's configuration.
pub fn config_state() -> &'static ConfigState {
    static STATE: OnceLock<ConfigState> = OnceLock::new();
    STATE.get_or_init(|| ConfigState::new(config().clone(), 0).expect("fixture config state"))
}

/// The process's Tokio runtime, for the targets that drive real handlers.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a Tokio runtime")
    })
}

/// A scratch directory kept for the life of the process (node data lives there).
pub fn scratch(name: &str) -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let root = DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("ordo-fuzz-")
            .tempdir()
            .expect("a temporary directory")
    });
    let dir = root.path().join(name);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    Box::leak(dir.into_boxed_path())
}

/// Consenters the in-process orderer offers: solo only (a raft or kafka channel needs
/// other nodes or brokers; joining one is refused here with the status a node without
/// that backend answers).
pub fn consenters() -> Consenters {
    let mut c = Consenters::new();
    c.register(Arc::new(SoloConsenter::default()));
    c
}

/// How [`sign_payload`] treats the payload's header before signing.
#[derive(Debug, Clone, Copy)]
pub struct Restamp {
    /// Set the timestamp to the real clock (for handlers that read it).
    pub now: bool,
    /// Set the creator to the signer's certificate.
    pub creator: bool,
    /// Derive the tx id from the nonce and creator, as a client must.
    pub tx_id: bool,
}

impl Restamp {
    /// From the low three bits of a fuzz input byte.
    pub fn from_bits(bits: u8) -> Self {
        Self {
            now: bits & 1 != 0,
            creator: bits & 2 != 0,
            tx_id: bits & 4 != 0,
        }
    }
}

/// An envelope over payload bytes `payload` signed by `signer`: when they decode as a
/// `Payload`, its header is first changed as `restamp` says; otherwise the bytes are
/// signed as they are.
pub fn sign_payload(payload: &[u8], signer: &Identity, restamp: Restamp) -> Envelope {
    let bytes = match Payload::decode(payload) {
        Ok(mut p) => {
            let header = p.header.get_or_insert_with(Default::default);
            if restamp.now {
                header.timestamp_ms = ordo_proto::now_ms();
            }
            if restamp.creator {
                header.creator = signer.cert_bytes().clone();
            }
            if restamp.tx_id {
                header.tx_id = ordo_proto::hash::tx_id(&header.nonce, &header.creator);
            }
            Bytes::from(p.encode_to_vec())
        }
        Err(_) => Bytes::copy_from_slice(payload),
    };
    let signature = signer.sign(&bytes);
    ordo_sdk::tx::attach_signature(bytes, &signature)
}

/// The member a fuzz input byte picks to sign with.
pub fn signer(choice: u8) -> &'static Identity {
    let m = members();
    match choice % 5 {
        0 => &m.client,
        1 => &m.admin_a,
        2 => &m.peer,
        3 => &m.admin_b,
        _ => &m.stranger,
    }
}

/// An input split into a selector byte and the rest.
pub fn split(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(first, rest)| (*first, rest))
}

/// Splits `data` into length-prefixed pieces (a big-endian u16 length, then that many
/// bytes); a short last piece takes what is left. At most `max` pieces.
pub fn pieces(mut data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < max {
        if data.len() < 2 {
            out.push(data);
            break;
        }
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}

/// The inverse of [`pieces`], for building seeds.
pub fn join_pieces<I, P>(pieces: I) -> Vec<u8>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    let mut out = Vec::new();
    for p in pieces {
        let p = p.as_ref();
        let len = u16::try_from(p.len()).expect("a seed piece under 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// A CONFIG_UPDATE's data proposing `proposed`, approved by both orgs' admins (the
/// fixture's Admins and Lifecycle policies are a majority of the two).
pub fn config_update(proposed: &ChannelConfig) -> ConfigUpdate {
    let bytes = proposed.encode_to_vec();
    let m = members();
    let signatures = [&m.admin_a, &m.admin_b]
        .into_iter()
        .map(|admin| ordo_sdk::lifecycle::approve(admin, &bytes).expect("an admin approves"))
        .collect();
    ConfigUpdate {
        config: bytes.into(),
        signatures,
    }
}

/// The fixture's configuration with the next sequence and `change` applied.
pub fn next_config(change: impl FnOnce(&mut ChannelConfig)) -> ChannelConfig {
    let mut proposed = config().clone();
    proposed.sequence += 1;
    change(&mut proposed);
    proposed
}

/// The request envelope an input of the request targets describes: a mode byte, then
/// bytes. With the mode's top bit set, the bytes are the envelope as received (`None`
/// when they do not decode: the service answers that before any handler runs).
/// Otherwise they are a payload signed by the member bits 3–5 pick ([`signer`]), its
/// header restamped as bits 0–2 say ([`Restamp`]).
pub fn request(mode: u8, rest: &[u8]) -> Option<Envelope> {
    if mode & 0x80 != 0 {
        Envelope::decode(rest).ok()
    } else {
        Some(sign_payload(
            rest,
            signer((mode >> 3) & 0b111),
            Restamp::from_bits(mode),
        ))
    }
}

/// Checks a node's refusal against the one status model (PROTOCOL.md, "Statuses"): its
/// code is one that [`ordo_proto::status::grpc_code`] gives a refusal (never OK, never a
/// code outside the table), and it says why.
pub fn assert_documented_refusal(refusal: &tonic::Status) {
    let documented = ordo_proto::status::REFUSALS.map(ordo_proto::status::grpc_code);
    assert!(
        documented.contains(&refusal.code()),
        "a refusal with an undocumented code: {refusal:?}"
    );
    assert!(
        !refusal.message().is_empty(),
        "a refusal without a reason: {refusal:?}"
    );
}
