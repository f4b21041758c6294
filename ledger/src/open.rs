//! Opening a ledger's database: its options, its column families, and the chain tip
//! recovered from what is on disk.

use crate::base::{read_base_hash, read_first_block};
use crate::*;

/// Reads the tip from `meta` and checks it against the stored blocks.
pub(crate) fn recover_tip(db: &Db) -> Result<Tip, LedgerError> {
    let meta = cf(db, CF_META)?;
    let blocks = cf(db, CF_BLOCKS)?;
    let height = match db.get_cf(meta, META_HEIGHT)? {
        None => 0,
        Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| {
            LedgerError::Corrupt(format!("meta height is {} bytes, expected 8", v.len()))
        })?),
    };
    let last_hash = match db.get_cf(meta, META_LAST_HASH)? {
        None => None,
        Some(v) => Some(Hash::try_from(v.as_slice()).map_err(|_| {
            LedgerError::Corrupt(format!("meta last_hash is {} bytes, expected 32", v.len()))
        })?),
    };

    let first = read_first_block(db)?;
    if height < first {
        return Err(LedgerError::Corrupt(format!(
            "meta height {height} is below the first block held {first}"
        )));
    }

    // Appends write the tip with the block, so nothing may be stored at or beyond it.
    let start = height.to_be_bytes();
    if let Some(item) = db
        .iterator_cf(blocks, IteratorMode::From(&start, Direction::Forward))
        .next()
    {
        let (key, _) = item?;
        return Err(LedgerError::Corrupt(format!(
            "block key {key:02x?} stored at or beyond the height {height}"
        )));
    }
    // Nor below the first block held (`base` module).
    if let Some(item) = db.iterator_cf(blocks, IteratorMode::Start).next() {
        let (key, _) = item?;
        if key.as_ref() < first.to_be_bytes().as_slice() {
            return Err(LedgerError::Corrupt(format!(
                "block key {key:02x?} stored below the first block held {first}"
            )));
        }
    }

    match (height, last_hash) {
        (0, None) => Ok(Tip {
            first: 0,
            height: 0,
            last_hash: None,
        }),
        (0, Some(_)) => Err(LedgerError::Corrupt(
            "meta has a last hash but height 0".into(),
        )),
        (_, None) => Err(LedgerError::Corrupt(format!(
            "meta has height {height} but no last hash"
        ))),
        // No block held yet above a base: the tip is the block the base ends with.
        (_, Some(expected)) if height == first => {
            if read_base_hash(db)? != Some(expected) {
                return Err(LedgerError::Corrupt(format!(
                    "the ledger starts at block {first} but meta last_hash is not its base hash"
                )));
            }
            Ok(Tip {
                first,
                height,
                last_hash: Some(expected),
            })
        }
        (_, Some(expected)) => {
            let number = height - 1;
            let in_last_block = |e: LedgerError| match e {
                LedgerError::Storage(e) if e.kind() == rocksdb::ErrorKind::Corruption => {
                    LedgerError::Corrupt(format!("reading the last block {number}: {e}"))
                }
                other => other,
            };
            let bytes = db
                .get_cf(blocks, number.to_be_bytes())
                .map_err(|e| in_last_block(e.into()))?
                .ok_or_else(|| {
                    LedgerError::Corrupt(format!(
                        "last block {number} (height {height}) is missing"
                    ))
                })?;
            let stored = resolve_stored(db, number, bytes).map_err(in_last_block)?;
            let block = decode_block(number, stored)?;
            chain::check_structure(&block, None)
                .map_err(|e| LedgerError::Corrupt(format!("last block: {e}")))?;
            if chain::hash(&block) != expected {
                return Err(LedgerError::Corrupt(format!(
                    "last block {number} does not hash to meta last_hash"
                )));
            }
            Ok(Tip {
                first,
                height,
                last_hash: Some(expected),
            })
        }
    }
}

/// Largest blob file of `blocks` and of the consensus log (RocksDB's default is 256 MiB).
pub(crate) const BLOB_FILE_BYTES: u64 = 16 << 20;

/// Database-wide options: modest, because a node opens one ledger per channel and the
/// machines may be small.
pub(crate) fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    // `meta` gets a few bytes per block and would rarely flush on its own, pinning every
    // WAL file since its last flush; a WAL cap forces the flush and bounds the disk used.
    // Each cap hit flushes every column family, so it must not be small: a 64 MiB cap
    // flushed the small column families every few seconds under raft load, feeding
    // compactions of tiny files.
    opts.set_max_total_wal_size(256 << 20);
    opts.set_keep_log_file_num(4);
    // The default, spelled out: recovery replays the WAL up to the last intact record,
    // which after a synced write includes every acknowledged block.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    opts
}

/// The column families with a `history` filter that sees no first block (drops nothing):
/// for tests that open a ledger's database raw.
#[cfg(test)]
pub(crate) fn cf_descriptors() -> Vec<ColumnFamilyDescriptor> {
    cf_descriptors_with(
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
    )
}

/// The column families, with the `history` compaction filter reading the first block held
/// from `history_floor` (`prune` module) and the `txids` one reading the expiry floor from
/// `expiry_floor` (`expiry` module).
pub(crate) fn cf_descriptors_with(
    history_floor: Arc<std::sync::atomic::AtomicU64>,
    expiry_floor: Arc<std::sync::atomic::AtomicU64>,
) -> Vec<ColumnFamilyDescriptor> {
    let mut blocks = Options::default();
    blocks.set_compression_type(DBCompressionType::Lz4);
    // Blocks are large, written once and never updated: keep their bytes in blob files so
    // that compaction moves only the small keys instead of rewriting every block.
    blocks.set_enable_blob_files(true);
    blocks.set_min_blob_size(4096);
    // Envelopes are mostly signed, high-entropy payloads: compressing them costs CPU on
    // the write path and saves little.
    blocks.set_blob_compression_type(DBCompressionType::None);
    // A blob file is freed only when every block in it was removed (pruning): small files
    // bound what a partly pruned file keeps on disk (the slack of a byte budget).
    blocks.set_blob_file_size(BLOB_FILE_BYTES);

    // Almost every lookup at append is for a tx id that is not there yet: a bloom filter
    // answers most of them without reading a data block.
    let mut txids = Options::default();
    txids.set_compression_type(DBCompressionType::Lz4);
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    txids.set_block_based_table_factory(&table);
    // The same for the memtable, where the recent ids live: the orderer asks about every
    // new tx id it receives (duplicate detection), and a miss should not walk the skiplist.
    txids.set_memtable_prefix_bloom_ratio(0.1);
    txids.set_memtable_whole_key_filtering(true);
    // Tx ids are random, so every new file overlaps the whole key range: leveled
    // compaction would rewrite all of level 1 for each flush (write amplification growing
    // with the ledger). Universal compaction merges runs of similar size instead.
    txids.set_compaction_style(DBCompactionStyle::Universal);
    let (name, filter) = crate::expiry::txids_filter(expiry_floor);
    txids.set_compaction_filter(name, filter);

    // Raft entries carry whole blocks, and the blocks of committed entries stay where
    // they are for good (the ledger refers to them: see `logged`): in blob files they are
    // written once at flush and never moved by compaction. No blob garbage collection:
    // it would relocate live blobs of old files (rewriting the blocks it exists to avoid
    // rewriting); the only garbage is the rare uncommitted tail a new leader replaces.
    let mut consensus_log = Options::default();
    consensus_log.set_compression_type(DBCompressionType::None);
    consensus_log.set_enable_blob_files(true);
    consensus_log.set_min_blob_size(4096);
    consensus_log.set_blob_compression_type(DBCompressionType::None);
    consensus_log.set_blob_file_size(BLOB_FILE_BYTES);

    let mut history = state::cf_options();
    let (name, filter) = crate::prune::history_filter(history_floor);
    history.set_compaction_filter(name, filter);

    vec![
        ColumnFamilyDescriptor::new(CF_BLOCKS, blocks),
        ColumnFamilyDescriptor::new(CF_TXIDS, txids),
        ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ColumnFamilyDescriptor::new(CF_STATE, state::cf_options()),
        ColumnFamilyDescriptor::new(CF_HISTORY, history),
        ColumnFamilyDescriptor::new(CF_CONSENSUS_LOG, consensus_log),
        ColumnFamilyDescriptor::new(CF_CONSENSUS_STATE, Options::default()),
    ]
}
