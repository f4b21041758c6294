//! What the validator asks of the committed ledger: versions of keys and known tx ids.
//!
//! The committer implements both over its RocksDB column families; tests and simulations
//! use the implementations for `HashMap` and `HashSet` below.
//!
//! **Contract for implementations.** Answers must describe the ledger exactly as committed
//! up to (not including) the block being validated: never a later state, never a partial
//! one. The methods cannot fail, on purpose: an implementation over storage whose read
//! fails must not answer `None` or `false` (that would let a stale read pass or make a
//! good transaction conflict, forking this peer from the others). It should remember the
//! error (say in a `Cell`) and have its caller discard the whole
//! [`super::BlockValidation`], committing nothing for that block.

use std::collections::{BTreeMap, HashMap, HashSet};

use ordo_proto::pb::peer::Version;

/// Committed versions of world-state keys.
pub trait StateView {
    /// The version of the transaction that last wrote `key` in `namespace`, or `None`
    /// if the key does not exist (never written, or deleted).
    fn version(&self, namespace: &str, key: &str) -> Option<Version>;

    /// The existing keys of `namespace` in `[start, end)` (empty `end`: no bound) with
    /// their versions, in ascending key order, at most `limit` of them.
    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Vec<(String, Version)>;
}

/// The ids of committed transactions, and the expiry floor (validator docs, "Expiry").
pub trait TxIndex {
    /// The signed timestamp (ms) of the committed transaction with this id (any code), or
    /// `None` when the ledger holds none. An entry whose timestamp is unknown (indexed
    /// before timestamps were kept) answers `u64::MAX`: it never expires. An entry signed
    /// below the floor may be answered or not: the validator ignores it either way.
    fn committed_at_ms(&self, tx_id: &str) -> Option<u64>;

    /// The expiry floor after the last committed block, in ms (0 on a new ledger).
    fn expiry_floor_ms(&self) -> u64;
}

/// `(namespace, key) → version`, for tests and simulations.
impl StateView for HashMap<(String, String), Version> {
    fn version(&self, namespace: &str, key: &str) -> Option<Version> {
        self.get(&(namespace.to_string(), key.to_string())).copied()
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Vec<(String, Version)> {
        let mut keys: Vec<(String, Version)> = self
            .iter()
            .filter(|((ns, key), _)| ns == namespace && super::mvcc::in_range(key, start, end))
            .map(|((_, key), v)| (key.clone(), *v))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys.truncate(limit);
        keys
    }
}

/// `(namespace, key) → version`, for tests and simulations.
impl StateView for BTreeMap<(String, String), Version> {
    fn version(&self, namespace: &str, key: &str) -> Option<Version> {
        self.get(&(namespace.to_string(), key.to_string())).copied()
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Vec<(String, Version)> {
        self.range((namespace.to_string(), start.to_string())..)
            .take_while(|((ns, key), _)| ns == namespace && (end.is_empty() || key.as_str() < end))
            .take(limit)
            .map(|((_, key), v)| (key.clone(), *v))
            .collect()
    }
}

/// A set of tx ids that never expire (floor 0), for tests and simulations.
impl TxIndex for HashSet<String> {
    fn committed_at_ms(&self, tx_id: &str) -> Option<u64> {
        HashSet::contains(self, tx_id).then_some(u64::MAX)
    }

    fn expiry_floor_ms(&self) -> u64 {
        0
    }
}

/// Tx ids with their signed timestamps and an expiry floor: the committed side of expiry,
/// in memory, for tests and simulations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiringTxIds {
    /// tx id → its signed timestamp (ms).
    pub ids: HashMap<String, u64>,
    /// The floor after the last block applied.
    pub floor_ms: u64,
}

impl TxIndex for ExpiringTxIds {
    fn committed_at_ms(&self, tx_id: &str) -> Option<u64> {
        self.ids.get(tx_id).copied()
    }

    fn expiry_floor_ms(&self) -> u64 {
        self.floor_ms
    }
}
