//! The durable copy of a channel's raft state: the channel's [`ConsensusLog`] (RocksDB
//! column families `raft_log` and `raft_state`), written one [`LogWrite`] at a time.

use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use ordo_ledger::{ConsensusLog, LogUpdate};

use super::storage::{LogStorageError, LogView, LogWrite};

/// State record holding the encoded [`HardState`].
const HARD_STATE: &str = "hard_state";
/// State record holding the encoded [`SnapshotMetadata`] of the last compaction point
/// (its conf state is the membership in force there).
const SNAPSHOT_METADATA: &str = "snapshot_metadata";
/// State record holding the latest [`ConfState`] applied from the log.
const CONF_STATE: &str = "conf_state";
/// State record holding the snapshot's data (the last block number and hash).
const SNAPSHOT_DATA: &str = "snapshot_data";

fn decode<M: protobuf::Message>(what: &str, bytes: &[u8]) -> Result<M, LogStorageError> {
    M::parse_from_bytes(bytes).map_err(|e| LogStorageError::Corrupt(format!("{what}: {e}")))
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    // Encoding a well-formed in-memory message only fails for messages over 2 GiB.
    m.write_to_bytes().unwrap_or_default()
}

/// The block the last raft snapshot recorded in `log` names, if a snapshot was taken (or
/// installed): what pruning must keep (`Chain::prune_ceiling`).
pub fn snapshot_block(log: &ConsensusLog) -> Result<Option<u64>, LogStorageError> {
    let Some(data) = log.record(SNAPSHOT_DATA)? else {
        return Ok(None);
    };
    if data.is_empty() {
        return Ok(None);
    }
    super::parse_snapshot_data(&data)
        .map(|(number, _)| Some(number))
        .ok_or_else(|| LogStorageError::Corrupt(format!("snapshot data of {} bytes", data.len())))
}

/// A channel's raft state on disk.
#[derive(Clone)]
pub struct DiskLog {
    log: ConsensusLog,
}

impl DiskLog {
    /// Loads the raft state of a channel as a [`LogView`]. A channel that never ran raft
    /// starts with `initial_voters` as its membership, recorded at once (synced) so that
    /// a restart never takes different ones.
    pub fn load(
        log: ConsensusLog,
        initial_voters: &[u64],
    ) -> Result<(Self, LogView), LogStorageError> {
        let hard_state: HardState = match log.record(HARD_STATE)? {
            Some(b) => decode("hard state", &b)?,
            None => HardState::default(),
        };
        let stored_meta = log.record(SNAPSHOT_METADATA)?;
        let stored_conf = log.record(CONF_STATE)?;
        let snapshot: SnapshotMetadata = match &stored_meta {
            Some(b) => decode("snapshot metadata", b)?,
            None => {
                let mut m = SnapshotMetadata::default();
                m.mut_conf_state().voters = initial_voters.to_vec();
                m
            }
        };
        let conf_state: ConfState = match &stored_conf {
            Some(b) => decode("conf state", b)?,
            None => snapshot.get_conf_state().clone(),
        };
        if stored_meta.is_none() && stored_conf.is_none() {
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
        let view = LogView::from_parts(hard_state, conf_state, snapshot, snapshot_data, entries)?;
        Ok((Self { log }, view))
    }

    /// Makes `w` durable (synced, except a [`LogWrite::Commit`]).
    pub fn write(&self, w: &LogWrite) -> Result<(), LogStorageError> {
        match w {
            LogWrite::Append {
                truncate_from,
                entries,
                hard_state,
            } => {
                let encoded: Vec<(u64, Vec<u8>)> =
                    entries.iter().map(|e| (e.index, encode(e))).collect();
                let hs_bytes = hard_state.as_ref().map(encode);
                let mut update = LogUpdate {
                    truncate_from: *truncate_from,
                    entries: encoded.iter().map(|(i, b)| (*i, b.as_slice())).collect(),
                    records: Vec::new(),
                    sync: true,
                };
                if let Some(b) = &hs_bytes {
                    update.records.push((HARD_STATE, b.as_slice()));
                }
                self.log.write(&update)?;
            }
            LogWrite::Commit(hs) => {
                let bytes = encode(hs);
                self.log.write(&LogUpdate {
                    records: vec![(HARD_STATE, bytes.as_slice())],
                    sync: false,
                    ..LogUpdate::default()
                })?;
            }
            LogWrite::ConfState(cs) => {
                let bytes = encode(cs);
                self.log.write(&LogUpdate {
                    records: vec![(CONF_STATE, bytes.as_slice())],
                    sync: true,
                    ..LogUpdate::default()
                })?;
            }
            LogWrite::Compact {
                meta,
                data,
                discard,
            } => {
                let meta_bytes = encode(meta);
                self.log.write(&LogUpdate {
                    records: vec![
                        (SNAPSHOT_METADATA, meta_bytes.as_slice()),
                        (SNAPSHOT_DATA, data.as_slice()),
                    ],
                    sync: true,
                    ..LogUpdate::default()
                })?;
                self.log.discard(discard.iter().copied())?;
            }
            LogWrite::Restart {
                meta,
                data,
                hard_state,
                keep_to,
            } => {
                let meta_bytes = encode(meta);
                let cs_bytes = encode(meta.get_conf_state());
                let hs_bytes = encode(hard_state);
                self.log.write(&LogUpdate {
                    truncate_from: Some(keep_to + 1),
                    entries: Vec::new(),
                    records: vec![
                        (SNAPSHOT_METADATA, meta_bytes.as_slice()),
                        (SNAPSHOT_DATA, data.as_slice()),
                        (CONF_STATE, cs_bytes.as_slice()),
                        (HARD_STATE, hs_bytes.as_slice()),
                    ],
                    sync: true,
                })?;
            }
        }
        Ok(())
    }
}
