//! Property: what the validator accepts is serializable, ranges included.
//!
//! Transactions are small programs (point reads, range reads, writes, deletes over a few
//! keys) simulated by the real simulation against *older* snapshots of the state, as
//! concurrent clients would, then ordered into blocks and judged by the real validator.
//! The reference model is the definition of serializability for deterministic programs:
//! replayed in commit order against the state its predecessors left (the earlier blocks
//! and the earlier valid transactions of its own block), a transaction must read from the
//! committed state exactly what it read when simulated (what it then sees is that,
//! overlaid with its own writes, so it sees the same too). It is VALID if and only if it
//! does; when it does not, the code is MVCC_READ_CONFLICT if a point read changed and
//! PHANTOM_READ_CONFLICT if only a range did. Every value written is unique, so equal
//! values mean equal versions; and a key deleted earlier in the same block reads as a
//! marker no simulation can have seen (Fabric's rule, kept by Ordo: a read never saw a
//! write of its own block, not even the deletion of a key that was absent anyway). Each
//! block's resulting state is compared too: the validator's updates must leave exactly
//! the reference's world.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use proptest::prelude::*;

use ordo_proto::pb::peer::Version;
use ordo_sdk::chaincode::{Chaincode, Context, Response, TransientMap};

use super::fixture::*;
use crate::chaincode::{simulate, Limits};
use crate::validator::{validate_block, TxValidationCode as Code};

const NS: &str = "bank";
const KEYS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// One step of a transaction's program.
#[derive(Debug, Clone)]
enum Op {
    Get(usize),
    /// Keys in `[KEYS[from], KEYS[to])`, or to the end when `to` is past the last key.
    Range(usize, usize),
    Put(usize),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..KEYS.len()).prop_map(Op::Get),
        3 => (0..KEYS.len(), 0..=KEYS.len()).prop_map(|(a, b)| Op::Range(a.min(b), a.max(b) + 1)),
        3 => (0..KEYS.len()).prop_map(Op::Put),
        1 => (0..KEYS.len()).prop_map(Op::Delete),
    ]
}

/// What a program observed, step by step.
type Observed = Vec<Vec<(String, Bytes)>>;

/// A transaction's program, tagged so its writes are unique.
struct Program {
    tag: String,
    ops: Vec<Op>,
}

impl Program {
    /// Runs the program over `ctx`; what each read observed.
    fn run(&self, ctx: &mut dyn Context) -> Result<Observed, String> {
        let mut seen = Vec::new();
        for (i, op) in self.ops.iter().enumerate() {
            match op {
                Op::Get(k) => {
                    let v = ctx.get(KEYS[*k]).map_err(|e| e.to_string())?;
                    seen.push(
                        v.map(|v| vec![(KEYS[*k].to_string(), v)])
                            .unwrap_or_default(),
                    );
                }
                Op::Range(from, to) => {
                    let end = KEYS.get(*to).copied().unwrap_or("");
                    seen.push(ctx.range(KEYS[*from], end).map_err(|e| e.to_string())?);
                }
                Op::Put(k) => ctx
                    .put(KEYS[*k], Bytes::from(format!("{}#{i}", self.tag)))
                    .map_err(|e| e.to_string())?,
                Op::Delete(k) => ctx.delete(KEYS[*k]).map_err(|e| e.to_string())?,
            }
        }
        Ok(seen)
    }

    /// The steps that are point reads.
    fn point_reads(&self) -> impl Iterator<Item = usize> + '_ {
        self.ops
            .iter()
            .filter(|op| !matches!(op, Op::Put(_) | Op::Delete(_)))
            .enumerate()
            .filter(|(_, op)| matches!(op, Op::Get(_)))
            .map(|(i, _)| i)
    }
}

impl Chaincode for Program {
    fn invoke(&self, ctx: &mut dyn Context, _function: &str, _args: &[Bytes]) -> Response {
        match self.run(ctx) {
            Ok(seen) => Response::ok(format!("{seen:?}")),
            Err(e) => Response::error(500, e),
        }
    }
}

/// What a key deleted earlier in the same block reads as in the reference.
const DELETED_IN_BLOCK: &[u8] = b"<deleted earlier in this block>";

/// The state as the reference model keeps it: key → (version, value).
type World = BTreeMap<(String, String), (Version, Bytes)>;

/// A context over the reference world for replaying a program: writes go to a buffer;
/// a point read answers the transaction's own write if it made one, else the world's
/// value; a range read answers the world's keys in the range (what the transaction read
/// from the committed state — its own writes only overlay that, and programs here do
/// not branch on what they read).
struct Replay<'a> {
    world: &'a World,
    /// Keys deleted by earlier valid transactions of the block being replayed.
    deleted_in_block: &'a HashSet<String>,
    writes: BTreeMap<String, Option<Bytes>>,
    transient: TransientMap,
}

impl Context for Replay<'_> {
    fn tx_id(&self) -> &str {
        "replay"
    }
    fn transient(&self) -> &TransientMap {
        &self.transient
    }
    fn get(&mut self, key: &str) -> Result<Option<Bytes>, ordo_sdk::chaincode::StateError> {
        if let Some(own) = self.writes.get(key) {
            return Ok(own.clone());
        }
        if self.deleted_in_block.contains(key) {
            return Ok(Some(Bytes::from_static(DELETED_IN_BLOCK)));
        }
        Ok(self
            .world
            .get(&(NS.to_string(), key.to_string()))
            .map(|(_, v)| v.clone()))
    }
    fn put(&mut self, key: &str, value: Bytes) -> Result<(), ordo_sdk::chaincode::StateError> {
        self.writes.insert(key.to_string(), Some(value));
        Ok(())
    }
    fn delete(&mut self, key: &str) -> Result<(), ordo_sdk::chaincode::StateError> {
        self.writes.insert(key.to_string(), None);
        Ok(())
    }
    fn range(
        &mut self,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Bytes)>, ordo_sdk::chaincode::StateError> {
        let inside = |k: &str| k >= start && (end.is_empty() || k < end);
        let mut seen: BTreeMap<String, Bytes> = self
            .world
            .iter()
            .filter(|((ns, k), _)| ns == NS && inside(k))
            .map(|((_, k), (_, v))| (k.clone(), v.clone()))
            .collect();
        for k in self.deleted_in_block.iter().filter(|k| inside(k)) {
            seen.insert(k.clone(), Bytes::from_static(DELETED_IN_BLOCK));
        }
        Ok(seen.into_iter().collect())
    }
    fn range_page(
        &mut self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<ordo_sdk::chaincode::RangePage, ordo_sdk::chaincode::StateError> {
        let mut all = self.range(start, end)?;
        let next = all.get(limit).map(|(k, _)| k.clone());
        all.truncate(limit);
        Ok((all, next))
    }
    fn history(
        &mut self,
        _key: &str,
    ) -> Result<Vec<ordo_sdk::chaincode::HistoryItem>, ordo_sdk::chaincode::StateError> {
        Ok(Vec::new())
    }
    fn set_event(&mut self, _name: &str, _payload: Bytes) {}
}

/// A generated transaction: its program and how many blocks behind the tip its
/// simulation's snapshot is.
type GenTx = (Vec<Op>, usize);

fn blocks() -> impl Strategy<Value = Vec<Vec<GenTx>>> {
    let tx = (prop::collection::vec(op(), 1..6), 0..3usize);
    prop::collection::vec(prop::collection::vec(tx, 1..7), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn valid_means_serializable_ranges_included(generated in blocks()) {
        let n = net();
        let ctx = n.ctx();
        let none = HashSet::<String>::new();
        let no_deletes = HashSet::<String>::new();
        // Snapshots after each block (index 0: empty), the validator's view of the tip,
        // and the reference world.
        let mut snapshots: Vec<World> = vec![World::new()];
        let mut nonce = 0u64;
        for (b, txs) in generated.iter().enumerate() {
            let number = b as u64 + 1;
            let tip = snapshots.last().cloned().unwrap_or_default();
            let mut programs = Vec::new();
            let mut envelopes = Vec::new();
            let mut observed = Vec::new();
            for (t, (ops, behind)) in txs.iter().enumerate() {
                let snapshot = &snapshots[snapshots.len().saturating_sub(1 + behind)];
                let program = Program { tag: format!("{number}.{t}"), ops: ops.clone() };
                let out = simulate(&program, snapshot, NS, "tx", "run", &[], &TransientMap::new(), Limits::default());
                prop_assert!(out.is_ok(), "{:?}", out.response);
                let mut replay = Replay {
                    world: snapshot,
                    deleted_in_block: &no_deletes,
                    writes: BTreeMap::new(),
                    transient: TransientMap::new(),
                };
                let seen = program.run(&mut replay).map_err(TestCaseError::fail)?;
                nonce += 1;
                let rwset = ordo_proto::pb::peer::TxRwSet { ns_rwsets: vec![out.rwset] };
                envelopes.push(n.tx(nonce).rwset(rwset).build());
                programs.push(program);
                observed.push(seen);
            }
            let versions: HashMap<(String, String), Version> =
                tip.iter().map(|(k, (v, _))| (k.clone(), *v)).collect();
            let verdict = validate_block(&block_of(number, envelopes), &ctx, &versions, &none);

            // The reference: replay in block order against what the predecessors left.
            let mut world = tip;
            let mut deleted_in_block = HashSet::new();
            for (t, program) in programs.iter().enumerate() {
                let mut replay = Replay {
                    world: &world,
                    deleted_in_block: &deleted_in_block,
                    writes: BTreeMap::new(),
                    transient: TransientMap::new(),
                };
                let now = program.run(&mut replay).map_err(TestCaseError::fail)?;
                let expected = if now == observed[t] {
                    Code::Valid
                } else if program.point_reads().any(|i| now[i] != observed[t][i]) {
                    Code::MvccReadConflict
                } else {
                    Code::PhantomReadConflict
                };
                prop_assert_eq!(
                    verdict.codes[t], expected,
                    "block {} tx {}: {:?} saw {:?}, now {:?}",
                    number, t, program.ops, observed[t], now
                );
                if expected == Code::Valid {
                    let version = Version { block: number, tx: t as u32 };
                    for (k, v) in replay.writes {
                        let id = (NS.to_string(), k);
                        match v {
                            Some(v) => {
                                deleted_in_block.remove(&id.1);
                                world.insert(id, (version, v));
                            }
                            None => {
                                deleted_in_block.insert(id.1.clone());
                                world.remove(&id);
                            }
                        }
                    }
                }
            }
            // The validator's updates leave the same world.
            let mut applied: HashMap<(String, String), (Version, Bytes)> =
                snapshots.last().cloned().unwrap_or_default().into_iter().collect();
            for u in &verdict.updates {
                let id = (u.namespace.clone(), u.key.clone());
                match &u.value {
                    Some(v) => { applied.insert(id, (u.version, v.clone())); }
                    None => { applied.remove(&id); }
                }
            }
            let reference: HashMap<(String, String), (Version, Bytes)> =
                world.clone().into_iter().collect();
            prop_assert_eq!(applied, reference, "block {} state", number);
            snapshots.push(world);
        }
    }
}
