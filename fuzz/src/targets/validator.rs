//! The peer's validator on arbitrary blocks ([`validate_block`]): every transaction of a
//! block through every check of `ordo_peer::validator` (envelope and payload decoding,
//! header, creator, signature, tx id, the Writers policy, the endorser transaction and its
//! proposal, the chaincode definition and its sequence, endorsement signatures and policy,
//! the read/write set, duplicates, MVCC and ranges), and config blocks through the
//! config checks — against an in-memory state.
//!
//! Input: a mode byte, then up to 32 length-prefixed envelopes, made into block 1. With
//! mode bit 0 set, each piece that decodes as a `Payload` is treated as a transaction the
//! harness completes: the endorsements of an endorser transaction are replaced by the
//! fixture peer's endorsement of its response payload, and the payload is signed by the
//! client with its certificate and tx id set (so fuzzed read/write sets, responses and
//! proposals reach the checks behind the signatures). Otherwise the pieces are taken as
//! the envelopes' bytes. With mode bit 1 set, the channel has a tx validity window and
//! the ledger an expiry floor at the fixture's time (so fuzzed timestamps meet expiry).
//!
//! Invariants: one code per envelope; validation is a function of its inputs — the same
//! block gives the same codes, updates and tx ids on one thread and on several.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;

use bytes::Bytes;
use prost::Message;

use ordo_peer::validator::{
    validate_block, ExpiringTxIds, TxIndex, ValidationContext, ValidatorOptions,
};
use ordo_proto::block;
use ordo_proto::pb::common::Payload;
use ordo_proto::pb::peer::{EndorserTransaction, TxRwSet, Version};
use ordo_sdk::tx::{self, Proposal, RwSetBuilder, Simulation};

use crate::fixture::{self, members, Restamp, CHANNEL, NOW_SECS};

/// Envelopes per block at most.
const MAX_TXS: usize = 32;

type State = HashMap<(String, String), Version>;

fn state() -> State {
    let mut s = State::new();
    s.insert(("bank".into(), "alice".into()), Version { block: 0, tx: 0 });
    s.insert(("kv".into(), "k".into()), Version { block: 0, tx: 1 });
    s
}

fn context(threads: usize, window_s: u64) -> ValidationContext {
    let options = ValidatorOptions {
        chunk_size: NonZeroUsize::new(4).expect("non-zero"),
        max_threads: NonZeroUsize::new(threads).expect("non-zero"),
    };
    let mut config = fixture::config().clone();
    config.tx_validity_window_s = window_s;
    ValidationContext::new(config, NOW_SECS)
        .expect("the fixture context")
        .with_options(options)
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((mode, rest)) = fixture::split(data) else {
        return;
    };
    let envelopes: Vec<Bytes> = fixture::pieces(rest, MAX_TXS)
        .into_iter()
        .map(|piece| {
            if mode & 1 != 0 && Payload::decode(piece).is_ok() {
                completed(piece)
            } else {
                Bytes::copy_from_slice(piece)
            }
        })
        .collect();
    let count = envelopes.len();
    let b = block::build(1, [7; 32], envelopes);
    let (known, window_s): (Box<dyn TxIndex>, u64) = if mode & 2 != 0 {
        let index = ExpiringTxIds {
            ids: HashMap::from([("0".repeat(64), 0)]),
            floor_ms: NOW_SECS * 1000,
        };
        (Box::new(index), 1500)
    } else {
        (Box::new(HashSet::from(["0".repeat(64)])), 0)
    };
    let one = validate_block(&b, &context(1, window_s), &state(), known.as_ref());
    let many = validate_block(&b, &context(3, window_s), &state(), known.as_ref());
    assert_eq!(one.codes.len(), count, "one code per envelope");
    assert!(
        one.expiry_floor_ms >= known.expiry_floor_ms(),
        "the expiry floor went down"
    );
    assert_eq!(one.expiry_floor_ms, many.expiry_floor_ms);
    assert_eq!(
        one.codes, many.codes,
        "the verdict depends on the thread count"
    );
    assert_eq!(one.tx_ids, many.tx_ids);
    assert_eq!(one.updates, many.updates);
}

/// The payload `piece` (a `Payload`) with the fixture peer's endorsement, signed by the
/// client as creator.
fn completed(piece: &[u8]) -> Bytes {
    let m = members();
    let mut payload = Payload::decode(piece).expect("checked by the caller");
    if let Ok(mut etx) = EndorserTransaction::decode(payload.data.as_ref()) {
        etx.endorsements = vec![tx::endorse(&m.peer, &etx.response_payload)];
        payload.data = etx.encode_to_vec().into();
    }
    let restamp = Restamp {
        now: false,
        creator: true,
        tx_id: true,
    };
    let env = fixture::sign_payload(&payload.encode_to_vec(), &m.client, restamp);
    env.encode_to_vec().into()
}

/// Blocks of transactions on `bank` and `kv`: a valid one, a read conflict, a range read,
/// a duplicate, and a transaction whose payload the harness completes.
pub fn seeds() -> Vec<Vec<u8>> {
    let m = members();
    let transaction = |n: u8, chaincode: &str, rwset: TxRwSet| -> Vec<u8> {
        let p = Proposal::with_nonce(
            m.client.cert_bytes().clone(),
            CHANNEL,
            tx::invocation(chaincode, "invoke", vec![Bytes::from_static(b"arg")]),
            &[n; 24],
        )
        .expect("a nonce");
        let payload = tx::response_payload(&p, Simulation::succeeded("1", rwset));
        let endorsements = vec![tx::endorse(&m.peer, &payload)];
        tx::assemble(&m.client, &p, payload, endorsements, fixture::NOW_MS)
            .expect("the creator")
            .encode_to_vec()
    };
    let mut write = RwSetBuilder::new();
    write.read("bank", "alice", Some(Version { block: 0, tx: 0 }));
    write.write("bank", "alice", Bytes::from_static(b"9"));
    let mut stale = RwSetBuilder::new();
    stale.read("kv", "k", Some(Version { block: 0, tx: 0 }));
    let mut range = RwSetBuilder::new();
    range.range(
        "bank",
        "a",
        "z",
        vec![("alice".into(), Version { block: 0, tx: 0 })],
    );
    let valid = transaction(1, "bank", write.build());
    let as_payload = {
        let env = ordo_proto::pb::common::Envelope::decode(valid.as_slice()).expect("encoded");
        env.payload.to_vec()
    };
    vec![
        [&[0u8][..], &fixture::join_pieces([&valid])].concat(),
        [
            &[0u8][..],
            &fixture::join_pieces([
                valid.clone(),
                transaction(2, "kv", stale.build()),
                transaction(3, "bank", range.build()),
                valid.clone(),
            ]),
        ]
        .concat(),
        [&[1u8][..], &fixture::join_pieces([&as_payload])].concat(),
    ]
}
