//! A consortium of three orgs (A, B, C) with deterministic CA and member keys, a channel
//! whose chaincode `bank` needs peers of 2 of the 3 orgs and `audit` a peer of C, and a
//! builder of endorser transactions through `ordo_sdk::tx`.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use prost::Message;

use ordo_proto::block;
use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::common::{AckMode, Block, ChaincodeDefinition, ChannelConfig, Role};
use ordo_proto::pb::peer::{ChaincodeEvent, ChaincodeResponse, TxRwSet, Version};
use ordo_proto::policy::build as policy;
use ordo_sdk::tx::{self, Proposal, Simulation};
use ordo_testkit::{ChannelBuilder, TestOrg};

use crate::validator::{validate_block, BlockValidation, ValidationContext};

pub const CHANNEL: &str = "ch1";
/// The time every test validates at.
pub const NOW: u64 = 1_000_000;
pub const ORGS: [&str; 3] = ["A", "B", "C"];

pub struct Org {
    pub ca: SigningKey,
    /// Two peers per org.
    pub peers: [Identity; 2],
    pub client: Identity,
    pub admin: Identity,
    pub orderer: Identity,
}

pub struct Consortium {
    pub orgs: Vec<Org>,
    pub config: ChannelConfig,
}

/// The consortium, built once per test binary (keys are derived from fixed seeds).
pub fn net() -> &'static Consortium {
    static NET: OnceLock<Consortium> = OnceLock::new();
    NET.get_or_init(build)
}

pub fn member(ca: &SigningKey, org: &str, role: Role, seed: u8, not_after: u64) -> Identity {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let name = format!("{}{seed}", role.as_str_name().to_lowercase());
    let enrollment = Enrollment::new(org, role, &name)
        .serial(u64::from(seed))
        .valid(0, not_after);
    Identity::enroll(ca, key, &enrollment)
}

fn build() -> Consortium {
    let far = u64::MAX / 2;
    let orgs: Vec<Org> = ORGS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let base = 10 * (i as u8 + 1);
            let ca = SigningKey::from_bytes(&[base; 32]);
            Org {
                peers: [
                    member(&ca, name, Role::Peer, base + 1, far),
                    member(&ca, name, Role::Peer, base + 2, far),
                ],
                client: member(&ca, name, Role::Client, base + 3, far),
                admin: member(&ca, name, Role::Admin, base + 4, far),
                orderer: member(&ca, name, Role::Orderer, base + 5, far),
                ca,
            }
        })
        .collect();
    let config = ORGS
        .iter()
        .zip(&orgs)
        .fold(ChannelBuilder::new(CHANNEL), |b, (name, o)| {
            b.org(&TestOrg::with_ca(name, o.ca.clone()))
        })
        .max_count(500)
        .timeout_ms(200)
        .ack(AckMode::Enqueued)
        .writers(policy::any_member(&[], &[Role::Client, Role::Admin]))
        .chaincodes(vec![
            ChaincodeDefinition {
                name: "bank".into(),
                version: "1".into(),
                endorsement_policy: Some(policy::n_out_of(
                    2,
                    &[("A", Role::Peer), ("B", Role::Peer), ("C", Role::Peer)],
                )),
                runtime: "builtin:bank".into(),
                sequence: 1,
                retired: false,
            },
            ChaincodeDefinition {
                name: "audit".into(),
                version: "1".into(),
                endorsement_policy: Some(policy::n_out_of(1, &[("C", Role::Peer)])),
                runtime: "builtin:kv".into(),
                sequence: 1,
                retired: false,
            },
        ])
        .build();
    ordo_proto::config::validate(&config).expect("fixture config is valid");
    Consortium { orgs, config }
}

impl Consortium {
    pub fn ctx(&self) -> ValidationContext {
        ValidationContext::new(self.config.clone(), NOW).expect("context")
    }

    /// Peer `n` (0 or 1) of org `org` (0..3).
    pub fn peer(&self, org: usize, n: usize) -> &Identity {
        &self.orgs[org].peers[n]
    }

    pub fn client(&self, org: usize) -> &Identity {
        &self.orgs[org].client
    }

    /// A transaction on `bank` by org A's client, endorsed by the first peers of A and B,
    /// with an empty read/write set and status 200.
    pub fn tx(&self, nonce: u64) -> TxBuilder<'_> {
        TxBuilder {
            creator: self.client(0),
            channel: CHANNEL.into(),
            chaincode: "bank".into(),
            version: "1".into(),
            sequence: 1,
            rwset: TxRwSet::default(),
            status: 200,
            event: None,
            endorsers: vec![self.peer(0, 0), self.peer(1, 0)],
            nonce: nonce.to_be_bytes().to_vec(),
            at_ms: NOW * 1000,
        }
    }
}

pub struct TxBuilder<'a> {
    pub creator: &'a Identity,
    pub channel: String,
    pub chaincode: String,
    pub version: String,
    /// The definition sequence the endorsers claim to have run under.
    pub sequence: u64,
    pub rwset: TxRwSet,
    pub status: i32,
    pub event: Option<ChaincodeEvent>,
    pub endorsers: Vec<&'a Identity>,
    pub nonce: Vec<u8>,
    /// The signed header's timestamp, ms.
    pub at_ms: u64,
}

impl<'a> TxBuilder<'a> {
    pub fn rwset(mut self, rwset: TxRwSet) -> Self {
        self.rwset = rwset;
        self
    }

    pub fn endorsers(mut self, endorsers: Vec<&'a Identity>) -> Self {
        self.endorsers = endorsers;
        self
    }

    /// Signed at `at_ms` instead of `NOW`.
    pub fn at(mut self, at_ms: u64) -> Self {
        self.at_ms = at_ms;
        self
    }

    pub fn creator(mut self, creator: &'a Identity) -> Self {
        self.creator = creator;
        self
    }

    pub fn proposal(&self) -> Proposal {
        Proposal::with_nonce(
            self.creator.cert_bytes().clone(),
            &self.channel,
            tx::invocation(&self.chaincode, "invoke", vec![Bytes::from_static(b"arg")]),
            &self.nonce,
        )
        .expect("nonce")
    }

    pub fn response_payload(&self, proposal: &Proposal) -> Bytes {
        tx::response_payload(
            proposal,
            Simulation {
                chaincode_version: self.version.clone(),
                definition_sequence: self.sequence,
                results: self.rwset.clone(),
                response: ChaincodeResponse {
                    status: self.status,
                    message: String::new(),
                    payload: Bytes::new(),
                },
                event: self.event.clone(),
            },
        )
    }

    /// The encoded envelope.
    pub fn build(&self) -> Bytes {
        let p = self.proposal();
        let payload = self.response_payload(&p);
        let endorsements = self
            .endorsers
            .iter()
            .map(|e| tx::endorse(e, &payload))
            .collect();
        tx::assemble(self.creator, &p, payload, endorsements, self.at_ms)
            .expect("creator")
            .encode_to_vec()
            .into()
    }
}

/// Block `number` holding `envelopes` (the previous hash does not matter here).
pub fn block_of(number: u64, envelopes: Vec<Bytes>) -> Block {
    block::build(number, [7u8; 32], envelopes)
}

pub type State = HashMap<(String, String), Version>;

pub fn v(block: u64, tx: u32) -> Version {
    Version { block, tx }
}

pub fn key(ns: &str, k: &str) -> (String, String) {
    (ns.to_string(), k.to_string())
}

/// Validates with an empty state and tx index.
pub fn validate(block: &Block) -> BlockValidation {
    validate_block(
        block,
        &net().ctx(),
        &State::new(),
        &HashSet::<String>::new(),
    )
}
