//! Taking a snapshot of a running peer's ledger (see the [module docs](super)).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use prost::Message;
use rocksdb::{IteratorMode, ReadOptions};

use super::records::{Kind, RecordWriter};
use super::{
    io_err, SnapshotError, SnapshotFile, SnapshotManifest, CONFIG_BLOCK_FILE, MANIFEST_FILE,
    SNAPSHOT_FORMAT, STATE_FILE, TXIDS_FILE,
};
use crate::{BlockStore, TxIndex, TxLocation, CF_STATE, CF_TXIDS};

/// Write buffer of a record file.
const WRITE_BUFFER: usize = 1 << 20;

/// A snapshot being written into `<parent>/.<channel>.partial`. Dropped before
/// [`SnapshotWriter::finish`], it deletes what it wrote.
#[derive(Debug)]
pub struct SnapshotWriter {
    parent: PathBuf,
    channel_id: String,
    partial: PathBuf,
    finished: bool,
}

impl SnapshotWriter {
    /// Starts a snapshot of `channel_id` under `parent` (created if missing). The caller
    /// must not take two snapshots of one channel at once: a leftover partial snapshot
    /// of the channel is deleted here as stale.
    pub fn begin(parent: &Path, channel_id: &str) -> Result<Self, SnapshotError> {
        crate::backup::validate_name(channel_id)
            .map_err(|e| SnapshotError::Manifest(e.to_string()))?;
        std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        let partial = parent.join(format!(".{channel_id}.partial"));
        if partial.exists() {
            tracing::warn!(dir = %partial.display(), "removing an interrupted snapshot");
            std::fs::remove_dir_all(&partial).map_err(io_err("removing", &partial))?;
        }
        std::fs::create_dir_all(&partial).map_err(io_err("creating", &partial))?;
        Ok(Self {
            parent: parent.to_path_buf(),
            channel_id: channel_id.to_string(),
            partial,
            finished: false,
        })
    }

    /// Writes the data files of `store` at its current height and returns the manifest,
    /// unsigned (`signer_cert` as given, `signature` empty). Commits pause only while the
    /// RocksDB snapshot is taken (module docs). Refuses a ledger without world state or
    /// tx index (an orderer's) and an empty one.
    pub fn write(
        &mut self,
        store: &BlockStore,
        created_at_ms: u64,
        signer_cert: &[u8],
    ) -> Result<SnapshotManifest, SnapshotError> {
        if store.inner.tx_index == TxIndex::Off {
            return Err(SnapshotError::Manifest(
                "the ledger keeps no tx index (an orderer's): only a peer's ledger can be \
                 snapshotted"
                    .into(),
            ));
        }
        let db = &store.inner.db;
        let writer = store
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let tip = store.tip();
        let commit_hash = store.commit_hash()?;
        let config = store.config_in_force()?;
        let floor = store.expiry_floor_ms();
        let snap = db.snapshot();
        // Both iterators are opened now, with the floor: an open iterator pins the files it
        // reads, while a RocksDB snapshot alone does not stop a compaction filter (the
        // `txids` one drops entries below the live floor, which may move on while the state
        // file is written).
        let mut iterators = Vec::with_capacity(2);
        for (name, cf_name, kind) in [
            (STATE_FILE, CF_STATE, Kind::State),
            (TXIDS_FILE, CF_TXIDS, Kind::TxIds),
        ] {
            let mut opts = ReadOptions::default();
            // A one-off scan: keep the node's block cache for its working set.
            opts.fill_cache(false);
            let iter = snap.iterator_cf_opt(store.cf(cf_name)?, opts, IteratorMode::Start);
            iterators.push((name, kind, iter));
        }
        drop(writer);
        let (Some(last_hash), Some(commit_hash)) = (tip.last_hash, commit_hash) else {
            return Err(SnapshotError::Manifest(
                "the ledger has no committed block with a commit hash: nothing to snapshot".into(),
            ));
        };

        let mut files = Vec::with_capacity(3);
        for (name, kind, iter) in iterators.drain(..) {
            let path = self.partial.join(name);
            let file = File::create(&path).map_err(io_err("creating", &path))?;
            let mut out = RecordWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file), kind)
                .map_err(io_err("writing", &path))?;
            for item in iter {
                let (key, value) = item?;
                // An expired id will never be asked about again (`expiry` module).
                let expired = kind == Kind::TxIds
                    && TxLocation::timestamp_of(&value).is_some_and(|at| at < floor);
                if !expired {
                    out.record(&key, &value).map_err(io_err("writing", &path))?;
                }
            }
            let (buffered, records, bytes, sha256) =
                out.finish().map_err(io_err("writing", &path))?;
            let file = buffered
                .into_inner()
                .map_err(|e| io_err("writing", &path)(e.into_error()))?;
            file.sync_all().map_err(io_err("syncing", &path))?;
            files.push(SnapshotFile {
                name: name.to_string(),
                bytes,
                records,
                sha256: hex::encode(sha256),
            });
        }
        drop(iterators);
        drop(snap);

        let (config_block, config_number) = config;
        let encoded = config_block.encode_to_vec();
        let path = self.partial.join(CONFIG_BLOCK_FILE);
        write_synced(&path, &encoded)?;
        files.push(SnapshotFile {
            name: CONFIG_BLOCK_FILE.to_string(),
            bytes: encoded.len() as u64,
            records: 1,
            sha256: hex::encode(ordo_proto::hash::sha256(&encoded)),
        });

        Ok(SnapshotManifest {
            format: SNAPSHOT_FORMAT,
            channel_id: self.channel_id.clone(),
            height: tip.height,
            last_block_hash: hex::encode(last_hash),
            commit_hash: hex::encode(commit_hash),
            config_block_number: config_number,
            expiry_floor_ms: floor,
            created_at_ms,
            files,
            signer_cert: hex::encode(signer_cert),
            signature: String::new(),
        })
    }

    /// Writes the (signed) manifest, makes everything durable and moves the snapshot into
    /// place as `<parent>/<channel>-<height>`; returns that directory. Refuses when a
    /// snapshot of that height exists already.
    pub fn finish(mut self, manifest: &SnapshotManifest) -> Result<PathBuf, SnapshotError> {
        let text = serde_json::to_vec_pretty(manifest)
            .map_err(|e| SnapshotError::Manifest(e.to_string()))?;
        write_synced(&self.partial.join(MANIFEST_FILE), &text)?;
        sync_dir(&self.partial)?;
        let target = self
            .parent
            .join(format!("{}-{}", self.channel_id, manifest.height));
        if target.exists() {
            return Err(SnapshotError::AlreadyExists(target));
        }
        std::fs::rename(&self.partial, &target).map_err(io_err("renaming", &self.partial))?;
        self.finished = true;
        sync_dir(&self.parent)?;
        // Absolute, so the answer can be handed to another peer on the same host.
        Ok(std::fs::canonicalize(&target).unwrap_or(target))
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.partial);
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let mut f = File::create(path).map_err(io_err("creating", path))?;
    f.write_all(bytes).map_err(io_err("writing", path))?;
    f.sync_all().map_err(io_err("syncing", path))
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", dir))
}
