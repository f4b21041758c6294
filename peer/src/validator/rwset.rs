//! Shape checks on a read/write set, so that MVCC and the committer never see an
//! ambiguous one (two writes of one key, a namespace listed twice).

use std::collections::HashSet;

use ordo_proto::pb::peer::{TxRwSet, TxValidationCode};

use super::context::ValidationContext;
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
