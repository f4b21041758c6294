//! Stage 2: multi-version concurrency control, sequential in block order.
//!
//! A transaction is simulated against the committed state and carries the version of
//! every key it read. It stays valid only if nothing changed them since: each read's
//! version must equal the committed one, and no earlier valid transaction of the same
//! block may have written or deleted the key (Fabric's rule: a read can never have seen a
//! write of the block it is in, whatever version it claims) — else MVCC_READ_CONFLICT.
//!
//! Ranges the same way, after the point reads: a range read must hold exactly the
//! committed keys and versions it held at simulation (nothing inserted, updated or
//! deleted since), and no earlier valid transaction of the block may have written a key
//! inside it — else PHANTOM_READ_CONFLICT. Without this a transaction that sums or lists
//! a range would commit although a key was inserted into it meanwhile.

use std::collections::HashMap;

use ordo_proto::pb::peer::{RangeRead, TxRwSet, TxValidationCode, Version};

use super::state::StateView;
use super::StateUpdate;

/// Why stage 2 refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// MVCC_READ_CONFLICT or PHANTOM_READ_CONFLICT.
    pub(crate) code: TxValidationCode,
    /// Which key or range, and how.
    pub(crate) reason: String,
}

fn conflict(code: TxValidationCode, reason: String) -> Conflict {
    Conflict { code, reason }
}

/// Whether `key` lies in the range `[start, end)` (empty `end`: no bound).
pub(crate) fn in_range(key: &str, start: &str, end: &str) -> bool {
    key >= start && (end.is_empty() || key < end)
}

/// The MVCC state of one block being validated: the committed view, and the keys
/// written so far by the block's valid transactions.
pub(crate) struct Mvcc<'s, S: ?Sized> {
    block: u64,
    state: &'s S,
    /// (namespace, key) → index of the valid transaction that last wrote it.
    written: HashMap<(String, String), u32>,
}

impl<'s, S: StateView + ?Sized> Mvcc<'s, S> {
    /// MVCC for block `block` over the committed `state`.
    pub(crate) fn new(block: u64, state: &'s S) -> Self {
        Self {
            block,
            state,
            written: HashMap::new(),
        }
    }

    /// Checks the reads and then the ranges of transaction `tx` (which passed stage 1);
    /// if they all hold, appends its writes to `updates` with version (block, tx) and
    /// returns `Ok`, otherwise the first conflict.
    pub(crate) fn apply(
        &mut self,
        tx: u32,
        rwset: &TxRwSet,
        updates: &mut Vec<StateUpdate>,
    ) -> Result<(), Conflict> {
        let mvcc = |reason| conflict(TxValidationCode::MvccReadConflict, reason);
        for ns in &rwset.ns_rwsets {
            for read in &ns.reads {
                let id = (ns.namespace.clone(), read.key.clone());
                if let Some(writer) = self.written.get(&id) {
                    return Err(mvcc(format!(
                        "{}/{:?} was written by transaction {writer} of this block",
                        ns.namespace, read.key
                    )));
                }
                let committed = self.state.version(&ns.namespace, &read.key);
                if committed != read.version {
                    return Err(mvcc(format!(
                        "{}/{:?} read at {} but committed at {}",
                        ns.namespace,
                        read.key,
                        show(read.version),
                        show(committed)
                    )));
                }
            }
        }
        for ns in &rwset.ns_rwsets {
            for range in &ns.range_reads {
                self.check_range(&ns.namespace, range)
                    .map_err(|reason| conflict(TxValidationCode::PhantomReadConflict, reason))?;
            }
        }
        let version = Version {
            block: self.block,
            tx,
        };
        for ns in &rwset.ns_rwsets {
            for w in &ns.writes {
                self.written
                    .insert((ns.namespace.clone(), w.key.clone()), tx);
                updates.push(StateUpdate {
                    namespace: ns.namespace.clone(),
                    key: w.key.clone(),
                    value: (!w.is_delete).then(|| w.value.clone()),
                    version,
                });
            }
        }
        Ok(())
    }
}

impl<S: StateView + ?Sized> Mvcc<'_, S> {
    /// Whether `range` of `namespace` still holds what it held at simulation.
    fn check_range(&self, namespace: &str, range: &RangeRead) -> Result<(), String> {
        let (start, end) = (range.start.as_str(), range.end.as_str());
        // Range reads are rare; the block's writes are scanned rather than kept sorted.
        if let Some(((_, key), writer)) = self
            .written
            .iter()
            .filter(|((ns, key), _)| ns == namespace && in_range(key, start, end))
            .min_by_key(|(_, writer)| **writer)
        {
            return Err(format!(
                "{namespace}/[{start:?}, {end:?}): {key:?} was written by transaction {writer} of this block"
            ));
        }
        // One key more than recorded is enough to see an insertion.
        let committed = self
            .state
            .range(namespace, start, end, range.reads.len() + 1);
        let recorded = range.reads.iter().map(|r| (r.key.as_str(), r.version));
        let now = committed.iter().map(|(k, v)| (k.as_str(), Some(*v)));
        for (i, pair) in recorded.zip(now).enumerate() {
            let ((seen_key, seen_v), (key, v)) = pair;
            if seen_key != key || seen_v != v {
                return Err(format!(
                    "{namespace}/[{start:?}, {end:?}) changed at its key {i}: {seen_key:?} at {} \
                     read, {key:?} at {} committed",
                    show(seen_v),
                    show(v)
                ));
            }
        }
        if committed.len() != range.reads.len() {
            return Err(format!(
                "{namespace}/[{start:?}, {end:?}) held {} keys at simulation, {}{} now",
                range.reads.len(),
                if committed.len() > range.reads.len() {
                    "more than "
                } else {
                    ""
                },
                committed.len().min(range.reads.len()),
            ));
        }
        Ok(())
    }
}

fn show(v: Option<Version>) -> String {
    match v {
        Some(v) => format!("({}, {})", v.block, v.tx),
        None => "absent".into(),
    }
}
