//! Property tests: determinism, chunking, MVCC against a reference model, and no panics
//! on any bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroUsize;

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;

use ordo_proto::pb::common::{Block, Envelope};
use ordo_proto::pb::peer::{TxRwSet, Version};
use ordo_sdk::tx::RwSetBuilder;

use super::fixture::*;
use crate::validator::{
    validate_block, BlockValidation, TxValidationCode as Code, ValidationContext, ValidatorOptions,
    DEFAULT_CHUNK_SIZE,
};

const BLOCK: u64 = 9;
const NAMESPACES: [&str; 2] = ["bank", "audit"];
const KEYS: usize = 3;

/// How a generated transaction is (mis)built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    BadEnvelopeSignature,
    BadEndorsementSignature,
    OneEndorser,
    Garbage,
    UnknownChaincode,
    RepeatPrevious,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => Just(Kind::Valid),
        1 => Just(Kind::BadEnvelopeSignature),
        1 => Just(Kind::BadEndorsementSignature),
        1 => Just(Kind::OneEndorser),
        1 => Just(Kind::Garbage),
        1 => Just(Kind::UnknownChaincode),
        1 => Just(Kind::RepeatPrevious),
    ]
}

/// A read: key index, and which version it claims (0 absent, 1 the committed one,
/// 2 an old one, 3 one from this very block).
type GenRead = (usize, u8);
/// A write: key index, and the value (`None` deletes).
type GenWrite = (usize, Option<u8>);

#[derive(Debug, Clone)]
struct GenTx {
    kind: Kind,
    reads: Vec<GenRead>,
    writes: Vec<GenWrite>,
}

fn gen_tx(kinds: BoxedStrategy<Kind>) -> impl Strategy<Value = GenTx> {
    let slot = 0..NAMESPACES.len() * KEYS;
    (
        kinds,
        prop::collection::vec((slot.clone(), 0u8..4), 0..3),
        prop::collection::vec((slot, prop::option::weighted(0.8, any::<u8>())), 0..3),
    )
        .prop_map(|(kind, reads, writes)| GenTx {
            kind,
            reads,
            writes,
        })
}

/// Committed state: per slot, absent or (value, version) from an earlier block.
fn gen_state() -> impl Strategy<Value = Vec<Option<(u8, u64, u32)>>> {
    prop::collection::vec(
        prop::option::of((any::<u8>(), 1..BLOCK, 0u32..3)),
        NAMESPACES.len() * KEYS,
    )
}

fn slot_key(slot: usize) -> (&'static str, String) {
    (NAMESPACES[slot / KEYS], format!("k{}", slot % KEYS))
}

type Committed = BTreeMap<(String, String), (Bytes, Version)>;

fn committed_of(state: &[Option<(u8, u64, u32)>]) -> Committed {
    state
        .iter()
        .enumerate()
        .filter_map(|(slot, s)| {
            s.map(|(val, b, t)| {
                let (ns, k) = slot_key(slot);
                (
                    (ns.to_string(), k),
                    (Bytes::from(vec![val]), Version { block: b, tx: t }),
                )
            })
        })
        .collect()
}

fn versions_of(committed: &Committed) -> State {
    committed
        .iter()
        .map(|(k, (_, v))| (k.clone(), *v))
        .collect()
}

fn rwset_of(tx: &GenTx, committed: &Committed) -> TxRwSet {
    let mut rw = RwSetBuilder::new();
    for (slot, choice) in &tx.reads {
        let (ns, k) = slot_key(*slot);
        let version = match choice {
            0 => None,
            1 => committed.get(&(ns.to_string(), k.clone())).map(|(_, v)| *v),
            2 => Some(Version { block: 1, tx: 7 }),
            _ => Some(Version {
                block: BLOCK,
                tx: u32::from(*choice),
            }),
        };
        rw.read(ns, &k, version);
    }
    for (slot, value) in &tx.writes {
        let (ns, k) = slot_key(*slot);
        match value {
            Some(b) => rw.write(ns, &k, Bytes::from(vec![*b])),
            None => rw.delete(ns, &k),
        };
    }
    rw.build()
}

fn flip_envelope_signature(env: Bytes) -> Bytes {
    let mut env = Envelope::decode(env).expect("decodes");
    let mut sig = env.signature.to_vec();
    sig[0] ^= 1;
    env.signature = sig.into();
    env.encode_to_vec().into()
}

/// Builds the block's envelopes. Every transaction is endorsed by peers of A and C, which
/// satisfies both `bank` and `audit` unless its kind says otherwise.
fn envelopes_of(txs: &[GenTx], committed: &Committed) -> Vec<Bytes> {
    let n = net();
    let mut out: Vec<Bytes> = Vec::with_capacity(txs.len());
    for (i, tx) in txs.iter().enumerate() {
        let mut b = n
            .tx(i as u64)
            .rwset(rwset_of(tx, committed))
            .endorsers(vec![n.peer(0, 0), n.peer(2, 0)]);
        let env = match tx.kind {
            Kind::Valid => b.build(),
            Kind::BadEnvelopeSignature => flip_envelope_signature(b.build()),
            Kind::BadEndorsementSignature => {
                // The second endorser signs other bytes: policy fails.
                let p = b.proposal();
                let payload = b.response_payload(&p);
                let es = vec![
                    ordo_sdk::tx::endorse(n.peer(0, 0), &payload),
                    ordo_sdk::tx::endorse(n.peer(2, 0), b"other bytes"),
                ];
                ordo_sdk::tx::assemble(b.creator, &p, payload, es, 1)
                    .expect("creator")
                    .encode_to_vec()
                    .into()
            }
            Kind::OneEndorser => b.endorsers(vec![n.peer(1, 1)]).build(),
            Kind::Garbage => Bytes::from(vec![0xff, i as u8, 0x01]),
            Kind::UnknownChaincode => {
                b.chaincode = "ghost".into();
                b.build()
            }
            Kind::RepeatPrevious => match out.last() {
                Some(prev) => prev.clone(),
                None => b.build(),
            },
        };
        out.push(env);
    }
    out
}

fn options(chunk: usize, threads: usize) -> ValidatorOptions {
    ValidatorOptions {
        chunk_size: NonZeroUsize::new(chunk).expect("nonzero"),
        max_threads: NonZeroUsize::new(threads).expect("nonzero"),
    }
}

fn run(block: &Block, ctx: &ValidationContext, state: &State) -> BlockValidation {
    validate_block(block, ctx, state, &HashSet::<String>::new())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// (a) Validating the same block again, with signatures batched in chunks of other
    /// sizes and on other thread counts, gives identical results.
    #[test]
    fn validation_is_deterministic(
        txs in prop::collection::vec(gen_tx(kind().boxed()), 0..48),
        state in gen_state(),
        chunk in 1usize..50,
        threads in 1usize..5,
    ) {
        let committed = committed_of(&state);
        let versions = versions_of(&committed);
        let block = block_of(BLOCK, envelopes_of(&txs, &committed));
        let base = run(&block, &net().ctx(), &versions);
        prop_assert_eq!(base.codes.len(), txs.len());
        let again = run(&block, &net().ctx(), &versions);
        prop_assert_eq!(&again, &base);
        let other = run(&block, &net().ctx().with_options(options(chunk, threads)), &versions);
        prop_assert_eq!(&other, &base);
    }

    /// (c) Chunks of one transaction (one batch per transaction) and the default chunks
    /// (several transactions per batch, bad signatures among them) agree.
    #[test]
    fn chunking_does_not_change_the_result(
        txs in prop::collection::vec(gen_tx(kind().boxed()), DEFAULT_CHUNK_SIZE..DEFAULT_CHUNK_SIZE * 2 + 5),
        state in gen_state(),
    ) {
        let committed = committed_of(&state);
        let versions = versions_of(&committed);
        let block = block_of(BLOCK, envelopes_of(&txs, &committed));
        let default = run(&block, &net().ctx().with_options(options(DEFAULT_CHUNK_SIZE, 2)), &versions);
        let singles = run(&block, &net().ctx().with_options(options(1, 3)), &versions);
        prop_assert_eq!(singles, default);
    }

    /// (b) MVCC agrees with a plain sequential model on every code and on the final state.
    #[test]
    fn mvcc_matches_the_reference_model(
        txs in prop::collection::vec(
            gen_tx(prop_oneof![5 => Just(Kind::Valid), 1 => Just(Kind::BadEnvelopeSignature)].boxed()),
            0..16,
        ),
        state in gen_state(),
    ) {
        let committed = committed_of(&state);
        let versions = versions_of(&committed);
        let block = block_of(BLOCK, envelopes_of(&txs, &committed));
        let out = run(&block, &net().ctx(), &versions);

        let rwsets: Vec<(bool, TxRwSet)> = txs
            .iter()
            .map(|t| (t.kind == Kind::Valid, rwset_of(t, &committed)))
            .collect();
        let (codes, final_state) = reference(BLOCK, &committed, &rwsets);
        prop_assert_eq!(&out.codes, &codes);

        let mut applied = committed.clone();
        for u in &out.updates {
            let k = (u.namespace.clone(), u.key.clone());
            match &u.value {
                Some(v) => { applied.insert(k, (v.clone(), u.version)); }
                None => { applied.remove(&k); }
            }
        }
        prop_assert_eq!(applied, final_state);
    }

    /// No panic, and nothing valid, whatever bytes a block carries.
    #[test]
    fn random_bytes_never_panic(
        envs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..8),
    ) {
        let envs: Vec<Bytes> = envs.into_iter().map(Bytes::from).collect();
        let out = run(&block_of(1, envs.clone()), &net().ctx(), &State::new());
        prop_assert_eq!(out.codes.len(), envs.len());
        prop_assert!(out.codes.iter().all(|c| *c != Code::Valid));
        prop_assert!(out.updates.is_empty());
    }

    /// No panic on any corruption of a valid transaction.
    #[test]
    fn corrupted_transactions_never_panic(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let good = net().tx(1).rwset(RwSetBuilder::new().write("bank", "k", Bytes::from_static(b"v")).build()).build();
        let mut bytes = good.to_vec();
        let i = at.index(bytes.len());
        if cut { bytes.truncate(i); } else { bytes[i] = byte; }
        let out = run(&block_of(1, vec![Bytes::from(bytes.clone())]), &net().ctx(), &State::new());
        prop_assert_eq!(out.codes.len(), 1);
        if bytes != good.to_vec() && out.codes[0] == Code::Valid {
            // Only a change the decoder cannot see (none expected) may stay valid.
            prop_assert_eq!(Envelope::decode(Bytes::from(bytes)).ok(), Envelope::decode(good).ok());
        }
    }
}

/// The plain sequential model: walk the block keeping the whole current state, a deleted
/// key as a tombstone with the deleting version. A read holds when the key's current
/// version is the one read and was not produced by this block.
fn reference(block: u64, committed: &Committed, txs: &[(bool, TxRwSet)]) -> (Vec<Code>, Committed) {
    // (value or tombstone, version)
    let mut current: HashMap<(String, String), (Option<Bytes>, Version)> = committed
        .iter()
        .map(|(k, (val, v))| (k.clone(), (Some(val.clone()), *v)))
        .collect();
    let mut codes = Vec::new();
    for (i, (authentic, rw)) in txs.iter().enumerate() {
        if !authentic {
            codes.push(Code::BadSignature);
            continue;
        }
        let reads_hold = rw.ns_rwsets.iter().all(|ns| {
            ns.reads.iter().all(
                |r| match current.get(&(ns.namespace.clone(), r.key.clone())) {
                    None => r.version.is_none(),
                    Some((_, v)) if v.block == block => false,
                    Some((Some(_), v)) => r.version == Some(*v),
                    Some((None, _)) => r.version.is_none(),
                },
            )
        });
        if !reads_hold {
            codes.push(Code::MvccReadConflict);
            continue;
        }
        codes.push(Code::Valid);
        let version = Version {
            block,
            tx: i as u32,
        };
        for ns in &rw.ns_rwsets {
            for w in &ns.writes {
                let value = (!w.is_delete).then(|| w.value.clone());
                current.insert((ns.namespace.clone(), w.key.clone()), (value, version));
            }
        }
    }
    let final_state = current
        .into_iter()
        .filter_map(|(k, (val, v))| val.map(|val| (k, (val, v))))
        .collect();
    (codes, final_state)
}
