//! Loading a snapshot into a new, empty ledger (see the [module docs](super)).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::PoisonError;

use prost::Message;
use rocksdb::{WriteBatch, WriteOptions};

use super::records::{Kind, RecordReader};
use super::{io_err, read_config_block, SnapshotError, SnapshotManifest, STATE_FILE, TXIDS_FILE};
use crate::base::{META_BASE_CONFIG, META_BASE_HASH, META_FIRST_BLOCK};
use crate::{
    BlockStore, Tip, TxIndex, TxLocation, CF_META, CF_STATE, CF_TXIDS, META_HEIGHT, META_LAST_HASH,
};

/// Records are written in batches of about this many bytes, without the write-ahead log:
/// the column families are flushed to synced table files before the tip is written, and
/// until the tip is there the ledger is a half-built one that nobody opens (the caller
/// builds it in a directory it renames into place only on success). Skipping the log
/// writes every record once instead of twice.
const BATCH_BYTES: usize = 4 << 20;
/// Read buffer of a record file.
const READ_BUFFER: usize = 1 << 20;

/// Loads the snapshot in directory `snapshot`, described by `manifest`, into `store`,
/// which must be a new, empty ledger with a tx index. The caller has already decided to
/// trust the manifest (its signer, its agreement with the orderers' chain); here every
/// file is checked against it — size, SHA-256, record count, well-formed records in key
/// order, versions and tx locations below the snapshot's height — while it is loaded.
///
/// On success the ledger starts at block `manifest.height` (`base` module) with the
/// snapshot's state, tx index, commit hash and config block, durable. On failure the
/// ledger may hold some records but no tip: it is still at height 0, and the caller
/// deletes it (the peer builds it in a directory it renames into place only on success).
pub fn import(
    store: &BlockStore,
    snapshot: &Path,
    manifest: &SnapshotManifest,
) -> Result<(), SnapshotError> {
    manifest.check()?;
    if store.height() != 0 {
        return Err(SnapshotError::NotEmpty(store.height()));
    }
    if store.inner.tx_index == TxIndex::Off {
        return Err(SnapshotError::Manifest(
            "the target ledger keeps no tx index (an orderer's)".into(),
        ));
    }
    let _writer = store
        .inner
        .writer
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let height = manifest.height;
    let last_hash = manifest.last_block_hash()?;
    let commit_hash = manifest.commit_hash()?;
    let config_block = read_config_block(snapshot, manifest)?;

    load(
        store,
        snapshot,
        manifest,
        STATE_FILE,
        Kind::State,
        |k, v| check_state_record(k, v, height),
    )?;
    load(
        store,
        snapshot,
        manifest,
        TXIDS_FILE,
        Kind::TxIds,
        |k, v| check_txid_record(k, v, height),
    )?;

    // The records are not in the log: make them durable in table files first.
    let mut flush = rocksdb::FlushOptions::default();
    flush.set_wait(true);
    store
        .inner
        .db
        .flush_cfs_opt(&[store.cf(CF_STATE)?, store.cf(CF_TXIDS)?], &flush)?;

    let meta = store.cf(CF_META)?;
    let mut batch = WriteBatch::default();
    batch.put_cf(meta, META_FIRST_BLOCK, height.to_be_bytes());
    batch.put_cf(meta, META_BASE_HASH, last_hash);
    batch.put_cf(meta, META_BASE_CONFIG, config_block.encode_to_vec());
    batch.put_cf(meta, META_HEIGHT, height.to_be_bytes());
    batch.put_cf(meta, META_LAST_HASH, last_hash);
    batch.put_cf(meta, crate::state::META_COMMIT_HASH, commit_hash);
    if manifest.expiry_floor_ms > 0 {
        batch.put_cf(
            meta,
            crate::expiry::META_EXPIRY_FLOOR,
            manifest.expiry_floor_ms.to_be_bytes(),
        );
    }
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    store.inner.db.write_opt(batch, &opts)?;

    *store
        .inner
        .tip
        .write()
        .unwrap_or_else(PoisonError::into_inner) = Tip {
        first: height,
        height,
        last_hash: Some(last_hash),
    };
    store.inner.height_tx.send_replace(height);
    store.raise_expiry_floor(manifest.expiry_floor_ms);
    tracing::info!(
        channel = %manifest.channel_id,
        height,
        dir = %store.dir().display(),
        "imported snapshot"
    );
    Ok(())
}

/// Streams one record file into its column family, checking every record with `check`
/// and the whole file against the manifest.
fn load(
    store: &BlockStore,
    snapshot: &Path,
    manifest: &SnapshotManifest,
    name: &str,
    kind: Kind,
    check: impl Fn(&[u8], &[u8]) -> Result<(), String>,
) -> Result<(), SnapshotError> {
    let entry = manifest.file(name)?;
    let bad = |why: String| SnapshotError::File {
        file: name.to_string(),
        why,
    };
    let path = snapshot.join(name);
    let file = File::open(&path).map_err(io_err("opening", &path))?;
    let on_disk = file.metadata().map_err(io_err("inspecting", &path))?.len();
    if on_disk != entry.bytes {
        return Err(bad(format!(
            "{on_disk} bytes, the manifest says {}",
            entry.bytes
        )));
    }
    let mut reader =
        RecordReader::new(BufReader::with_capacity(READ_BUFFER, file), kind).map_err(bad)?;
    let cf = store.cf(match kind {
        Kind::State => CF_STATE,
        Kind::TxIds => CF_TXIDS,
    })?;
    let mut batch = WriteBatch::default();
    while let Some((key, value)) = reader.next_record().map_err(bad)? {
        if reader.records() > entry.records {
            return Err(bad(format!(
                "more records than the {} the manifest says",
                entry.records
            )));
        }
        check(&key, &value).map_err(bad)?;
        batch.put_cf(cf, key, value);
        if batch.size_in_bytes() >= BATCH_BYTES {
            write_unlogged(store, std::mem::take(&mut batch))?;
        }
    }
    let (records, bytes, sha256) = reader.finish();
    if records != entry.records || bytes != entry.bytes {
        return Err(bad(format!(
            "{records} records in {bytes} bytes, the manifest says {} in {}",
            entry.records, entry.bytes
        )));
    }
    if hex::encode(sha256) != entry.sha256 {
        return Err(bad("its SHA-256 differs from the manifest's".into()));
    }
    if !batch.is_empty() {
        write_unlogged(store, batch)?;
    }
    Ok(())
}

/// Writes a batch of records without the write-ahead log (see [`BATCH_BYTES`]).
fn write_unlogged(store: &BlockStore, batch: WriteBatch) -> Result<(), SnapshotError> {
    let mut opts = WriteOptions::default();
    opts.disable_wal(true);
    store.inner.db.write_opt(batch, &opts)?;
    Ok(())
}

/// A state record: `u32 len(ns) ‖ ns ‖ key` → `block ‖ tx ‖ value`, written below `height`.
fn check_state_record(key: &[u8], value: &[u8], height: u64) -> Result<(), String> {
    let ns_len = key
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("a state key shorter than its namespace length")?;
    if key.len() < 4 + ns_len {
        return Err("a state key shorter than its namespace".into());
    }
    let block = value
        .get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
        .ok_or("a state value shorter than its version")?;
    if value.len() < 12 {
        return Err("a state value shorter than its version".into());
    }
    if block >= height {
        return Err(format!(
            "a state value written in block {block}, at or above the height {height}"
        ));
    }
    Ok(())
}

/// A tx-index record: a UTF-8 tx id → a location with a validation code below `height`.
fn check_txid_record(key: &[u8], value: &[u8], height: u64) -> Result<(), String> {
    let tx_id = std::str::from_utf8(key).map_err(|_| "a tx id that is not UTF-8".to_string())?;
    let location = TxLocation::decode(tx_id, value).map_err(|e| e.to_string())?;
    if location.code.is_none() {
        return Err(format!("tx {tx_id:?} has no validation code"));
    }
    if location.block >= height {
        return Err(format!(
            "tx {tx_id:?} in block {}, at or above the height {height}",
            location.block
        ));
    }
    Ok(())
}
