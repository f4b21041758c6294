//! Stage 2: multi-version concurrency control, sequential in block order.
//!
//! A transaction is simulated against the committed state and carries the version of
//! every key it read. It stays valid only if nothing changed them since: each read's
//! version must equal the committed one, and no earlier valid transaction of the same
//! block may have written or deleted the key (Fabric's rule: a read can never have seen a
//! write of the block it is in, whatever version it claims).

use std::collections::HashMap;

use ordo_proto::pb::peer::{TxRwSet, Version};

use super::state::StateView;
use super::StateUpdate;

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

    /// Checks the reads of transaction `tx` (which passed stage 1); if they all hold,
    /// appends its writes to `updates` with version (block, tx) and returns `Ok`,
    /// otherwise the reason of the first conflict.
    pub(crate) fn apply(
        &mut self,
        tx: u32,
        rwset: &TxRwSet,
        updates: &mut Vec<StateUpdate>,
    ) -> Result<(), String> {
        for ns in &rwset.ns_rwsets {
            for read in &ns.reads {
                let id = (ns.namespace.clone(), read.key.clone());
                if let Some(writer) = self.written.get(&id) {
                    return Err(format!(
                        "{}/{:?} was written by transaction {writer} of this block",
                        ns.namespace, read.key
                    ));
                }
                let committed = self.state.version(&ns.namespace, &read.key);
                if committed != read.version {
                    return Err(format!(
                        "{}/{:?} read at {} but committed at {}",
                        ns.namespace,
                        read.key,
                        show(read.version),
                        show(committed)
                    ));
                }
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

fn show(v: Option<Version>) -> String {
    match v {
        Some(v) => format!("({}, {})", v.block, v.tx),
        None => "absent".into(),
    }
}
