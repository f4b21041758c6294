//! The consensus log of a channel: a replicated log's entries and its small state records
//! (Raft's entries, hard state, conf state, snapshot metadata), stored in the channel's own
//! RocksDB beside its blocks so that one directory holds everything a channel needs and
//! removing the channel removes both.
//!
//! The ledger does not know Raft: entries and state records are opaque bytes, keyed by a
//! log index and by a record name. What it guarantees is the durability contract a
//! consensus protocol needs: a [`LogUpdate`] is applied atomically (truncation of a
//! conflicting tail, new entries and state records in one write batch) and, when
//! `sync` is set, is on disk before [`ConsensusLog::write`] returns, so a node may send
//! a message or acknowledge a request that depends on it.

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::{cf, BlockStore, LedgerError};

/// Column family of consensus log entries, keyed by big-endian `u64` index.
pub const CF_CONSENSUS_LOG: &str = "raft_log";
/// Column family of consensus state records (hard state, conf state, snapshot), by name.
pub const CF_CONSENSUS_STATE: &str = "raft_state";

/// One atomic change to the consensus log.
#[derive(Debug, Default, Clone)]
pub struct LogUpdate<'a> {
    /// Deletes every entry at or above this index before the new entries are written
    /// (a follower replacing a conflicting tail). `None` keeps the tail.
    pub truncate_from: Option<u64>,
    /// Entries to write, by index.
    pub entries: Vec<(u64, &'a [u8])>,
    /// State records to write, by name.
    pub records: Vec<(&'a str, &'a [u8])>,
    /// Whether the update must be on disk before `write` returns.
    pub sync: bool,
}

/// A handle on a channel's consensus log. Cheap to clone; shares the channel's database.
#[derive(Clone)]
pub struct ConsensusLog {
    store: BlockStore,
}

impl std::fmt::Debug for ConsensusLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsensusLog").finish_non_exhaustive()
    }
}

impl BlockStore {
    /// The channel's consensus log (used by replicated backends such as Raft).
    pub fn consensus_log(&self) -> ConsensusLog {
        ConsensusLog {
            store: self.clone(),
        }
    }
}

impl ConsensusLog {
    /// Applies `update` in one write batch (synced if `update.sync`).
    pub fn write(&self, update: &LogUpdate<'_>) -> Result<(), LedgerError> {
        let db = &self.store.inner.db;
        let log = cf(db, CF_CONSENSUS_LOG)?;
        let state = cf(db, CF_CONSENSUS_STATE)?;
        let mut batch = WriteBatch::default();
        if let Some(from) = update.truncate_from {
            batch.delete_range_cf(log, from.to_be_bytes(), u64::MAX.to_be_bytes());
            // `delete_range` excludes its end; u64::MAX is never a real index.
        }
        for (index, bytes) in &update.entries {
            batch.put_cf(log, index.to_be_bytes(), bytes);
        }
        for (name, bytes) in &update.records {
            batch.put_cf(state, name.as_bytes(), bytes);
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(update.sync);
        db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Every stored entry from `from` on, in index order. Fails with
    /// [`LedgerError::Corrupt`] on a malformed key or a gap in the indexes.
    pub fn entries_from(&self, from: u64) -> Result<Vec<(u64, Vec<u8>)>, LedgerError> {
        let db = &self.store.inner.db;
        let log = cf(db, CF_CONSENSUS_LOG)?;
        let start = from.to_be_bytes();
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        for item in db.iterator_cf(log, IteratorMode::From(&start, Direction::Forward)) {
            let (key, value) = item?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| {
                LedgerError::Corrupt(format!("consensus log key of {} bytes", key.len()))
            })?);
            if let Some((last, _)) = out.last() {
                if index != last + 1 {
                    return Err(LedgerError::Corrupt(format!(
                        "consensus log jumps from index {last} to {index}"
                    )));
                }
            }
            out.push((index, value.into_vec()));
        }
        Ok(out)
    }

    /// The stored entry at `index`, if there is one.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        let db = &self.store.inner.db;
        Ok(db.get_cf(cf(db, CF_CONSENSUS_LOG)?, index.to_be_bytes())?)
    }

    /// A state record, if it was ever written.
    pub fn record(&self, name: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        let db = &self.store.inner.db;
        let state = cf(db, CF_CONSENSUS_STATE)?;
        Ok(db.get_cf(state, name.as_bytes())?)
    }

    /// Deletes the entries at `indexes` (log compaction after a snapshot). Not synced:
    /// losing a compaction in a crash only keeps entries that are no longer needed.
    ///
    /// Compaction names the entries to drop instead of deleting a prefix because the
    /// ledger may refer to entries below the snapshot ([`crate::LogPosition`]): those
    /// stay, and only the backend knows which they are.
    pub fn discard(&self, indexes: impl IntoIterator<Item = u64>) -> Result<(), LedgerError> {
        let db = &self.store.inner.db;
        let log = cf(db, CF_CONSENSUS_LOG)?;
        let mut batch = WriteBatch::default();
        for index in indexes {
            batch.delete_cf(log, index.to_be_bytes());
        }
        if !batch.is_empty() {
            db.write(batch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, BlockStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path()).expect("open");
        (dir, store)
    }

    #[test]
    fn updates_survive_reopen_and_truncate_conflicting_tails() {
        let (dir, store) = open();
        let log = store.consensus_log();
        log.write(&LogUpdate {
            entries: vec![(1, b"a"), (2, b"b"), (3, b"c")],
            records: vec![("hard_state", b"hs1")],
            sync: true,
            ..LogUpdate::default()
        })
        .expect("write");
        // A new leader overwrites index 2 onward with a shorter tail.
        log.write(&LogUpdate {
            truncate_from: Some(2),
            entries: vec![(2, b"B")],
            records: vec![("hard_state", b"hs2")],
            sync: true,
        })
        .expect("write");
        drop(log);
        drop(store);
        let store = BlockStore::open(dir.path()).expect("reopen");
        let log = store.consensus_log();
        assert_eq!(
            log.entries_from(0).expect("entries"),
            vec![(1, b"a".to_vec()), (2, b"B".to_vec())]
        );
        assert_eq!(
            log.record("hard_state").expect("record"),
            Some(b"hs2".to_vec())
        );
        assert_eq!(log.record("conf_state").expect("record"), None);
    }

    #[test]
    fn discard_drops_only_the_named_entries() {
        let (_dir, store) = open();
        let log = store.consensus_log();
        let entries: Vec<(u64, &[u8])> = (1..=10).map(|i| (i, b"x".as_slice())).collect();
        log.write(&LogUpdate {
            entries,
            sync: true,
            ..LogUpdate::default()
        })
        .expect("write");
        log.discard([1, 2, 4, 5]).expect("discard");
        let left: Vec<u64> = log
            .entries_from(6)
            .expect("entries")
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(left, vec![6, 7, 8, 9, 10]);
        assert!(
            matches!(log.entries_from(0), Err(LedgerError::Corrupt(_))),
            "entry 3 is kept, so the stored indexes jump from 3 to 6"
        );
    }
}
