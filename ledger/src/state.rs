//! A peer's world state and key history, committed in the same synced write batch as the
//! block that produced them ([`BlockStore::commit`]), so a crash leaves either the block
//! with all its effects or none of it.
//!
//! Layout (length prefixes keep namespaces and keys unambiguous whatever bytes they hold):
//!
//! | column family | key | value |
//! |---|---|---|
//! | `state` | `u32 len(ns)` ‖ ns ‖ key | block `u64` BE ‖ tx `u32` BE ‖ value |
//! | `history` | `u32 len(ns)` ‖ ns ‖ `u32 len(key)` ‖ key ‖ block `u64` BE ‖ tx `u32` BE | 1 ‖ value (write) or 0 (delete) |
//! | `meta` | `commit_hash` | the peer's commit hash after the last block |
//!
//! Keys of one namespace are contiguous and sorted by key bytes, so a range query is one
//! iterator; the history of one key is contiguous and sorted by (block, tx).

use bytes::Bytes;
use rocksdb::{Direction, IteratorMode, Options, ReadOptions, WriteBatch};

use ordo_proto::hash::Hash;
use ordo_proto::pb::common::Block;

use crate::{BlockStore, LedgerError, CF_HISTORY, CF_META, CF_STATE};

/// `meta` key of the peer's commit hash.
pub(crate) const META_COMMIT_HASH: &[u8] = b"commit_hash";
/// Largest namespace or key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// Where a key's value was written: the block and the transaction's index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Block number.
    pub block: u64,
    /// Index of the transaction within the block.
    pub tx: u32,
}

/// One state change of a valid transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    /// Chaincode namespace.
    pub namespace: String,
    /// Key within the namespace.
    pub key: String,
    /// New value; `None` deletes the key.
    pub value: Option<Bytes>,
    /// The writing transaction.
    pub version: Version,
}

/// What a peer commits with a block besides the block itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateCommit {
    /// One validation code per data entry of the block, in order.
    pub codes: Vec<u8>,
    /// The state changes of the block's valid transactions, in block order (a later write
    /// of the same key wins).
    pub writes: Vec<StateWrite>,
    /// The peer's commit hash after this block.
    pub commit_hash: Hash,
    /// Per data entry, the tx id to index, or `None` to leave it out: a validating peer
    /// indexes only tx ids it authenticated (a forged envelope must not claim someone
    /// else's id), and not the later copies of a duplicate nor ids already indexed (the
    /// ledger does not look them up again; an id given here overwrites its entry). Must
    /// have one entry per data entry.
    pub tx_ids: Vec<Option<String>>,
    /// The expiry floor after this block (ms; `expiry` module): at least the ledger's
    /// current one (it never goes down). 0 on a channel that never expires transactions.
    pub expiry_floor_ms: u64,
    /// Index each id with its transaction's signed timestamp (read from the envelope):
    /// set by the validator when expiry is on for the block. Entries without one never
    /// expire.
    pub record_tx_times: bool,
}

/// A value with the version that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedValue {
    /// Who wrote it.
    pub version: Version,
    /// The value.
    pub value: Bytes,
}

/// One change in a key's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Who changed it.
    pub version: Version,
    /// The value written, or `None` for a delete.
    pub value: Option<Bytes>,
}

/// Options of the `state` and `history` column families.
pub(crate) fn cf_options() -> Options {
    let mut o = Options::default();
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o
}

fn ns_prefix(namespace: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + namespace.len());
    k.extend_from_slice(&(namespace.len() as u32).to_be_bytes());
    k.extend_from_slice(namespace.as_bytes());
    k
}

fn state_key(namespace: &str, key: &str) -> Vec<u8> {
    let mut k = ns_prefix(namespace);
    k.extend_from_slice(key.as_bytes());
    k
}

fn history_prefix(namespace: &str, key: &str) -> Vec<u8> {
    let mut k = ns_prefix(namespace);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

fn version_bytes(v: Version) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&v.block.to_be_bytes());
    out[8..].copy_from_slice(&v.tx.to_be_bytes());
    out
}

fn parse_version(bytes: &[u8], what: &str) -> Result<Version, LedgerError> {
    let block = bytes.get(..8).and_then(|b| b.try_into().ok());
    let tx = bytes.get(8..12).and_then(|b| b.try_into().ok());
    match (block, tx) {
        (Some(b), Some(t)) => Ok(Version {
            block: u64::from_be_bytes(b),
            tx: u32::from_be_bytes(t),
        }),
        _ => Err(LedgerError::Corrupt(format!(
            "{what}: {} bytes, too short for a version",
            bytes.len()
        ))),
    }
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl StateCommit {
    /// Checks the commit against the block it goes with; nothing is written on failure.
    pub(crate) fn check(
        &self,
        block: &Block,
        number: u64,
        floor_ms: u64,
    ) -> Result<(), LedgerError> {
        let entries = block.data.as_ref().map(|d| d.data.len()).unwrap_or(0);
        if self.codes.len() != entries {
            return Err(LedgerError::InvalidBlock(format!(
                "{} validation codes for {entries} transactions",
                self.codes.len()
            )));
        }
        if self.expiry_floor_ms < floor_ms {
            return Err(LedgerError::InvalidBlock(format!(
                "expiry floor {} ms is below the ledger's {floor_ms} ms: it never goes down",
                self.expiry_floor_ms
            )));
        }
        if self.tx_ids.len() != entries {
            return Err(LedgerError::InvalidBlock(format!(
                "{} tx index entries for {entries} transactions",
                self.tx_ids.len()
            )));
        }
        for w in &self.writes {
            if w.version.block != number || w.version.tx as usize >= entries {
                return Err(LedgerError::InvalidBlock(format!(
                    "write of {:?}/{:?} claims version {:?} in block {number} of {entries} transactions",
                    w.namespace, w.key, w.version
                )));
            }
            if w.namespace.is_empty()
                || w.namespace.len() > MAX_KEY_BYTES
                || w.key.len() > MAX_KEY_BYTES
            {
                return Err(LedgerError::InvalidBlock(format!(
                    "namespace or key of {} / {} bytes (namespace non-empty, both at most {MAX_KEY_BYTES})",
                    w.namespace.len(),
                    w.key.len()
                )));
            }
        }
        Ok(())
    }
}

impl StateCommit {
    /// The (index, tx id) pairs to index.
    pub(crate) fn indexed_tx_ids(&self) -> Vec<(u32, String)> {
        self.tx_ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some((u32::try_from(i).ok()?, id.clone()?)))
            .collect()
    }
}

impl BlockStore {
    /// Appends `block` (which carries its validation codes in its metadata) together with
    /// its state changes, tx codes and commit hash, in one synced write batch: a peer's
    /// commit. The same checks as [`BlockStore::append`], plus: one code per transaction
    /// and every write versioned inside this block; otherwise nothing is written.
    pub fn commit(&self, block: &Block, commit: &StateCommit) -> Result<(), LedgerError> {
        self.write_block(block, Some(commit), crate::DataCheck::Verify, None)
    }

    pub(crate) fn add_state_commit(
        &self,
        batch: &mut WriteBatch,
        c: &StateCommit,
    ) -> Result<(), LedgerError> {
        let state = self.cf(CF_STATE)?;
        let history = self.cf(CF_HISTORY)?;
        for w in &c.writes {
            let key = state_key(&w.namespace, &w.key);
            let mut hkey = history_prefix(&w.namespace, &w.key);
            hkey.extend_from_slice(&version_bytes(w.version));
            match &w.value {
                Some(v) => {
                    let mut value = Vec::with_capacity(12 + v.len());
                    value.extend_from_slice(&version_bytes(w.version));
                    value.extend_from_slice(v);
                    batch.put_cf(state, key, value);
                    let mut hv = Vec::with_capacity(1 + v.len());
                    hv.push(1);
                    hv.extend_from_slice(v);
                    batch.put_cf(history, hkey, hv);
                }
                None => {
                    batch.delete_cf(state, key);
                    batch.put_cf(history, hkey, [0u8]);
                }
            }
        }
        batch.put_cf(self.cf(CF_META)?, META_COMMIT_HASH, c.commit_hash);
        if c.expiry_floor_ms > 0 {
            batch.put_cf(
                self.cf(CF_META)?,
                crate::expiry::META_EXPIRY_FLOOR,
                c.expiry_floor_ms.to_be_bytes(),
            );
        }
        Ok(())
    }

    /// The committed value of `key` in `namespace` with its version, if the key exists.
    pub fn state(&self, namespace: &str, key: &str) -> Result<Option<VersionedValue>, LedgerError> {
        let Some(raw) = self
            .inner
            .db
            .get_pinned_cf(self.cf(CF_STATE)?, state_key(namespace, key))?
        else {
            return Ok(None);
        };
        let version = parse_version(&raw, "state value")?;
        Ok(Some(VersionedValue {
            version,
            value: Bytes::copy_from_slice(&raw[12..]),
        }))
    }

    /// Keys of `namespace` in `[start, end)` (an empty `end` means no upper bound), in key
    /// order, at most `limit` of them.
    pub fn state_range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>, LedgerError> {
        let prefix = ns_prefix(namespace);
        let from = state_key(namespace, start);
        let upper = if end.is_empty() {
            prefix_end(&prefix)
        } else {
            Some(state_key(namespace, end))
        };
        let mut opts = ReadOptions::default();
        if let Some(u) = upper {
            opts.set_iterate_upper_bound(u);
        }
        let iter = self.inner.db.iterator_cf_opt(
            self.cf(CF_STATE)?,
            opts,
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item?;
            let key = String::from_utf8(k[prefix.len()..].to_vec())
                .map_err(|_| LedgerError::Corrupt("state key is not UTF-8".into()))?;
            let version = parse_version(&v, "state value")?;
            out.push((
                key,
                VersionedValue {
                    version,
                    value: Bytes::copy_from_slice(&v[12..]),
                },
            ));
        }
        Ok(out)
    }

    /// Every committed change of `key` in `namespace`, oldest first.
    pub fn history(&self, namespace: &str, key: &str) -> Result<Vec<HistoryEntry>, LedgerError> {
        Ok(self.history_page(namespace, key, None, usize::MAX)?.0)
    }

    /// At most `limit` committed changes of `key` in `namespace`, oldest first, from the
    /// change at `from` on (`None`: from the oldest held, at or above the first block);
    /// and the version of the next change when there are more.
    pub fn history_page(
        &self,
        namespace: &str,
        key: &str,
        from: Option<Version>,
        limit: usize,
    ) -> Result<(Vec<HistoryEntry>, Option<Version>), LedgerError> {
        let prefix = history_prefix(namespace, key);
        let mut opts = ReadOptions::default();
        if let Some(u) = prefix_end(&prefix) {
            opts.set_iterate_upper_bound(u);
        }
        // History below the first block held is cut (pruned, or never held): it is
        // skipped here at once, and dropped from disk at compaction (`prune` module).
        let floor = Version {
            block: self.first_block(),
            tx: 0,
        };
        let mut first = prefix.clone();
        first.extend_from_slice(&version_bytes(from.map_or(floor, |v| v.max(floor))));
        let iter = self.inner.db.iterator_cf_opt(
            self.cf(CF_HISTORY)?,
            opts,
            IteratorMode::From(&first, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            let version = parse_version(&k[prefix.len()..], "history key")?;
            let value = match v.first() {
                Some(1) => Some(Bytes::copy_from_slice(&v[1..])),
                Some(0) => None,
                _ => {
                    return Err(LedgerError::Corrupt(
                        "history entry without a kind byte".into(),
                    ))
                }
            };
            if out.len() == limit {
                return Ok((out, Some(version)));
            }
            out.push(HistoryEntry { version, value });
        }
        Ok((out, None))
    }

    /// The commit hash stored with the last committed block (`None` on an orderer's
    /// ledger or before the first commit).
    pub fn commit_hash(&self) -> Result<Option<Hash>, LedgerError> {
        match self
            .inner
            .db
            .get_pinned_cf(self.cf(CF_META)?, META_COMMIT_HASH)?
        {
            None => Ok(None),
            Some(v) => Hash::try_from(v.as_ref())
                .map(Some)
                .map_err(|_| LedgerError::Corrupt(format!("commit hash of {} bytes", v.len()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_proto::block;

    fn env(tx_id: &str) -> Bytes {
        crate::tests_support::tx_envelope("ch", tx_id, 0)
    }

    fn write(ns: &str, key: &str, value: Option<&str>, block: u64, tx: u32) -> StateWrite {
        StateWrite {
            namespace: ns.into(),
            key: key.into(),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            version: Version { block, tx },
        }
    }

    fn ids(ids: &[&str]) -> Vec<Option<String>> {
        ids.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn the_index_holds_what_the_validator_authenticated() {
        let (_dir, store, genesis) = setup();
        // A forged copy of "x" comes first; only the second, authenticated one is indexed.
        let b1 = block::build(1, block::hash(&genesis), vec![env("x"), env("x")]);
        let c = StateCommit {
            codes: vec![3, 0],
            tx_ids: vec![None, Some("x".into())],
            ..Default::default()
        };
        store.commit(&b1, &c).expect("commit");
        let loc = store.tx_location("x").expect("read").expect("indexed");
        assert_eq!((loc.block, loc.index, loc.code), (1, 1, Some(0)));
    }

    fn setup() -> (tempfile::TempDir, BlockStore, Block) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path()).expect("open");
        let genesis = block::build(0, block::GENESIS_PREVIOUS_HASH, vec![env("genesis")]);
        store
            .commit(
                &genesis,
                &StateCommit {
                    codes: vec![0],
                    tx_ids: vec![Some("genesis".into())],
                    ..Default::default()
                },
            )
            .expect("genesis");
        (dir, store, genesis)
    }

    #[test]
    fn commit_writes_state_history_codes_and_hash_together() {
        let (dir, store, genesis) = setup();
        let b1 = block::build(
            1,
            block::hash(&genesis),
            vec![env("t1"), env("t2"), env("t3")],
        );
        let c1 = StateCommit {
            codes: vec![0, 11, 0],
            writes: vec![
                write("bank", "alice", Some("10"), 1, 0),
                write("bank", "bob", Some("5"), 1, 2),
                write("kv", "alice", Some("other ns"), 1, 2),
            ],
            commit_hash: [1; 32],
            tx_ids: ids(&["t1", "t2", "t3"]),
            ..Default::default()
        };
        store.commit(&b1, &c1).expect("commit");
        let b2 = block::build(2, block::hash(&b1), vec![env("t4")]);
        let c2 = StateCommit {
            codes: vec![0],
            writes: vec![
                write("bank", "alice", None, 2, 0),
                write("bank", "carol", Some("7"), 2, 0),
            ],
            commit_hash: [2; 32],
            tx_ids: ids(&["t4"]),
            ..Default::default()
        };
        store.commit(&b2, &c2).expect("commit");
        drop(store);

        let store = BlockStore::open(dir.path()).expect("reopen");
        assert_eq!(store.height(), 3);
        assert_eq!(store.commit_hash().expect("read"), Some([2; 32]));
        assert_eq!(store.state("bank", "alice").expect("read"), None, "deleted");
        let bob = store.state("bank", "bob").expect("read").expect("present");
        assert_eq!(
            (bob.version, bob.value.as_ref()),
            (Version { block: 1, tx: 2 }, b"5".as_ref())
        );
        assert_eq!(
            store.state("kv", "alice").expect("read").map(|v| v.value),
            Some(Bytes::from_static(b"other ns"))
        );
        let range: Vec<String> = store
            .state_range("bank", "", "", 100)
            .expect("range")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            range,
            vec!["bob", "carol"],
            "namespaces do not leak into each other"
        );
        let range: Vec<String> = store
            .state_range("bank", "b", "c", 100)
            .expect("range")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(range, vec!["bob"]);
        let h = store.history("bank", "alice").expect("history");
        assert_eq!(
            h,
            vec![
                HistoryEntry {
                    version: Version { block: 1, tx: 0 },
                    value: Some(Bytes::from_static(b"10"))
                },
                HistoryEntry {
                    version: Version { block: 2, tx: 0 },
                    value: None
                },
            ]
        );
        // Page by page: one entry, then the rest from where the first page ended.
        let (first, next) = store
            .history_page("bank", "alice", None, 1)
            .expect("history");
        assert_eq!(first, h[..1]);
        assert_eq!(next, Some(Version { block: 2, tx: 0 }));
        let (rest, next) = store
            .history_page("bank", "alice", next, 1)
            .expect("history");
        assert_eq!((rest.as_slice(), next), (&h[1..], None));
        let loc = store.tx_location("t2").expect("read").expect("indexed");
        assert_eq!((loc.block, loc.index, loc.code), (1, 1, Some(11)));
    }

    #[test]
    fn a_bad_commit_writes_nothing() {
        let (_dir, store, genesis) = setup();
        let b1 = block::build(1, block::hash(&genesis), vec![env("t1")]);
        for bad in [
            StateCommit {
                codes: vec![],
                tx_ids: ids(&["t1"]),
                ..Default::default()
            },
            StateCommit {
                codes: vec![0],
                ..Default::default()
            },
            StateCommit {
                codes: vec![0],
                writes: vec![write("bank", "a", Some("1"), 7, 0)],
                commit_hash: [0; 32],
                tx_ids: ids(&["t1"]),
                ..Default::default()
            },
            StateCommit {
                codes: vec![0],
                writes: vec![write("bank", "a", Some("1"), 1, 5)],
                commit_hash: [0; 32],
                tx_ids: ids(&["t1"]),
                ..Default::default()
            },
            StateCommit {
                codes: vec![0],
                writes: vec![write("", "a", Some("1"), 1, 0)],
                commit_hash: [0; 32],
                tx_ids: ids(&["t1"]),
                ..Default::default()
            },
        ] {
            assert!(
                matches!(store.commit(&b1, &bad), Err(LedgerError::InvalidBlock(_))),
                "{bad:?}"
            );
            assert_eq!(store.height(), 1);
            assert_eq!(store.state("bank", "a").expect("read"), None);
            assert_eq!(store.tx_location("t1").expect("read"), None);
        }
    }

    #[test]
    fn keys_with_separator_bytes_stay_apart() {
        let (_dir, store, genesis) = setup();
        let b1 = block::build(1, block::hash(&genesis), vec![env("t1")]);
        let c = StateCommit {
            codes: vec![0],
            writes: vec![
                write("a", "b\u{0}c", Some("1"), 1, 0),
                write("a\u{0}b", "c", Some("2"), 1, 0),
            ],
            commit_hash: [0; 32],
            tx_ids: ids(&["t1"]),
            ..Default::default()
        };
        store.commit(&b1, &c).expect("commit");
        assert_eq!(
            store.state("a", "b\u{0}c").expect("read").map(|v| v.value),
            Some(Bytes::from_static(b"1"))
        );
        assert_eq!(
            store.state("a\u{0}b", "c").expect("read").map(|v| v.value),
            Some(Bytes::from_static(b"2"))
        );
        assert_eq!(store.state_range("a", "", "", 10).expect("range").len(), 1);
        assert_eq!(store.history("a", "b").expect("history"), vec![]);
    }
}
