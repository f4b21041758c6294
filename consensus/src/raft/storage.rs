//! Raft's log and state for one channel, as two halves that never disagree: the
//! in-memory [`LogView`] the engine's `RawNode` reads, and the durable copy a driver keeps
//! ([`super::disk::DiskLog`] in RocksDB, or a simulator's memory).
//!
//! Every change is one [`LogWrite`], planned by the view (a pure function of what it
//! holds), executed by the driver against the durable copy, and applied to the view with
//! [`LogView::apply`]. The engine applies a write to its view when it emits the write as a
//! command; the driver executes commands in order and stops at the first that fails, so
//! nothing that depends on a write (a message that promises it, a block that refers to
//! it) leaves the node before the write is durable, and a crash loses the view together
//! with everything that was not.
//!
//! Every entry since the last snapshot is kept in memory — the snapshot interval bounds
//! how many there are — so raft-rs reads never touch the disk.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// One change to the raft state, applied alike to the durable copy and to the view.
#[derive(Debug, Clone, PartialEq)]
pub enum LogWrite {
    /// New entries — after deleting every entry from `truncate_from` on (a follower
    /// replacing a conflicting tail) — and/or a new hard state. Synced.
    Append {
        /// First index of a tail the entries replace.
        truncate_from: Option<u64>,
        /// The entries, contiguous.
        entries: Vec<Entry>,
        /// The hard state, when it changed.
        hard_state: Option<HardState>,
    },
    /// A new commit index from a light ready. Not synced: raft recomputes the commit
    /// index after a crash (and [`super::recovery`] raises it where the ledger shows
    /// more was applied).
    Commit(HardState),
    /// A membership change applied from the log. Synced before its config block is
    /// written, so applying it again after a crash changes nothing.
    ConfState(ConfState),
    /// A snapshot recorded at `meta.index`: raft forgets the entries up to it; on disk
    /// only `discard` go (entries that carry blocks belong to the ledger, see
    /// the crash-safety rules in [`super`]). Synced.
    Compact {
        /// The snapshot's metadata (index, term, membership).
        meta: SnapshotMetadata,
        /// The snapshot's data (the last block number and hash).
        data: Vec<u8>,
        /// Entries deleted from disk.
        discard: Vec<u64>,
    },
    /// The whole log replaced by a snapshot (a leader's, or recovery's). On disk every
    /// entry above `keep_to` is deleted; those up to it may be referenced by the ledger.
    /// Synced.
    Restart {
        /// The snapshot's metadata; its conf state becomes the membership.
        meta: SnapshotMetadata,
        /// The snapshot's data.
        data: Vec<u8>,
        /// The hard state after it (commit and term at least the snapshot's).
        hard_state: HardState,
        /// The last entry kept on disk.
        keep_to: u64,
    },
}

/// What a [`LogWrite`] could not be planned from.
#[derive(Debug, thiserror::Error)]
pub enum LogStorageError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] ordo_ledger::LedgerError),
    /// A stored record does not decode, or the log contradicts itself.
    #[error("corrupt raft state: {0}")]
    Corrupt(String),
}

/// raft-rs storage for one channel: the raft state as the engine sees it.
#[derive(Debug, Clone, Default)]
pub struct LogView {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: SnapshotMetadata,
    snapshot_data: Vec<u8>,
    /// Entries after `snapshot.index`, contiguous.
    entries: Vec<Entry>,
    /// Bytes of data in `entries` (drives snapshot creation).
    entry_bytes: u64,
}

impl LogView {
    /// The view of a group that never ran: `voters` are its founding membership.
    pub fn founding(voters: &[u64]) -> Self {
        let mut snapshot = SnapshotMetadata::default();
        snapshot.mut_conf_state().voters = voters.to_vec();
        Self {
            conf_state: snapshot.get_conf_state().clone(),
            snapshot,
            ..Self::default()
        }
    }

    /// A view from loaded parts; the entries must follow the snapshot contiguously.
    pub fn from_parts(
        hard_state: HardState,
        conf_state: ConfState,
        snapshot: SnapshotMetadata,
        snapshot_data: Vec<u8>,
        entries: Vec<Entry>,
    ) -> Result<Self, LogStorageError> {
        for (k, e) in entries.iter().enumerate() {
            if e.index != snapshot.index + 1 + k as u64 {
                return Err(LogStorageError::Corrupt(format!(
                    "entry {} found where {} belongs (the snapshot ends at {})",
                    e.index,
                    snapshot.index + 1 + k as u64,
                    snapshot.index
                )));
            }
        }
        let entry_bytes = entries.iter().map(|e| e.data.len() as u64).sum();
        Ok(Self {
            hard_state,
            conf_state,
            snapshot,
            snapshot_data,
            entries,
            entry_bytes,
        })
    }

    /// Index of the last entry (or of the snapshot when the log is empty).
    pub fn last_index_now(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.index)
            .unwrap_or(self.snapshot.index)
    }

    /// Index of the last compaction point.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.index
    }

    /// The current hard state (term, vote, commit).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The membership in force.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Bytes of the entries held since the last snapshot (drives snapshot creation).
    pub fn bytes_since_snapshot(&self) -> u64 {
        self.entry_bytes
    }

    /// The entry at `index`, if the view holds it.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        let offset = self.snapshot.index + 1;
        index
            .checked_sub(offset)
            .and_then(|k| self.entries.get(k as usize))
    }

    /// The write that appends `entries` (replacing any conflicting tail) and records
    /// `hard_state`; `None` when there is nothing to write.
    pub fn append(&self, entries: Vec<Entry>, hard_state: Option<HardState>) -> Option<LogWrite> {
        if entries.is_empty() && hard_state.is_none() {
            return None;
        }
        let truncate_from = entries
            .first()
            .map(|e| e.index)
            .filter(|first| *first <= self.last_index_now());
        Some(LogWrite::Append {
            truncate_from,
            entries,
            hard_state,
        })
    }

    /// The write that records commit index `commit` (not synced).
    pub fn commit(&self, commit: u64) -> LogWrite {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        LogWrite::Commit(hs)
    }

    /// The synced write that raises the commit index to `commit`; `None` when it is
    /// there already.
    pub fn raise_commit(&self, commit: u64) -> Option<LogWrite> {
        if commit <= self.hard_state.commit {
            return None;
        }
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        Some(LogWrite::Append {
            truncate_from: None,
            entries: Vec::new(),
            hard_state: Some(hs),
        })
    }

    /// The write that compacts the log up to `index` (applied, so in the ledger),
    /// recording a snapshot there whose data is `data`. Entries for which `referenced`
    /// is true stay on disk (the ledger refers to them). `None` when `index` is not
    /// above the last snapshot or beyond the log.
    pub fn compaction(
        &self,
        index: u64,
        data: Vec<u8>,
        referenced: impl Fn(&Entry) -> bool,
    ) -> Result<Option<LogWrite>, LogStorageError> {
        if index <= self.snapshot.index || index > self.last_index_now() {
            return Ok(None);
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
        let upto = (index - self.snapshot.index) as usize;
        let discard = self.entries[..upto.min(self.entries.len())]
            .iter()
            .filter(|e| !referenced(e))
            .map(|e| e.index)
            .collect();
        Ok(Some(LogWrite::Compact {
            meta,
            data,
            discard,
        }))
    }

    /// The write that replaces the whole log with `snap`, keeping on disk the entries up
    /// to `keep_to` (applied: the ledger may refer to them; every later one was never
    /// applied, so none is referenced, and those above the snapshot are a tail the
    /// snapshot replaces).
    pub fn restart(&self, snap: &Snapshot, keep_to: u64) -> LogWrite {
        let meta = snap.get_metadata().clone();
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        LogWrite::Restart {
            meta,
            data: snap.get_data().to_vec(),
            hard_state: hs,
            keep_to,
        }
    }

    /// Shows `w` to raft (after, or as, the durable copy takes it).
    pub fn apply(&mut self, w: &LogWrite) {
        match w {
            LogWrite::Append {
                entries,
                hard_state,
                ..
            } => {
                if let Some(first) = entries.first() {
                    let keep = first.index.saturating_sub(self.snapshot.index + 1) as usize;
                    for e in self.entries.drain(keep.min(self.entries.len())..) {
                        self.entry_bytes -= e.data.len() as u64;
                    }
                    self.entry_bytes += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
                    self.entries.extend_from_slice(entries);
                }
                if let Some(hs) = hard_state {
                    self.hard_state = hs.clone();
                }
            }
            LogWrite::Commit(hs) => self.hard_state = hs.clone(),
            LogWrite::ConfState(cs) => self.conf_state = cs.clone(),
            LogWrite::Compact { meta, data, .. } => {
                let drop = (meta.index.saturating_sub(self.snapshot.index)) as usize;
                for e in self.entries.drain(..drop.min(self.entries.len())) {
                    self.entry_bytes -= e.data.len() as u64;
                }
                self.snapshot = meta.clone();
                self.snapshot_data = data.clone();
            }
            LogWrite::Restart {
                meta,
                data,
                hard_state,
                ..
            } => {
                self.entries.clear();
                self.entry_bytes = 0;
                self.conf_state = meta.get_conf_state().clone();
                self.snapshot = meta.clone();
                self.snapshot_data = data.clone();
                self.hard_state = hard_state.clone();
            }
        }
    }
}

impl Storage for LogView {
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
        self.entry(idx)
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
    use super::super::disk::DiskLog;
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

    /// Plans `w`'s write on the view, makes it durable, then shows it.
    fn write(disk: &DiskLog, view: &mut LogView, w: Option<LogWrite>) {
        let w = w.expect("something to write");
        disk.write(&w).expect("durable");
        view.apply(&w);
    }

    #[test]
    fn persisted_log_reloads_and_conflicts_truncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = BlockStore::open(dir.path()).expect("open");
            let (disk, mut s) = DiskLog::load(store.consensus_log(), &[1, 2, 3]).expect("load");
            assert_eq!(
                s.initial_state().expect("state").conf_state.voters,
                vec![1, 2, 3]
            );
            let hs = HardState {
                term: 2,
                vote: 1,
                ..Default::default()
            };
            let w = s.append(
                vec![entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 2, b"c")],
                Some(hs),
            );
            write(&disk, &mut s, w);
            // A new leader's entries replace index 3 onward.
            let w = s.append(vec![entry(3, 3, b"C"), entry(4, 3, b"d")], None);
            write(&disk, &mut s, w);
            assert_eq!(s.term(3).expect("term"), 3);
            assert_eq!(s.bytes_since_snapshot(), 4);
        }
        let store = BlockStore::open(dir.path()).expect("reopen");
        let (_, s) = DiskLog::load(store.consensus_log(), &[9]).expect("load");
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
        let (disk, mut s) = DiskLog::load(store.consensus_log(), &[1]).expect("load");
        let ents: Vec<Entry> = (1..=6).map(|i| entry(i, 1 + i / 4, b"x")).collect();
        let w = s.append(ents, None);
        write(&disk, &mut s, w);
        // Entries 2 and 3 carry blocks the ledger refers to: they stay on disk.
        let w = s
            .compaction(4, b"block 3".to_vec(), |e| e.index == 2 || e.index == 3)
            .expect("planned");
        write(&disk, &mut s, w);
        let log = store.consensus_log();
        let on_disk: Vec<u64> = (1..=6)
            .filter(|i| log.entry(*i).expect("read").is_some())
            .collect();
        assert_eq!(on_disk, vec![2, 3, 5, 6], "only 1 and 4 are deleted");
        assert_eq!(s.first_index().expect("first"), 5);
        assert_eq!(s.term(4).expect("term"), 2);
        assert_eq!(s.bytes_since_snapshot(), 2);
        assert!(matches!(
            s.entries(3, 5, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let snap = s.snapshot(4, 2).expect("snapshot");
        assert_eq!(snap.get_metadata().index, 4);
        assert_eq!(snap.get_data(), b"block 3");
        let (_, s) = DiskLog::load(store.consensus_log(), &[1]).expect("reload");
        assert_eq!(s.first_index().expect("first"), 5);
        assert_eq!(s.last_index().expect("last"), 6);
    }

    #[test]
    fn a_restart_keeps_applied_entries_on_disk_and_drops_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path()).expect("open");
        let (disk, mut s) = DiskLog::load(store.consensus_log(), &[1]).expect("load");
        let w = s.append((1..=5).map(|i| entry(i, 1, b"x")).collect(), None);
        write(&disk, &mut s, w);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 8;
        snap.mut_metadata().term = 2;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2];
        let w = s.restart(&snap, 3);
        write(&disk, &mut s, Some(w));
        let log = store.consensus_log();
        let on_disk: Vec<u64> = (1..=5)
            .filter(|i| log.entry(*i).expect("read").is_some())
            .collect();
        assert_eq!(on_disk, vec![1, 2, 3]);
        assert_eq!(s.first_index().expect("first"), 9);
        assert_eq!(s.hard_state().commit, 8);
        let (_, reloaded) = DiskLog::load(store.consensus_log(), &[]).expect("reload");
        assert_eq!(reloaded.conf_state().voters, vec![1, 2]);
        assert_eq!(reloaded.last_index_now(), 8);
    }
}
