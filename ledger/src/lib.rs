//! # ordo-ledger: the append-only block store of one channel
//!
//! A [`BlockStore`] is one RocksDB instance in one directory per channel ledger. It holds
//! the channel's hash-linked chain of blocks and two things derived from it, all in three
//! column families:
//!
//! | column family | key | value |
//! |---|---|---|
//! | [`CF_BLOCKS`] | block number, `u64` big-endian | the block, protobuf-encoded exactly once at append — or, for a block already in the consensus log, a reference to it plus the metadata (`logged` module) |
//! | [`CF_TXIDS`] | transaction id (UTF-8 bytes) | block number `u64` BE ‖ index within the block `u32` BE, then on a peer the validation code (1 byte) and the signed timestamp (`u64` BE, ms; see the `expiry` module) |
//! | [`CF_META`] | `height` | number of blocks, `u64` BE |
//! | [`CF_META`] | `last_hash` | hash of block `height - 1`, 32 bytes |
//! | [`CF_META`] | `tx_index` | `off` when created with [`TxIndex::Off`] (an orderer's ledger) |
//! | [`CF_META`] | `expiry_floor_ms` | a peer's expiry floor, `u64` BE (`expiry` module) |
//! | [`CF_META`] | `format` | the layout's version, `u32` BE ([`LEDGER_FORMAT`]; see the `format` module) |
//! | [`CF_STATE`], [`CF_HISTORY`] | a peer's world state and key history | see the `state` module |
//!
//! An orderer appends blocks with [`BlockStore::append`]; a peer commits them with
//! [`BlockStore::commit`], which adds the block's validation codes to the tx index and its
//! state changes, history and commit hash to the same write batch.
//!
//! Big-endian keys make RocksDB's byte order the numeric order, so a range of blocks is one
//! forward iterator ([`BlockStore::blocks`]).
//!
//! ## Durability contract
//!
//! [`BlockStore::append`] writes the block, its transaction-index entries and the new
//! `height`/`last_hash` in **one** RocksDB write batch with `sync = true`. The batch is
//! atomic across column families, so a crash at any point (even `SIGKILL` or power loss
//! after the sync) leaves either the whole block committed or nothing of it. When `append`
//! returns `Ok`, the block is on disk: callers may acknowledge it to others (the orderer's
//! `committed` ack mode and the Deliver service rely on this). The in-memory height and the
//! height watch ([`BlockStore::subscribe`]) move only after the sync, so a reader never sees
//! a block that a crash could take back.
//!
//! A rejected block ([`LedgerError::WrongNumber`], [`LedgerError::BrokenChain`],
//! [`LedgerError::InvalidBlock`]) writes nothing.
//!
//! [`BlockStore::open`] recovers height and last hash from `meta` and cross-checks them
//! against the stored chain tip (the block at `height - 1` exists and hashes to `last_hash`;
//! no block is stored at or beyond `height`); any mismatch is [`LedgerError::Corrupt`],
//! because serving a ledger that disagrees with itself would fork the channel.
//!
//! ## Integrity
//!
//! Every ledger records its format version and refuses a newer one (`format` module).
//! Every block read passes RocksDB's checksums; damage becomes [`LedgerError::Corrupt`]
//! naming the channel, the block and the file, and the store remembers its first
//! [`LedgerFault`] for health checks and metrics ([`fault`]). A background [`scrub`]
//! reads every block again and again so damage shows before a client asks; offline,
//! `ordo ledger verify` checks a stopped node's ledgers (see `ordo_peer::replay_check`).
//!
//! ## Concurrency
//!
//! A `BlockStore` is cheap to clone (an `Arc`) and may be shared between tasks and threads.
//! There is one logical writer per channel; `append` additionally serialises concurrent
//! callers with a mutex so that the check-then-write sequence cannot interleave. Reads do
//! not take that mutex. The calls are blocking (RocksDB and `fsync`): async callers should
//! run `append` on a blocking thread when the latency matters.
//!
//! ## Transaction index
//!
//! Every entry of a block's data that decodes as an [`Envelope`] whose [`Payload`] header
//! carries a non-empty `tx_id` is indexed. The first location of a tx id wins, both across
//! blocks and within a block: a duplicate is still stored in its block (the ledger records
//! what was ordered) but the index keeps pointing at the first occurrence, which is the one
//! validators treat as authoritative (later ones are `DUPLICATE_TXID`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use ordo_proto::block::{self as chain, BlockError, GENESIS_PREVIOUS_HASH};
use ordo_proto::hash::Hash;
use ordo_proto::pb::common::Block;
use prost::Message;
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBCompactionStyle, DBCompressionType,
    DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};
use thiserror::Error;
use tokio::sync::watch;

pub mod archive;
pub mod backup;
mod base;
pub mod blob_files;
pub mod compare;
pub mod consensus_log;
pub mod dirs;
pub mod expiry;
pub mod fault;
mod format;
mod in_force;
mod logged;
mod open;
pub mod prune;
pub mod pruner;
mod read;
pub mod scrub;
pub mod snapshot;
mod state;
mod tx_index;
pub use backup::{BackupError, BackupWriter, Manifest};
pub use base::Base;
pub use compare::{Difference, REPLAYED_COLUMNS};
pub use consensus_log::{ConsensusLog, LogUpdate, CF_CONSENSUS_LOG, CF_CONSENSUS_STATE};
pub use dirs::ChannelDirs;
pub use fault::LedgerFault;
pub use format::LEDGER_FORMAT;
pub use logged::LogPosition;
pub use prune::{PruneError, PruneStep};
pub use state::{HistoryEntry, StateCommit, StateWrite, Version, VersionedValue};
pub use tx_index::{TxIndex, TxLocation};

use format::settle_format;
#[cfg(test)]
use open::cf_descriptors;
use open::{cf_descriptors_with, db_options, recover_tip};
use read::{decode_block, resolve_stored, BlockRange};
use tx_index::{first_occurrences, settle_tx_index};

/// Column family holding the blocks, keyed by big-endian block number.
pub const CF_BLOCKS: &str = "blocks";
/// Column family mapping a transaction id to its first location (block, index).
pub const CF_TXIDS: &str = "txids";
/// Column family holding the chain tip (`height`, `last_hash`), written with every block.
pub const CF_META: &str = "meta";
/// Column family of a peer's world state: (namespace, key) → version ‖ value.
pub const CF_STATE: &str = "state";
/// Column family of a peer's key history: (namespace, key, block, tx) → write or delete.
pub const CF_HISTORY: &str = "history";
/// Every column family of a ledger directory, so tools can open one read-only. An
/// orderer's ledger leaves `state` and `history` empty, a peer's (and a solo orderer's)
/// the consensus log.
pub const COLUMN_FAMILIES: [&str; 7] = [
    CF_BLOCKS,
    CF_TXIDS,
    CF_META,
    CF_STATE,
    CF_HISTORY,
    CF_CONSENSUS_LOG,
    CF_CONSENSUS_STATE,
];

/// `meta` key of the number of blocks (`u64` big-endian).
const META_HEIGHT: &[u8] = b"height";
/// `meta` key of the hash of the last block (32 bytes).
const META_LAST_HASH: &[u8] = b"last_hash";
/// `meta` key present (value `off`) when the ledger was created without a tx index.
const META_TX_INDEX: &[u8] = b"tx_index";
/// Length of a `txids` value: block number (8) ‖ index within the block (4).
const TX_LOCATION_LEN: usize = 12;

/// The database type. Named explicitly (not `rocksdb::DB`) so that another crate turning on
/// rocksdb's `multi-threaded-cf` feature cannot change the column-family handle type here.
type Db = rocksdb::DBWithThreadMode<rocksdb::SingleThreaded>;

/// Why a ledger operation failed.
#[derive(Debug, Error)]
pub enum LedgerError {
    /// RocksDB failed (IO error, lock held by another process, ...). Nothing about the
    /// chain is known to be wrong; the operation may be retried or the node stopped.
    #[error("storage: {0}")]
    Storage(#[from] rocksdb::Error),
    /// The appended block is not the next one: its number differs from the height.
    #[error("block number {got} is not the next block number {expected}")]
    WrongNumber {
        /// The number the next block must have (the current height).
        expected: u64,
        /// The number the block carries.
        got: u64,
    },
    /// The appended block does not link to the chain: its previous hash is not the hash of
    /// the last block (or not [`GENESIS_PREVIOUS_HASH`] for block 0).
    #[error("block {number}: previous hash does not match the hash of the last block")]
    BrokenChain {
        /// The block's number.
        number: u64,
    },
    /// The appended block is malformed (no header, bad hash lengths, data hash not the
    /// Merkle root of its data, ...).
    #[error("invalid block: {0}")]
    InvalidBlock(String),
    /// The ledger was created without a transaction index ([`TxIndex::Off`], an orderer's
    /// ledger), so it cannot answer lookups by tx id.
    #[error("this ledger keeps no transaction index (an orderer's ledger)")]
    NotIndexed,
    /// The stored data contradicts itself (undecodable block, meta inconsistent with the
    /// blocks, index entry of the wrong size). The ledger must not be served as is.
    #[error("corrupt ledger: {0}")]
    Corrupt(String),
    /// The block is below the first block this ledger holds: the ledger was joined from a
    /// snapshot taken above it, or the block was pruned. Other nodes (or an archive) may
    /// hold it; this one never will again.
    #[error("block {number} is not held here: the lowest block held is {first}")]
    Pruned {
        /// The block asked for.
        number: u64,
        /// The lowest block number held.
        first: u64,
    },
    /// The ledger was written by a newer build, in a format this one does not know
    /// (`format` module). No block, index entry or state was read or written; run the
    /// newer build.
    #[error(
        "the ledger has format {found}, newer than the format {supported} this build knows: \
         run the build that wrote it (or restore a backup taken before the upgrade)"
    )]
    NewerFormat {
        /// The format recorded in the ledger.
        found: u32,
        /// The newest format this build reads ([`LEDGER_FORMAT`]).
        supported: u32,
    },
}

/// The chain tip as known in memory; moves only after the write that makes it durable.
#[derive(Debug, Clone, Copy)]
struct Tip {
    /// The lowest block number held (`base` module); 0 unless joined from a snapshot.
    first: u64,
    height: u64,
    last_hash: Option<Hash>,
}

struct Inner {
    pub(crate) db: Db,
    dir: PathBuf,
    tip: RwLock<Tip>,
    /// Whether tx ids are indexed (fixed when the ledger was created).
    tx_index: TxIndex,
    /// Serialises `append`: the checks against the tip and the write must not interleave
    /// with another append. A std mutex: it is never held across an `.await`.
    writer: Mutex<()>,
    /// Height watch; `send_replace` keeps it updated even with no receivers.
    height_tx: watch::Sender<u64>,
    /// The first corruption found since the store was opened (`fault` module).
    fault: Mutex<Option<LedgerFault>>,
    /// The background scrub's progress (`scrub` module).
    scrub: Mutex<scrub::ScrubStatus>,
    /// The first block held, as the `history` compaction filter sees it (`prune`
    /// module): history of blocks below it is dropped when compacted.
    history_floor: Arc<AtomicU64>,
    /// The expiry floor (`expiry` module), as readers and the `txids` compaction filter
    /// see it: moved only after the write that records it.
    expiry_floor: Arc<AtomicU64>,
    /// Where the last expiry compactions left off (`expiry` module).
    compacted_at: Mutex<expiry::CompactedAt>,
    /// The background pruner's work on this ledger (`pruner` module).
    prune: Mutex<pruner::PruneStatus>,
}

/// The block store of one channel: append-only, hash-linked, indexed by tx id, durable at
/// every append. See the [crate docs](crate) for the layout and the durability contract.
///
/// Cloning is cheap and every clone is the same store. The database closes when the last
/// clone is dropped.
#[derive(Clone)]
pub struct BlockStore {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tip = self.tip();
        f.debug_struct("BlockStore")
            .field("dir", &self.inner.dir)
            .field("height", &tip.height)
            .finish_non_exhaustive()
    }
}

impl BlockStore {
    /// Opens the ledger in `dir`, creating an empty one if missing, and recovers the chain
    /// tip. Fails with [`LedgerError::Corrupt`] when `meta` disagrees with the stored blocks,
    /// and with [`LedgerError::Storage`] when the directory is in use by another open store.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        Self::open_with(dir, TxIndex::On)
    }

    /// [`BlockStore::open`], creating a missing (or empty) ledger with the given
    /// [`TxIndex`] choice. An existing ledger keeps the choice it was created with,
    /// whatever `tx_index` says.
    pub fn open_with(dir: &Path, tx_index: TxIndex) -> Result<Self, LedgerError> {
        // 0 until the tip is known: the filter drops nothing before then.
        let history_floor = Arc::new(AtomicU64::new(0));
        let expiry_floor = Arc::new(AtomicU64::new(0));
        let db = Db::open_cf_descriptors(
            &db_options(),
            dir,
            cf_descriptors_with(history_floor.clone(), expiry_floor.clone()),
        )?;
        let format = settle_format(&db).map_err(|e| fault::at_open(dir, e))?;
        let tip = recover_tip(&db).map_err(|e| fault::at_open(dir, e))?;
        history_floor.store(tip.first, std::sync::atomic::Ordering::Relaxed);
        let floor = expiry::read_floor(&db).map_err(|e| fault::at_open(dir, e))?;
        expiry_floor.store(floor, std::sync::atomic::Ordering::Release);
        let tx_index = settle_tx_index(&db, tip.height, tx_index)?;
        tracing::info!(
            dir = %dir.display(),
            height = tip.height,
            ?tx_index,
            ?format,
            "opened ledger"
        );
        let (height_tx, _) = watch::channel(tip.height);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                dir: dir.to_path_buf(),
                tip: RwLock::new(tip),
                tx_index,
                writer: Mutex::new(()),
                height_tx,
                fault: Mutex::new(None),
                scrub: Mutex::new(scrub::ScrubStatus::default()),
                history_floor,
                expiry_floor,
                compacted_at: Mutex::new(expiry::CompactedAt::default()),
                prune: Mutex::new(pruner::PruneStatus::default()),
            }),
        })
    }

    /// Deletes the ledger in `dir` (when a channel is removed). Succeeds if there is none.
    /// Every [`BlockStore`] on `dir` must have been dropped first: RocksDB refuses to
    /// destroy a database that is open.
    pub fn destroy(dir: &Path) -> Result<(), LedgerError> {
        if !dir.exists() {
            return Ok(());
        }
        Db::destroy(&Options::default(), dir)?;
        tracing::info!(dir = %dir.display(), "destroyed ledger");
        Ok(())
    }

    /// Appends `block` as the next block and makes it durable before returning.
    ///
    /// Rejects, writing nothing: a number other than the height
    /// ([`LedgerError::WrongNumber`]), a previous hash other than the last block's hash
    /// ([`LedgerError::BrokenChain`]), a structurally invalid block
    /// ([`LedgerError::InvalidBlock`]). Otherwise writes the block bytes, its tx index
    /// entries and the new tip in one synced write batch, then moves the in-memory tip and
    /// the height watch. Concurrent callers are serialised.
    pub fn append(&self, block: &Block) -> Result<(), LedgerError> {
        self.write_block(block, None, DataCheck::Verify, None)
    }

    /// [`BlockStore::append`] for a block the caller has just built with
    /// [`ordo_proto::block::build`], whose data hash is the Merkle root of its data by
    /// construction: everything is checked but the Merkle root, which is not recomputed
    /// (it costs a SHA-256 pass over every envelope, ~5% of an orderer's CPU).
    pub fn append_built(&self, block: &Block) -> Result<(), LedgerError> {
        self.write_block(block, None, DataCheck::TrustBuilder, None)
    }

    /// [`BlockStore::append`] for a block whose bytes without metadata are already on disk
    /// in the channel's consensus log at `at` (a raft entry): the ledger records a
    /// reference to them plus the block's metadata instead of a second copy (see the
    /// `logged` module for the format and the rules the log keeps). Refused, writing
    /// nothing, when the entry does not hold this block there.
    pub fn append_logged(
        &self,
        block: &Block,
        at: LogPosition,
        data_check: DataCheck,
    ) -> Result<(), LedgerError> {
        self.write_block(block, None, data_check, Some(at))
    }

    /// The one write path: checks, then one synced batch with the block (or its reference
    /// into the consensus log), its index entries, the tip and (on a peer) the state
    /// commit.
    fn write_block(
        &self,
        block: &Block,
        commit: Option<&StateCommit>,
        data_check: DataCheck,
        logged_at: Option<LogPosition>,
    ) -> Result<(), LedgerError> {
        let _writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let tip = self.tip();

        let header = block
            .header
            .as_ref()
            .ok_or_else(|| LedgerError::InvalidBlock("block has no header".into()))?;
        if header.number != tip.height {
            return Err(LedgerError::WrongNumber {
                expected: tip.height,
                got: header.number,
            });
        }
        let prev = tip.last_hash.unwrap_or(GENESIS_PREVIOUS_HASH);
        if header.previous_hash.as_ref() != prev.as_slice() {
            return Err(LedgerError::BrokenChain {
                number: header.number,
            });
        }
        let checked = match data_check {
            DataCheck::Verify => chain::check_structure(block, Some((tip.height, &prev))),
            DataCheck::TrustBuilder => chain::check_links(block, Some((tip.height, &prev))),
        };
        checked.map_err(|e| match e {
            BlockError::WrongNumber { number, expected } => LedgerError::WrongNumber {
                expected,
                got: number,
            },
            BlockError::BrokenChain { number, .. } => LedgerError::BrokenChain { number },
            other => LedgerError::InvalidBlock(other.to_string()),
        })?;

        let number = tip.height;
        let new_hash = chain::hash(block);
        if let Some(c) = commit {
            c.check(block, number, self.expiry_floor_ms())?;
        }
        // A peer's commit names exactly the ids to index: its validator already refused
        // every id the index holds (DUPLICATE_TXID), so there is nothing to look up again.
        let new_tx_ids = match (commit, self.inner.tx_index) {
            (Some(c), _) => c.indexed_tx_ids(),
            (None, TxIndex::On) => self.new_tx_ids(block)?,
            (None, TxIndex::Off) => Vec::new(),
        };
        let data = block
            .data
            .as_ref()
            .map(|d| d.data.as_slice())
            .unwrap_or_default();

        let blocks = self.cf(CF_BLOCKS)?;
        let txids = self.cf(CF_TXIDS)?;
        let meta = self.cf(CF_META)?;
        let stored = match logged_at {
            None => block.encode_to_vec(),
            Some(at) => {
                let log = self.cf(CF_CONSENSUS_LOG)?;
                let entry = self
                    .inner
                    .db
                    .get_pinned_cf(log, at.index.to_be_bytes())?
                    .ok_or_else(|| {
                        LedgerError::InvalidBlock(format!(
                            "block {number} refers to consensus log entry {}, which is not stored",
                            at.index
                        ))
                    })?;
                logged::check_entry(&entry, at, block)?;
                logged::encode_reference(at, block)
            }
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(blocks, number.to_be_bytes(), stored);
        for (index, tx_id) in &new_tx_ids {
            batch.put_cf(
                txids,
                tx_id.as_bytes(),
                TxLocation {
                    block: number,
                    index: *index,
                    code: commit.and_then(|c| c.codes.get(*index as usize).copied()),
                    // The signed timestamp expiry judges, when expiry is on for the
                    // block (`expiry` module); an orderer's entries never expire.
                    timestamp_ms: commit
                        .filter(|c| c.record_tx_times)
                        .and_then(|_| data.get(*index as usize))
                        .and_then(tx_index::timestamp_of_entry),
                }
                .encode(),
            );
        }
        let new_height = number + 1;
        batch.put_cf(meta, META_HEIGHT, new_height.to_be_bytes());
        batch.put_cf(meta, META_LAST_HASH, new_hash);
        if let Some(c) = commit {
            self.add_state_commit(&mut batch, c)?;
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.inner.db.write_opt(batch, &opts)?;
        if let Some(c) = commit {
            self.raise_expiry_floor(c.expiry_floor_ms);
        }

        *self
            .inner
            .tip
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Tip {
            first: tip.first,
            height: new_height,
            last_hash: Some(new_hash),
        };
        self.inner.height_tx.send_replace(new_height);
        tracing::debug!(number, indexed_txs = new_tx_ids.len(), "appended block");
        Ok(())
    }

    /// Whether `other` is a clone of this store (the same open database), not merely a
    /// store of the same directory.
    pub fn is_same(&self, other: &BlockStore) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The ledger's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The number of blocks, i.e. the number the next block must carry.
    pub fn height(&self) -> u64 {
        self.tip().height
    }

    /// The hash of the last block (`height - 1`), which the next block must link to;
    /// `None` while the ledger is empty (the genesis block links to
    /// [`GENESIS_PREVIOUS_HASH`]).
    pub fn last_hash(&self) -> Option<Hash> {
        self.tip().last_hash
    }

    /// The block with `number`, or `None` at or beyond the height;
    /// [`LedgerError::Pruned`] below the first block held.
    pub fn block(&self, number: u64) -> Result<Option<Block>, LedgerError> {
        self.block_bytes(number)?
            .map(|bytes| self.checked(Some(number), decode_block(number, bytes)))
            .transpose()
    }

    /// The stored encoding of block `number`, byte-identical to what [`append`] stored, so
    /// Deliver can send it without re-encoding. `None` at or beyond the height;
    /// [`LedgerError::Pruned`] below the first block held.
    ///
    /// [`append`]: BlockStore::append
    pub fn block_bytes(&self, number: u64) -> Result<Option<Bytes>, LedgerError> {
        if number >= self.height() {
            return Ok(None);
        }
        self.check_held(number)?;
        let read = || -> Result<Bytes, LedgerError> {
            let value = self
                .inner
                .db
                .get_cf(self.cf(CF_BLOCKS)?, number.to_be_bytes())?
                .ok_or_else(|| {
                    LedgerError::Corrupt(format!("block {number} is below the height but missing"))
                })?;
            resolve_stored(&self.inner.db, number, value)
        };
        self.checked(Some(number), read()).map(Some)
    }

    /// Where the consensus log holds block `number`, when the ledger stores it by
    /// reference ([`BlockStore::append_logged`]); `None` for a block stored inline or
    /// beyond the height. For tests and tools that show how a block is stored.
    pub fn logged_position(&self, number: u64) -> Result<Option<LogPosition>, LedgerError> {
        if number >= self.height() {
            return Ok(None);
        }
        let value = self
            .inner
            .db
            .get_pinned_cf(self.cf(CF_BLOCKS)?, number.to_be_bytes())?;
        Ok(value.and_then(|v| logged::position_of(&v)))
    }

    /// Where `tx_id` was first ordered, or `None` if it never was: the duplicate check of
    /// validators and the lookup of `CommitStatus`.
    pub fn tx_location(&self, tx_id: &str) -> Result<Option<TxLocation>, LedgerError> {
        if self.inner.tx_index == TxIndex::Off {
            return Err(LedgerError::NotIndexed);
        }
        self.inner
            .db
            .get_pinned_cf(self.cf(CF_TXIDS)?, tx_id.as_bytes())?
            .map(|v| TxLocation::decode(tx_id, &v))
            .transpose()
    }

    /// The block in which `tx_id` was first ordered, or `None` if it never was.
    pub fn block_by_tx_id(&self, tx_id: &str) -> Result<Option<Block>, LedgerError> {
        let Some(location) = self.tx_location(tx_id)? else {
            return Ok(None);
        };
        self.block(location.block)?.map(Some).ok_or_else(|| {
            LedgerError::Corrupt(format!(
                "tx {tx_id:?} is indexed in block {}, which is not stored",
                location.block
            ))
        })
    }

    /// Blocks `from..to_exclusive` in order, read with one RocksDB iterator, for Deliver and
    /// catch-up. The range is clipped to the height at the time of the call, so the iterator
    /// ends there even if blocks are appended meanwhile. After an error it ends; a range
    /// starting below the first block held yields [`LedgerError::Pruned`] alone.
    pub fn blocks(
        &self,
        from: u64,
        to_exclusive: u64,
    ) -> impl Iterator<Item = Result<Block, LedgerError>> + '_ {
        let end = to_exclusive.min(self.height());
        let mut range = BlockRange {
            store: self,
            iter: None,
            pending_error: None,
            next: from,
            end,
        };
        if from < end {
            if let Err(e) = self.check_held(from) {
                range.pending_error = Some(e);
                return range;
            }
            match self.cf(CF_BLOCKS) {
                Ok(cf) => {
                    let mut opts = ReadOptions::default();
                    opts.set_iterate_upper_bound(end.to_be_bytes().to_vec());
                    let start = from.to_be_bytes();
                    let mode = IteratorMode::From(&start, Direction::Forward);
                    range.iter = Some(self.inner.db.iterator_cf_opt(cf, opts, mode));
                }
                Err(e) => range.pending_error = Some(e),
            }
        }
        range
    }

    /// A watch of the height, updated after every successful (durable) append: how Deliver
    /// and other waiters learn about new blocks without polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.height_tx.subscribe()
    }

    /// Returns once the height is at least `min_height`. Cancel-safe: dropping the future
    /// loses nothing.
    pub async fn wait_for_height(&self, min_height: u64) {
        let mut rx = self.subscribe();
        // `wait_for` fails only when the sender is dropped; it lives in `self`, which this
        // future borrows, so it cannot be.
        let _ = rx.wait_for(|height| *height >= min_height).await;
    }

    fn tip(&self) -> Tip {
        *self
            .inner
            .tip
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&ColumnFamily, LedgerError> {
        cf(&self.inner.db, name)
    }

    /// The (index, tx id) pairs of `block` to add to the index: the first occurrence of
    /// each tx id within the block, minus those already indexed by an earlier block.
    fn new_tx_ids(&self, block: &Block) -> Result<Vec<(u32, String)>, LedgerError> {
        let candidates = first_occurrences(block)?;
        self.fresh_tx_ids(candidates)
    }

    /// The candidates whose tx id is not indexed yet.
    fn fresh_tx_ids(
        &self,
        candidates: Vec<(u32, String)>,
    ) -> Result<Vec<(u32, String)>, LedgerError> {
        if candidates.is_empty() {
            return Ok(candidates);
        }
        let txids = self.cf(CF_TXIDS)?;
        let existing = self
            .inner
            .db
            .multi_get_cf(candidates.iter().map(|(_, id)| (txids, id.as_bytes())));
        let mut fresh = Vec::with_capacity(candidates.len());
        for (candidate, found) in candidates.into_iter().zip(existing) {
            if found?.is_none() {
                fresh.push(candidate);
            }
        }
        Ok(fresh)
    }
}

/// Whether an append recomputes the block's Merkle data hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCheck {
    /// Recompute it: the block came from elsewhere.
    Verify,
    /// The caller built the block from its data moments ago.
    TrustBuilder,
}

fn cf<'a>(db: &'a Db, name: &str) -> Result<&'a ColumnFamily, LedgerError> {
    db.cf_handle(name)
        .ok_or_else(|| LedgerError::Corrupt(format!("column family {name:?} missing")))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_support;
