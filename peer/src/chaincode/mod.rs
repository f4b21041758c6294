//! The chaincode runtime: runs a chaincode's invocation as a simulation over the
//! committed world state and turns it into what endorsers sign — the response, the
//! namespace's read/write set and the event.
//!
//! - [`simulation`]: the [`ordo_sdk::chaincode::Context`] a chaincode runs against:
//!   reads record the version they saw, writes stay in the read/write set, limits apply.
//! - [`StateReader`]: what the simulation reads; the peer's ledger implements it, and so
//!   does a map for tests.
//! - [`external`]: chaincode servers (chaincode as a service) behind the same trait.

use bytes::Bytes;

use ordo_ledger::BlockStore;
use ordo_proto::pb::peer::Version;
use ordo_sdk::chaincode::HistoryItem;

pub mod external;
pub mod simulation;

pub use simulation::{simulate, Limits, Outcome};

/// Committed world state, as a simulation reads it.
pub trait StateReader {
    /// The committed value of `key` in `namespace` and the version that wrote it.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Version, Bytes)>, String>;
    /// Keys of `namespace` in `[start, end)` (empty `end`: no bound), in key order, at
    /// most `limit`.
    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Version, Bytes)>, String>;
    /// The committed changes of `key`, oldest first, at most `limit`.
    fn history(&self, namespace: &str, key: &str, limit: usize)
        -> Result<Vec<HistoryItem>, String>;
}

fn version(v: ordo_ledger::Version) -> Version {
    Version {
        block: v.block,
        tx: v.tx,
    }
}

impl StateReader for BlockStore {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Version, Bytes)>, String> {
        Ok(self
            .state(namespace, key)
            .map_err(|e| e.to_string())?
            .map(|v| (version(v.version), v.value)))
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Version, Bytes)>, String> {
        Ok(self
            .state_range(namespace, start, end, limit)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, v)| (k, version(v.version), v.value))
            .collect())
    }

    fn history(
        &self,
        namespace: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<HistoryItem>, String> {
        Ok(
            ordo_ledger::BlockStore::history_page(self, namespace, key, None, limit)
                .map_err(|e| e.to_string())?
                .0
                .into_iter()
                .map(|h| HistoryItem {
                    block: h.version.block,
                    tx: h.version.tx,
                    value: h.value,
                })
                .collect(),
        )
    }
}

/// `(namespace, key) → (version, value)`, for tests and simulations.
impl StateReader for std::collections::BTreeMap<(String, String), (Version, Bytes)> {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<(Version, Bytes)>, String> {
        Ok(self.get(&(namespace.to_string(), key.to_string())).cloned())
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Version, Bytes)>, String> {
        Ok(self
            .range((namespace.to_string(), start.to_string())..)
            .take_while(|((ns, k), _)| ns == namespace && (end.is_empty() || k.as_str() < end))
            .take(limit)
            .map(|((_, k), (v, b))| (k.clone(), *v, b.clone()))
            .collect())
    }

    fn history(
        &self,
        _namespace: &str,
        _key: &str,
        _limit: usize,
    ) -> Result<Vec<HistoryItem>, String> {
        Ok(Vec::new())
    }
}
