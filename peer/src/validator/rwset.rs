//! Shape checks on a read/write set, so that MVCC and the committer never see an
//! ambiguous one (two writes of one key, a namespace listed twice).

use std::collections::HashSet;

use ordo_proto::pb::peer::{RangeRead, TxRwSet, TxValidationCode};

use super::context::ValidationContext;
use super::mvcc::in_range;
use super::Verdict;

/// Longest key, in bytes. A consensus rule like every other check: changing it changes
/// which transactions are valid.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks `rwset`'s shape (BAD_RWSET) and that each namespace is a chaincode defined on
/// the channel (UNKNOWN_CHAINCODE), in that order.
pub(crate) fn check(rwset: &TxRwSet, ctx: &ValidationContext) -> Result<(), Verdict> {
    let mut namespaces = HashSet::new();
    for ns in &rwset.ns_rwsets {
        if ns.namespace.is_empty() || !namespaces.insert(ns.namespace.as_str()) {
            return Err(bad(format!(
                "namespace {:?} empty or repeated",
                ns.namespace
            )));
        }
        let mut reads = HashSet::new();
        for r in &ns.reads {
            check_key(&ns.namespace, &r.key)?;
            if !reads.insert(r.key.as_str()) {
                return Err(bad(format!("{}/{:?} read twice", ns.namespace, r.key)));
            }
        }
        let mut writes = HashSet::new();
        for w in &ns.writes {
            check_key(&ns.namespace, &w.key)?;
            if !writes.insert(w.key.as_str()) {
                return Err(bad(format!("{}/{:?} written twice", ns.namespace, w.key)));
            }
            if w.is_delete && !w.value.is_empty() {
                return Err(bad(format!(
                    "{}/{:?} deleted with a value",
                    ns.namespace, w.key
                )));
            }
        }
        for range in &ns.range_reads {
            check_range(&ns.namespace, range)?;
        }
    }
    for ns in &rwset.ns_rwsets {
        if ctx.chaincode(&ns.namespace).is_none() {
            return Err(Verdict::new(
                TxValidationCode::UnknownChaincode,
                format!(
                    "namespace {:?} is not a chaincode of the channel",
                    ns.namespace
                ),
            ));
        }
    }
    Ok(())
}

/// The namespaces the set writes to (or deletes from), in set order.
pub(crate) fn written_namespaces(rwset: &TxRwSet) -> impl Iterator<Item = &str> {
    rwset
        .ns_rwsets
        .iter()
        .filter(|ns| !ns.writes.is_empty())
        .map(|ns| ns.namespace.as_str())
}

/// A range read's shape: bounds no longer than a key, `start < end` when `end` is set,
/// and its keys existing (a version each), inside the range, strictly ascending.
fn check_range(namespace: &str, range: &RangeRead) -> Result<(), Verdict> {
    let (start, end) = (range.start.as_str(), range.end.as_str());
    if start.len() > MAX_KEY_BYTES || end.len() > MAX_KEY_BYTES {
        return Err(bad(format!(
            "{namespace}: a range bound longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    if !end.is_empty() && end <= start {
        return Err(bad(format!(
            "{namespace}: empty or reversed range [{start:?}, {end:?})"
        )));
    }
    let mut previous: Option<&str> = None;
    for r in &range.reads {
        check_key(namespace, &r.key)?;
        if !in_range(&r.key, start, end) || previous.is_some_and(|p| p >= r.key.as_str()) {
            return Err(bad(format!(
                "{namespace}: range [{start:?}, {end:?}) lists {:?} out of range or order",
                r.key
            )));
        }
        if r.version.is_none() {
            return Err(bad(format!(
                "{namespace}: range [{start:?}, {end:?}) lists {:?} without a version",
                r.key
            )));
        }
        previous = Some(&r.key);
    }
    Ok(())
}

fn check_key(namespace: &str, key: &str) -> Result<(), Verdict> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(bad(format!(
            "{namespace}: key of {} bytes (1..={MAX_KEY_BYTES} allowed)",
            key.len()
        )));
    }
    Ok(())
}

fn bad(reason: String) -> Verdict {
    Verdict::new(TxValidationCode::BadRwset, reason)
}
