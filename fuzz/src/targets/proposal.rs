//! Proposals (`ordo.gateway.Endorser/ProcessProposal`, and the first step of the
//! Gateway's Endorse and Evaluate) through the in-process peer's real endorser: decoding,
//! header type, channel, freshness, tx id derivation, the Writers policy and signature,
//! the invocation (chaincode, function, arguments, transient data), its simulation by the
//! built-in chaincode against the committed state, and the signed response.
//!
//! Input: a mode byte, then bytes. Top bit set: the bytes are the request envelope as
//! received. Otherwise they are a payload signed by the fixture member bits 3–5 pick,
//! restamped as bits 0–2 say ([`fixture::Restamp`]); the seeds are proposals for the
//! `bank` and `kv` chaincodes, so the fuzzer mutates invocations.
//!
//! Invariants: a refusal is a gRPC status a client can act on (never INTERNAL or
//! UNKNOWN); an endorsement is made by this peer over exactly the response payload it
//! returns.

use bytes::Bytes;

use ordo_sdk::gateway::signed_proposal;
use ordo_sdk::tx::{self, Proposal};

use crate::fixture::{self, members, runtime, CHANNEL, NOW_MS};
use crate::nodes::peer;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((mode, rest)) = fixture::split(data) else {
        return;
    };
    let Some(request) = fixture::request(mode, rest) else {
        return;
    };
    let endorser = &peer().endorser;
    match runtime().block_on(endorser.process(&request)) {
        Ok(response) => {
            if let Some(e) = &response.endorsement {
                assert_eq!(
                    &e.endorser,
                    members().peer.cert_bytes(),
                    "endorsed by another identity"
                );
                let (_, body) = ordo_proto::cert::decode(&e.endorser).expect("our own certificate");
                let key: [u8; 32] = body.public_key.as_ref().try_into().expect("an Ed25519 key");
                let key = ed25519_dalek::VerifyingKey::from_bytes(&key).expect("a valid key");
                ordo_proto::crypto::verify(&key, &response.response_payload, &e.signature)
                    .expect("the endorsement signs the returned payload");
            }
        }
        Err(status) => assert!(
            !matches!(status.code(), tonic::Code::Internal | tonic::Code::Unknown),
            "a proposal answered {status:?}"
        ),
    }
}

/// Proposals by org A's client: bank open, transfer and a missing function; kv put and
/// get; one with transient data.
pub fn seeds() -> Vec<Vec<u8>> {
    let client = &members().client;
    let invocation = |cc: &str, f: &str, args: &[&str]| {
        tx::invocation(
            cc,
            f,
            args.iter()
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect(),
        )
    };
    let mut with_transient = invocation("bank", "open", &["carol", "5"]);
    with_transient
        .transient
        .insert("owner".into(), Bytes::from_static(b"Carol"));
    let invocations = [
        invocation("bank", "open", &["alice", "10"]),
        invocation("bank", "transfer", &["alice", "bob", "3"]),
        invocation("bank", "no-such-function", &[]),
        invocation("kv", "put", &["k", "v"]),
        invocation("kv", "get", &["k"]),
        with_transient,
    ];
    invocations
        .into_iter()
        .enumerate()
        .map(|(i, inv)| {
            let p = Proposal::with_nonce(client.cert_bytes().clone(), CHANNEL, inv, &[i as u8; 24])
                .expect("a nonce");
            let env = signed_proposal(client, &p, NOW_MS);
            // Restamped now (the endorser reads the clock); creator and tx id kept.
            [&[0b001u8][..], &env.payload].concat()
        })
        .collect()
}
