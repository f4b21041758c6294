//! Raft's log and state for one channel: raft-rs's [`Storage`] over the channel's
//! [`ConsensusLog`] (RocksDB column families `raft_log` and `raft_state`).
//!
//! Every entry since the last snapshot is also kept in memory — the snapshot interval
//! bounds how many there are — so raft-rs reads never touch the disk. Writes go to disk
//! first: [`LogStorage::persist`] writes new entries and the hard state in one synced
//! batch, and only then does the in-memory view change, so what raft-rs sees is never
//! ahead of what a crash would leave.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use ordo_ledger::{ConsensusLog, LedgerError, LogUpdate};

/// State record holding the encoded [`HardState`].
const HARD_STATE: &str = "hard_state";
/// State record holding the encoded [`SnapshotMetadata`] of the last compaction point
/// (its conf state is the membership in force there).
const SNAPSHOT_METADATA: &str = "snapshot_metadata";
/// State record holding the latest [`ConfState`] applied from the log.
const CONF_STATE: &str = "conf_state";
/// State record holding the snapshot's data (the last block number and hash).
const SNAPSHOT_DATA: &str = "snapshot_data";

/// Why the raft log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogStorageError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A stored record does not decode.
    #[error("corrupt raft state: {0}")]
    Corrupt(String),
}

/// raft-rs storage for one channel, durable in the channel's ledger.
pub struct LogStorage {
    log: ConsensusLog,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: SnapshotMetadata,
    snapshot_data: Vec<u8>,
    /// Entries after `snapshot.index`, contiguous.
    entries: Vec<Entry>,
}

fn decode<M: protobuf::Message>(what: &str, bytes: &[u8]) -> Result<M, LogStorageError> {
    M::parse_from_bytes(bytes).map_err(|e| LogStorageError::Corrupt(format!("{what}: {e}")))
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    // Encoding a well-formed in-memory message only fails for messages over 2 GiB.
    m.write_to_bytes().unwrap_or_default()
}

impl LogStorage {
    /// Loads the raft state of a channel. A channel that never ran raft starts with
    /// `initial_voters` as its membership (every founding consenter starts the same way).
    pub fn open(log: ConsensusLog, initial_voters: &[u64]) -> Result<Self, LogStorageError> {
        let hard_state = match log.record(HARD_STATE)? {
            Some(b) => decode("hard state", &b)?,
            None => HardState::default(),
        };
        let snapshot = match log.record(SNAPSHOT_METADATA)? {
            Some(b) => decode("snapshot metadata", &b)?,
            None => {
                let mut m = SnapshotMetadata::default();
                m.mut_conf_state().voters = initial_voters.to_vec();
                m
            }
        };
        let conf_state = match log.record(CONF_STATE)? {
            Some(b) => decode("conf state", &b)?,
            None => snapshot.get_conf_state().clone(),
        };
        if log.record(SNAPSHOT_METADATA)?.is_none() && log.record(CONF_STATE)?.is_none() {
            // A fresh group: the founding membership is part of the durable state from
            // the start, so a restart never takes a different `initial_voters`.
            let meta_bytes = encode(&snapshot);
            let cs_bytes = encode(&conf_state);
            log.write(&LogUpdate {
                records: vec![
                    (SNAPSHOT_METADATA, meta_bytes.as_slice()),
                    (CONF_STATE, cs_bytes.as_slice()),
                ],
                sync: true,
                ..LogUpdate::default()
            })?;
        }
        let snapshot_data = log.record(SNAPSHOT_DATA)?.unwrap_or_default();
        let mut entries = Vec::new();
        for (index, bytes) in log.entries_from(snapshot.index + 1)? {
            let e: Entry = decode("log entry", &bytes)?;
            if e.index != index {
                return Err(LogStorageError::Corrupt(format!(
                    "entry stored under index {index} carries index {}",
                    e.index
                )));
            }
            entries.push(e);
        }
        if let Some(first) = entries.first() {
            if first.index != snapshot.index + 1 {
                return Err(LogStorageError::Corrupt(format!(
                    "log starts at {} but the snapshot ends at {}",
                    first.index, snapshot.index
                )));
            }
        }
        Ok(Self {
            log,
            hard_state,
            conf_state,
            snapshot,
            snapshot_data,
            entries,
        })
    }

    /// Index of the last entry (or of the snapshot when the log is empty).
    pub fn last_index_now(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.index)
            .unwrap_or(self.snapshot.index)
    }

    /// The current hard state (term, vote, commit).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Bytes of the entries held since the last snapshot (drives snapshot creation).
    pub fn bytes_since_snapshot(&self) -> u64 {
        self.entries.iter().map(|e| e.data.len() as u64).sum()
    }

    /// Makes `entries` (appended after truncating any conflicting tail) and `hard_state`
    /// durable in one synced batch, then shows them to raft.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), LogStorageError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let encoded: Vec<(u64, Vec<u8>)> = entries.iter().map(|e| (e.index, encode(e))).collect();
        let hs_bytes = hard_state.map(encode);
        let truncate_from = entries
            .first()
            .map(|e| e.index)
            .filter(|first| *first <= self.last_index_now());
        let mut update = LogUpdate {
            truncate_from,
            entries: encoded.iter().map(|(i, b)| (*i, b.as_slice())).collect(),
            records: Vec::new(),
            sync: true,
        };
        if let Some(b) = &hs_bytes {
            update.records.push((HARD_STATE, b.as_slice()));
        }
        self.log.write(&update)?;
        if let Some(first) = entries.first() {
            let keep = first.index.saturating_sub(self.snapshot.index + 1) as usize;
            self.entries.truncate(keep.min(self.entries.len()));
            self.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Records a new commit index (from a light ready). Not synced: the commit index is
    /// recomputed by raft after a crash.
    pub fn set_commit(&mut self, commit: u64) -> Result<(), LogStorageError> {
        self.hard_state.commit = commit;
        let hs = encode(&self.hard_state);
        self.log.write(&LogUpdate {
            records: vec![(HARD_STATE, hs.as_slice())],
            sync: false,
            ..LogUpdate::default()
        })?;
        Ok(())
    }

    /// Raises the commit index to `commit` (synced): the ledger showed that entries up to
    /// it were applied, so they were committed (see [`super::recovery`]).
    pub fn raise_commit(&mut self, commit: u64) -> Result<(), LogStorageError> {
        if commit <= self.hard_state.commit {
            return Ok(());
        }
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        let bytes = encode(&hs);
        self.log.write(&LogUpdate {
            records: vec![(HARD_STATE, bytes.as_slice())],
            sync: true,
            ..LogUpdate::default()
        })?;
        self.hard_state = hs;
        Ok(())
    }

    /// Records a membership change applied from the log (synced).
    pub fn set_conf_state(&mut self, cs: ConfState) -> Result<(), LogStorageError> {
        let bytes = encode(&cs);
        self.log.write(&LogUpdate {
            records: vec![(CONF_STATE, bytes.as_slice())],
            sync: true,
            ..LogUpdate::default()
        })?;
        self.conf_state = cs;
        Ok(())
    }

    /// The membership in force.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Compacts the log up to `index` (applied, so in the ledger), recording a snapshot
    /// there whose data is `data` (the last block number and hash).
    ///
    /// Raft forgets every entry up to `index`, but on disk only those for which
    /// `referenced` is false are deleted: the ledger stores a committed block as a
    /// reference to the entry that carried it ([`ordo_ledger::LogPosition`]), so such
    /// entries now belong to the ledger.
    pub fn compact(
        &mut self,
        index: u64,
        data: Vec<u8>,
        referenced: impl Fn(&Entry) -> bool,
    ) -> Result<(), LogStorageError> {
        if index <= self.snapshot.index || index > self.last_index_now() {
            return Ok(());
        }
        let term = self.term(index).map_err(|e| {
            LogStorageError::Corrupt(format!("no term for applied index {index}: {e}"))
        })?;
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(self.conf_state.clone());
        let meta_bytes = encode(&meta);
        self.log.write(&LogUpdate {
            records: vec![
                (SNAPSHOT_METADATA, meta_bytes.as_slice()),
                (SNAPSHOT_DATA, data.as_slice()),
            ],
            sync: true,
            ..LogUpdate::default()
        })?;
        let drop = (index - self.snapshot.index) as usize;
        let dropped: Vec<Entry> = self.entries.drain(..drop.min(self.entries.len())).collect();
        self.log
            .discard(dropped.iter().filter(|e| !referenced(e)).map(|e| e.index))?;
        self.snapshot = meta;
        self.snapshot_data = data;
        Ok(())
    }

    /// Replaces the whole log with a snapshot received from the leader.
    ///
    /// Raft's view of the log restarts at the snapshot. On disk, entries up to
    /// `applied` stay (the ledger may refer to them, see [`LogStorage::compact`]); every
    /// later one is deleted: none was applied, so none is referenced, and those above the
    /// snapshot are a tail the snapshot replaces.
    pub fn apply_snapshot(&mut self, snap: &Snapshot, applied: u64) -> Result<(), LogStorageError> {
        let meta = snap.get_metadata().clone();
        let meta_bytes = encode(&meta);
        let cs_bytes = encode(meta.get_conf_state());
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        let hs_bytes = encode(&hs);
        self.log.write(&LogUpdate {
            truncate_from: Some(applied + 1),
            entries: Vec::new(),
            records: vec![
                (SNAPSHOT_METADATA, meta_bytes.as_slice()),
                (SNAPSHOT_DATA, snap.get_data()),
                (CONF_STATE, cs_bytes.as_slice()),
                (HARD_STATE, hs_bytes.as_slice()),
            ],
            sync: true,
        })?;
        self.entries.clear();
        self.conf_state = meta.get_conf_state().clone();
        self.snapshot = meta;
        self.snapshot_data = snap.get_data().to_vec();
        self.hard_state = hs;
        Ok(())
    }
}

impl Storage for LogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index_now() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.snapshot.index + 1;
        let lo = (low - offset) as usize;
        let hi = (high - offset) as usize;
        let mut out = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if idx < self.snapshot.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let offset = self.snapshot.index + 1;
        self.entries
            .get((idx - offset) as usize)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index_now())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot.index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot::default();
        snap.set_metadata(self.snapshot.clone());
        snap.set_data(self.snapshot_data.clone().into());
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_ledger::BlockStore;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    #[test]
    fn persisted_log_reloads_and_conflicts_truncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = BlockStore::open(dir.path()).expect("open");
            let mut s = LogStorage::open(store.consensus_log(), &[1, 2, 3]).expect("storage");
            assert_eq!(
                s.initial_state().expect("state").conf_state.voters,
                vec![1, 2, 3]
            );
            let hs = HardState {
                term: 2,
                vote: 1,
                ..Default::default()
            };
            s.persist(
                &[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 2, b"c")],
                Some(&hs),
            )
            .expect("persist");
            // A new leader's entries replace index 3 onward.
            s.persist(&[entry(3, 3, b"C"), entry(4, 3, b"d")], None)
                .expect("persist");
            assert_eq!(s.term(3).expect("term"), 3);
        }
        let store = BlockStore::open(dir.path()).expect("reopen");
        let s = LogStorage::open(store.consensus_log(), &[9]).expect("storage");
        let state = s.initial_state().expect("state");
        assert_eq!(state.hard_state.term, 2);
        assert_eq!(
            state.conf_state.voters,
            vec![1, 2, 3],
            "initial voters only once"
        );
        assert_eq!(s.last_index().expect("last"), 4);
        let got = s
            .entries(1, 5, None, GetEntriesContext::empty(false))
            .expect("entries");
        let data: Vec<&[u8]> = got.iter().map(|e| e.data.as_ref()).collect();
        assert_eq!(data, vec![&b"a"[..], b"b", b"C", b"d"]);
    }

    #[test]
    fn compaction_keeps_the_term_at_the_snapshot_and_refuses_older_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path()).expect("open");
        let mut s = LogStorage::open(store.consensus_log(), &[1]).expect("storage");
        let ents: Vec<Entry> = (1..=6).map(|i| entry(i, 1 + i / 4, b"x")).collect();
        s.persist(&ents, None).expect("persist");
        // Entries 2 and 3 carry blocks the ledger refers to: they stay on disk.
        s.compact(4, b"block 3".to_vec(), |e| e.index == 2 || e.index == 3)
            .expect("compact");
        let log = store.consensus_log();
        let on_disk: Vec<u64> = (1..=6)
            .filter(|i| log.entry(*i).expect("read").is_some())
            .collect();
        assert_eq!(on_disk, vec![2, 3, 5, 6], "only 1 and 4 are deleted");
        assert_eq!(s.first_index().expect("first"), 5);
        assert_eq!(s.term(4).expect("term"), 2);
        assert!(matches!(
            s.entries(3, 5, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let snap = s.snapshot(4, 2).expect("snapshot");
        assert_eq!(snap.get_metadata().index, 4);
        assert_eq!(snap.get_data(), b"block 3");
        drop(s);
        let s = LogStorage::open(store.consensus_log(), &[1]).expect("reload");
        assert_eq!(s.first_index().expect("first"), 5);
        assert_eq!(s.last_index().expect("last"), 6);
    }
}
