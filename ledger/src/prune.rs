//! Pruning: removing the blocks below a node's retention window, after archiving them.
//!
//! A pruned ledger is a based ledger (`base` module) whose base moved up: one step
//! ([`BlockStore::prune_below`]) removes blocks `first..below` and records, in the same
//! synced write batch, the new `first_block`, the hash of block `below - 1` (block `below`
//! links to it) and the config block in force at `below - 1` (validating and verifying
//! the blocks after it needs it, and it may be among those removed). A crash leaves the
//! old base with every block, or the new one without them — never a ledger that
//! disagrees with itself, which opening checks anyway.
//!
//! ## What else goes with the blocks
//!
//! | what | when |
//! |---|---|
//! | consensus log entries the removed blocks refer to (`logged` module) | in the same batch; the caller guarantees raft forgot them (below its snapshot) |
//! | key history below the first block | lazily, by a compaction filter on `history` (compacted by the `expiry` module's background compactor once the window turned over); reads skip it at once |
//! | tx-index entries | kept with the blocks: duplicate detection needs them for as long as the channel's tx validity window says, whatever blocks are held; entries below the expiry floor go (`expiry` module); a lookup of a pruned block answers [`LedgerError::Pruned`] |
//! | world state, commit hash | kept: they describe the tip, not the history |
//!
//! ## What the caller decides
//!
//! The store never removes its last block (a restart, Kafka's resume point and raft's
//! recovery read it) and never removes anything on its own. How far to prune — the
//! retention window, and what the consensus backend still needs — is the caller's
//! (`ordo-node`'s pruner). Archiving, when asked for, happens before the delete and is
//! durable first (`archive` module), so a crash between the two re-archives nothing and
//! loses nothing.
//!
//! The writer lock is held only for the final batch, so commits wait for one small write,
//! not for the archive; after it, the removed range is compacted so that RocksDB drops the
//! blob files that held only removed blocks.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use prost::Message;
use rocksdb::compaction_filter::Decision;
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};
use thiserror::Error;

use crate::archive::{Archive, ArchiveError};
use crate::base::{META_BASE_CONFIG, META_BASE_HASH, META_FIRST_BLOCK};
use crate::read::resolve_stored;
use crate::{logged, BlockStore, LedgerError, Tip, CF_BLOCKS, CF_CONSENSUS_LOG, CF_META};

/// What one pruning step removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneStep {
    /// The first block held before the step.
    pub from: u64,
    /// The first block held after it (blocks `from..to` were removed).
    pub to: u64,
    /// The bytes of the removed blocks as stored (a block stored by reference counts its
    /// log entry).
    pub bytes: u64,
    /// The archive segment written, when archiving (none when every removed block was
    /// already archived by a step a crash interrupted).
    pub archived: Option<PathBuf>,
}

/// Why a pruning step did nothing.
#[derive(Debug, Error)]
pub enum PruneError {
    /// Reading or writing the ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Writing the archive failed, or the archive does not continue where the ledger
    /// starts; no block was removed.
    #[error("archiving blocks {from}..{to}: {source}")]
    Archive {
        /// The first block to archive.
        from: u64,
        /// The block after the last.
        to: u64,
        /// Why.
        source: ArchiveError,
    },
    /// The step would remove the last block: a ledger always keeps it.
    #[error(
        "pruning below block {below} would remove the last block {last}: a ledger keeps at least its last block"
    )]
    WouldRemoveLast {
        /// The block asked to become the first held.
        below: u64,
        /// The last block.
        last: u64,
    },
}

/// Name of the compaction filter dropping history below the first block.
const HISTORY_FILTER: &str = "ordo-history-below-first-block";

/// The `history` compaction filter: drops entries of blocks below `floor` (the first
/// block held). A history key ends with block `u64` BE ‖ tx `u32` BE (`state` module).
pub(crate) fn history_filter(
    floor: Arc<AtomicU64>,
) -> (
    &'static str,
    impl FnMut(u32, &[u8], &[u8]) -> Decision + Send + 'static,
) {
    (
        HISTORY_FILTER,
        move |_level: u32, key: &[u8], _value: &[u8]| {
            let block = key
                .len()
                .checked_sub(12)
                .and_then(|at| key.get(at..at + 8))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            match block {
                Some(b) if b < floor.load(Ordering::Relaxed) => Decision::Remove,
                _ => Decision::Keep,
            }
        },
    )
}

impl BlockStore {
    /// Removes blocks below `below` (one step: the caller bounds the range), archiving
    /// them first into `archive` when given. `Ok(None)` when nothing lies below `below`.
    /// See the module docs for what goes with the blocks and what the caller decides;
    /// refused, removing nothing, when `below` would take the last block or the archive
    /// cannot continue where the ledger starts.
    pub fn prune_below(
        &self,
        below: u64,
        archive: Option<&Archive>,
    ) -> Result<Option<PruneStep>, PruneError> {
        let Tip { first, height, .. } = self.tip();
        if below <= first {
            return Ok(None);
        }
        if below >= height {
            return Err(PruneError::WouldRemoveLast {
                below,
                last: height.saturating_sub(1),
            });
        }
        let new_first = self.block(below)?.ok_or_else(|| {
            LedgerError::Corrupt(format!("block {below} below the height is missing"))
        })?;
        let prev_hash: ordo_proto::hash::Hash = new_first
            .header
            .as_ref()
            .and_then(|h| h.previous_hash.as_ref().try_into().ok())
            .ok_or_else(|| LedgerError::Corrupt(format!("block {below} has no previous hash")))?;
        let (config_block, _) = self.config_in_force_at(below - 1)?;

        let removed = self.removed_range(first, below, archive.is_some())?;
        let archived = match archive {
            Some(a) => self.archive_range(a, first, below, &removed.blocks, prev_hash)?,
            None => None,
        };

        let meta = self.cf(CF_META)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.cf(CF_BLOCKS)?,
            first.to_be_bytes(),
            below.to_be_bytes(),
        );
        let log = self.cf(CF_CONSENSUS_LOG)?;
        for index in &removed.log_entries {
            batch.delete_cf(log, index.to_be_bytes());
        }
        batch.put_cf(meta, META_FIRST_BLOCK, below.to_be_bytes());
        batch.put_cf(meta, META_BASE_HASH, prev_hash);
        batch.put_cf(meta, META_BASE_CONFIG, config_block.encode_to_vec());
        {
            let _writer = self
                .inner
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.tip().first != first {
                // Another step ran meanwhile (one pruner per node; tests may race).
                return Ok(None);
            }
            // Readers see the new first block before the delete, so none reads a block
            // that is about to go; a read already past the check is answered `Pruned`
            // by `checked`.
            self.set_first(below);
            let mut opts = WriteOptions::default();
            opts.set_sync(true);
            if let Err(e) = self.inner.db.write_opt(batch, &opts) {
                self.set_first(first);
                return Err(LedgerError::from(e).into());
            }
        }
        self.inner.history_floor.store(below, Ordering::Relaxed);
        tracing::info!(
            dir = %self.dir().display(),
            from = first,
            to = below,
            bytes = removed.bytes,
            archived = ?archived,
            "pruned blocks"
        );
        self.compact_removed(first, below, &removed.log_entries)?;
        Ok(Some(PruneStep {
            from: first,
            to: below,
            bytes: removed.bytes,
            archived,
        }))
    }

    fn set_first(&self, first: u64) {
        self.inner
            .tip
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .first = first;
    }

    /// The stored blocks `from..to`: their bytes (when `resolve`, for the archive), their
    /// size, and the log entries they refer to.
    fn removed_range(&self, from: u64, to: u64, resolve: bool) -> Result<Removed, LedgerError> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(to.to_be_bytes().to_vec());
        let start = from.to_be_bytes();
        let iter = self.inner.db.iterator_cf_opt(
            self.cf(CF_BLOCKS)?,
            opts,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Removed::default();
        let mut expected = from;
        for item in iter {
            let (key, value) = item?;
            if key.as_ref() != expected.to_be_bytes() {
                return self.checked(
                    Some(expected),
                    Err(LedgerError::Corrupt(format!(
                        "expected block {expected}, found key {key:02x?}"
                    ))),
                );
            }
            let position = logged::position_of(&value);
            if let Some(at) = position {
                out.log_entries.push(at.index);
            }
            if resolve || position.is_some() {
                let bytes = self.checked(
                    Some(expected),
                    resolve_stored(&self.inner.db, expected, value.into_vec()),
                )?;
                out.bytes += bytes.len() as u64;
                if resolve {
                    out.blocks.push(bytes);
                }
            } else {
                out.bytes += value.len() as u64;
            }
            expected += 1;
        }
        if expected != to {
            return self.checked(
                Some(expected),
                Err(LedgerError::Corrupt(format!(
                    "block {expected} is below the height but missing"
                ))),
            );
        }
        Ok(out)
    }

    /// Archives blocks `from..to` (their bytes in `blocks`) from where the archive ends.
    fn archive_range(
        &self,
        archive: &Archive,
        from: u64,
        to: u64,
        blocks: &[Bytes],
        last_hash: ordo_proto::hash::Hash,
    ) -> Result<Option<PathBuf>, PruneError> {
        let failed = |source| PruneError::Archive { from, to, source };
        let next = archive.next_block().map_err(failed)?;
        let start = match next {
            None => from,
            Some(n) if n < from => {
                return Err(failed(ArchiveError::Layout {
                    dir: archive.dir().to_path_buf(),
                    detail: format!(
                        "it ends at block {} but the ledger starts at {from}: blocks {n}..{from} were pruned without archiving (move this archive aside to start a new one)",
                        n - 1
                    ),
                }))
            }
            // A step archived further and was cut short before its delete (the window
            // has grown since): these blocks are archived already.
            Some(n) => n.min(to),
        };
        if start == to {
            return Ok(None);
        }
        let skip = (start - from) as usize;
        let base = if start == from { self.base()? } else { None };
        archive
            .write_segment(start, &blocks[skip..], last_hash, base.as_ref())
            .map(Some)
            .map_err(failed)
    }

    /// Compacts the removed range so its files (and blob files) can go.
    fn compact_removed(&self, from: u64, to: u64, log_entries: &[u64]) -> Result<(), LedgerError> {
        self.inner.db.compact_range_cf(
            self.cf(CF_BLOCKS)?,
            Some(from.to_be_bytes()),
            Some(to.to_be_bytes()),
        );
        if let (Some(lo), Some(hi)) = (log_entries.iter().min(), log_entries.iter().max()) {
            self.inner.db.compact_range_cf(
                self.cf(CF_CONSENSUS_LOG)?,
                Some(lo.to_be_bytes()),
                Some((hi + 1).to_be_bytes()),
            );
        }
        Ok(())
    }

    /// Bytes the blocks held take, as RocksDB counts them (table files, live blob data and
    /// memtables — written to the WAL — of `blocks` and of the consensus log, which holds
    /// a raft orderer's blocks): what a retention budget in bytes is measured against.
    pub fn chain_bytes(&self) -> Result<u64, LedgerError> {
        let mut total = 0u64;
        for name in [CF_BLOCKS, CF_CONSENSUS_LOG] {
            let cf = self.cf(name)?;
            let prop = |p: &str| -> Result<u64, LedgerError> {
                Ok(self.inner.db.property_int_value_cf(cf, p)?.unwrap_or(0))
            };
            let blobs = prop("rocksdb.live-blob-file-size")?
                .saturating_sub(prop("rocksdb.live-blob-file-garbage-size")?);
            total += prop("rocksdb.live-sst-files-size")?
                + blobs
                + prop("rocksdb.cur-size-all-mem-tables")?;
        }
        Ok(total)
    }
}

/// What a step removes.
#[derive(Default)]
struct Removed {
    blocks: Vec<Bytes>,
    bytes: u64,
    log_entries: Vec<u64>,
}

#[cfg(test)]
mod tests;
