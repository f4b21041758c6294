//! Consistent online backups of a node's channel ledgers, and their offline restore.
//!
//! A backup is a directory `<data_dir>/backups/<name>/` laid out like a data directory:
//!
//! ```text
//! backups/<name>/manifest.json          what is in it (see [`Manifest`])
//! backups/<name>/channels/<channel>/    a RocksDB checkpoint of the channel's ledger
//! ```
//!
//! **Consistency.** Each channel is one RocksDB instance holding every column family
//! (blocks, tx index, tip, and on a peer world state, history and commit hash), and a
//! RocksDB checkpoint is a point-in-time image of all of them at once. The checkpoint is
//! taken while holding the ledger's writer lock ([`BlockStore::checkpoint`]), so no block
//! is half in it and the height, last hash and commit hash the manifest records are
//! exactly those of the image. Channels are checkpointed one after the other: each is
//! consistent in itself, not at one instant with the others (channels are independent
//! chains). Writes outside the writer lock — a raft consensus log — are *not* covered;
//! that is why orderers refuse to back up raft channels (see the orderer's Admin docs).
//!
//! **Cost.** On the data directory's filesystem a checkpoint hard-links the immutable SST
//! files and copies only the small MANIFEST/OPTIONS/WAL files, so a backup is cheap and
//! takes no space until compaction deletes the originals. RocksDB never modifies an SST
//! file in place, so the node's later writes cannot change a backup.
//!
//! **Atomicity and durability.** A backup is built in `backups/.<name>.partial` and
//! renamed to `backups/<name>` only after every file and directory in it and the manifest
//! are fsynced; the rename is then fsynced. A crash leaves either no backup of that name
//! or a complete one (a leftover `.partial` is deleted by the next backup of that name).
//!
//! **Restore** ([`restore`]) copies a backup's channels into an empty data directory of
//! a stopped or new node, opens each ledger and verifies its whole chain (hash links,
//! Merkle data hashes, orderer signatures under the BlockValidation policy) and its tip
//! against the manifest before it puts the channel in place.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use ordo_proto::hash::Hash;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{BlockStore, LedgerError};

/// The folder of a data directory holding its backups.
pub const BACKUPS_DIR: &str = "backups";
/// The manifest's file name in a backup.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Longest backup name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;
/// Format version written in every manifest.
pub const MANIFEST_FORMAT: u32 = 1;
/// Largest manifest [`restore`] reads (a few hundred bytes per channel).
const MANIFEST_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Why a backup or a restore failed.
#[derive(Debug, Error)]
pub enum BackupError {
    /// The backup name (or a channel id used as a directory name) is unusable.
    #[error("invalid backup name {name:?}: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A backup of that name exists already.
    #[error("backup {0:?} already exists")]
    AlreadyExists(String),
    /// The restore target is not empty.
    #[error("restore target {0} is not empty: restore only into a new, empty data directory")]
    TargetNotEmpty(PathBuf),
    /// The backup's manifest is missing, unreadable or contradicts the backup.
    #[error("backup manifest: {0}")]
    Manifest(String),
    /// A restored channel does not verify.
    #[error("channel {channel:?} in the backup does not verify: {why}")]
    Verify {
        /// The channel.
        channel: String,
        /// What failed.
        why: String,
    },
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

/// What a backup holds: written as `manifest.json` in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The backup's name.
    pub name: String,
    /// The node that made it (its certificate's subject).
    pub node: String,
    /// `peer` or `orderer`.
    pub node_role: String,
    /// When it was made, ms since the Unix epoch (the node's clock).
    pub created_at_ms: u64,
    /// The channels in it, sorted by id.
    pub channels: Vec<ManifestChannel>,
    /// Channels the node serves that are not in it, with the reason.
    #[serde(default)]
    pub skipped: Vec<SkippedChannel>,
}

impl Manifest {
    /// The Admin response's view of this backup, made in `dir`.
    pub fn to_result(&self, dir: &Path) -> ordo_proto::pb::admin::BackupResult {
        let bytes = |h: &str| hex::decode(h).unwrap_or_default();
        ordo_proto::pb::admin::BackupResult {
            name: self.name.clone(),
            path: dir.display().to_string(),
            channels: self
                .channels
                .iter()
                .map(|c| ordo_proto::pb::admin::ChannelBackup {
                    channel_id: c.channel_id.clone(),
                    height: c.height,
                    last_block_hash: bytes(&c.last_block_hash).into(),
                    commit_hash: c
                        .commit_hash
                        .as_deref()
                        .map(bytes)
                        .unwrap_or_default()
                        .into(),
                    path: dir.join(&c.path).display().to_string(),
                })
                .collect(),
            skipped: self
                .skipped
                .iter()
                .map(|s| format!("{}: {}", s.channel_id, s.reason))
                .collect(),
        }
    }
}

impl BackupError {
    /// The Admin status of a refused backup: BAD_REQUEST for a bad name, CONFLICT for an
    /// existing one, INTERNAL_SERVER_ERROR otherwise.
    pub fn status(&self) -> ordo_proto::pb::common::Status {
        use ordo_proto::pb::common::Status;
        match self {
            BackupError::InvalidName { .. } => Status::BadRequest,
            BackupError::AlreadyExists(_) => Status::Conflict,
            _ => Status::InternalServerError,
        }
    }
}

/// One channel of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestChannel {
    /// The channel id.
    pub channel_id: String,
    /// Blocks in the backup.
    pub height: u64,
    /// Hex hash of block `height - 1`.
    pub last_block_hash: String,
    /// Hex commit hash after the last block (a peer's ledger), `None` on an orderer's.
    pub commit_hash: Option<String>,
    /// The ledger's directory, relative to the backup (`channels/<id>`).
    pub path: String,
}

/// A channel left out of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkippedChannel {
    /// The channel id.
    pub channel_id: String,
    /// Why it is not in the backup.
    pub reason: String,
}

/// The tip of a checkpoint, read under the same lock that took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointTip {
    /// Blocks in the checkpoint.
    pub height: u64,
    /// Hash of the last one.
    pub last_hash: Option<Hash>,
    /// A peer's commit hash after the last one.
    pub commit_hash: Option<Hash>,
}

impl BlockStore {
    /// Writes a RocksDB checkpoint of this ledger into `target` (which must not exist;
    /// its parent must) and returns the tip it holds. Holds the writer lock meanwhile, so
    /// no block is appended or committed during it and the tip is the checkpoint's (the
    /// wait for appends is one memtable flush). Writes that do not go through the writer
    /// lock (the consensus log) may or may not be in it.
    pub fn checkpoint(&self, target: &Path) -> Result<CheckpointTip, LedgerError> {
        let _writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tip = self.tip();
        let commit_hash = self.commit_hash()?;
        rocksdb::checkpoint::Checkpoint::new(&self.inner.db)?.create_checkpoint(target)?;
        Ok(CheckpointTip {
            height: tip.height,
            last_hash: tip.last_hash,
            commit_hash,
        })
    }
}

/// Checks a name used as one path component: a backup name, or a channel id read from a
/// manifest. 1 to [`NAME_BYTES_MAX`] bytes of ASCII letters, digits, `.`, `_` and `-`, not
/// starting with `.` (so no `..`, no hidden or temporary names, no separators).
pub fn validate_name(name: &str) -> Result<(), BackupError> {
    let bad = |why| {
        Err(BackupError::InvalidName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > NAME_BYTES_MAX {
        return bad("longer than 64 bytes");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad(
            "only ASCII letters, digits, '.', '_' and '-' are allowed (no path separators)",
        );
    }
    Ok(())
}

/// A backup being written (see the [module docs](self)). Dropped before
/// [`BackupWriter::finish`], it deletes what it wrote.
#[derive(Debug)]
pub struct BackupWriter {
    name: String,
    backups: PathBuf,
    partial: PathBuf,
    channels: Vec<ManifestChannel>,
    skipped: Vec<SkippedChannel>,
    finished: bool,
}

impl BackupWriter {
    /// Starts backup `name` of the node whose data directory is `data_dir`. Refuses an
    /// invalid name and an existing backup. The caller must not run two backups at once
    /// (a leftover partial backup of the same name is deleted here as stale).
    pub fn begin(data_dir: &Path, name: &str) -> Result<Self, BackupError> {
        validate_name(name)?;
        let backups = data_dir.join(BACKUPS_DIR);
        std::fs::create_dir_all(&backups).map_err(io_err("creating", &backups))?;
        if backups.join(name).exists() {
            return Err(BackupError::AlreadyExists(name.to_string()));
        }
        let partial = backups.join(format!(".{name}.partial"));
        if partial.exists() {
            tracing::warn!(dir = %partial.display(), "removing an interrupted backup");
            std::fs::remove_dir_all(&partial).map_err(io_err("removing", &partial))?;
        }
        let channels = partial.join("channels");
        std::fs::create_dir_all(&channels).map_err(io_err("creating", &channels))?;
        Ok(Self {
            name: name.to_string(),
            backups,
            partial,
            channels: Vec::new(),
            skipped: Vec::new(),
            finished: false,
        })
    }

    /// Checkpoints channel `id`'s ledger into the backup.
    pub fn add_channel(&mut self, id: &str, ledger: &BlockStore) -> Result<(), BackupError> {
        validate_name(id)?;
        let rel = format!("channels/{id}");
        let tip = ledger.checkpoint(&self.partial.join(&rel))?;
        self.channels.push(ManifestChannel {
            channel_id: id.to_string(),
            height: tip.height,
            last_block_hash: tip.last_hash.map(hex::encode).unwrap_or_default(),
            commit_hash: tip.commit_hash.map(hex::encode),
            path: rel,
        });
        Ok(())
    }

    /// Records a channel left out, and why.
    pub fn skip_channel(&mut self, id: &str, reason: impl Into<String>) {
        self.skipped.push(SkippedChannel {
            channel_id: id.to_string(),
            reason: reason.into(),
        });
    }

    /// Writes the manifest, makes everything durable and moves the backup into place:
    /// returns the manifest and the backup's directory.
    pub fn finish(
        mut self,
        node: &str,
        node_role: &str,
        created_at_ms: u64,
    ) -> Result<(Manifest, PathBuf), BackupError> {
        let mut channels = std::mem::take(&mut self.channels);
        channels.sort_by(|a, b| a.channel_id.cmp(&b.channel_id));
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            name: self.name.clone(),
            node: node.to_string(),
            node_role: node_role.to_string(),
            created_at_ms,
            channels,
            skipped: std::mem::take(&mut self.skipped),
        };
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BackupError::Manifest(e.to_string()))?;
        let path = self.partial.join(MANIFEST_FILE);
        std::fs::write(&path, text).map_err(io_err("writing", &path))?;
        sync_tree(&self.partial)?;
        let target = self.backups.join(&self.name);
        if target.exists() {
            return Err(BackupError::AlreadyExists(self.name.clone()));
        }
        std::fs::rename(&self.partial, &target).map_err(io_err("renaming", &self.partial))?;
        self.finished = true;
        sync_dir(&self.backups)?;
        Ok((manifest, target))
    }
}

impl Drop for BackupWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.partial);
        }
    }
}

/// fsyncs every file and directory under `root`, and `root` itself.
fn sync_tree(root: &Path) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(root).map_err(io_err("listing", root))? {
        let entry = entry.map_err(io_err("listing", root))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("inspecting", &path))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err("syncing", &path))?;
        }
    }
    sync_dir(root)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", dir))
}

/// Reads and checks a backup's manifest.
pub fn read_manifest(backup: &Path) -> Result<Manifest, BackupError> {
    use std::io::Read;
    let path = backup.join(MANIFEST_FILE);
    let mut text = Vec::new();
    File::open(&path)
        .map_err(io_err("opening", &path))?
        .take(MANIFEST_BYTES_MAX)
        .read_to_end(&mut text)
        .map_err(io_err("reading", &path))?;
    let m: Manifest = serde_json::from_slice(&text)
        .map_err(|e| BackupError::Manifest(format!("{}: {e}", path.display())))?;
    if m.format != MANIFEST_FORMAT {
        return Err(BackupError::Manifest(format!(
            "format {} (this ordo reads format {MANIFEST_FORMAT})",
            m.format
        )));
    }
    for c in &m.channels {
        validate_name(&c.channel_id)?;
        if c.path != format!("channels/{}", c.channel_id) {
            return Err(BackupError::Manifest(format!(
                "channel {:?} has path {:?}, expected channels/{}",
                c.channel_id, c.path, c.channel_id
            )));
        }
    }
    Ok(m)
}

/// A channel put in place by [`restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredChannel {
    /// The channel id.
    pub channel_id: String,
    /// Blocks restored (all verified).
    pub height: u64,
    /// Envelopes in them.
    pub envelopes: u64,
}

/// Restores `backup` into `data_dir`, which must be missing or empty: each channel is
/// copied into `channels/<id>.joining` (a node deletes such leftovers at start), opened,
/// verified block by block from the genesis block (`ordo_proto::verify::ChainVerifier` at `now_secs`) and
/// against the manifest (height, last block hash, commit hash), synced, and renamed into
/// place. Files are copied, never linked: the restored node must not share files with
/// the node the backup came from.
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    now_secs: u64,
) -> Result<(Manifest, Vec<RestoredChannel>), BackupError> {
    let manifest = read_manifest(backup)?;
    if data_dir.exists() {
        let mut entries = std::fs::read_dir(data_dir).map_err(io_err("listing", data_dir))?;
        if entries.next().is_some() {
            return Err(BackupError::TargetNotEmpty(data_dir.to_path_buf()));
        }
    }
    let channels_dir = data_dir.join("channels");
    std::fs::create_dir_all(&channels_dir).map_err(io_err("creating", &channels_dir))?;
    let mut restored = Vec::new();
    for c in &manifest.channels {
        let tmp = channels_dir.join(format!("{}.joining", c.channel_id));
        let done = copy_tree(&backup.join(&c.path), &tmp)
            .and_then(|()| verify_restored(&tmp, c, now_secs))
            .and_then(|r| {
                sync_tree(&tmp)?;
                let target = channels_dir.join(&c.channel_id);
                std::fs::rename(&tmp, &target).map_err(io_err("renaming", &tmp))?;
                sync_dir(&channels_dir)?;
                Ok(r)
            });
        match done {
            Ok(r) => restored.push(r),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        }
    }
    sync_dir(data_dir)?;
    Ok((manifest, restored))
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(to).map_err(io_err("creating", to))?;
    for entry in std::fs::read_dir(from).map_err(io_err("listing", from))? {
        let entry = entry.map_err(io_err("listing", from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io_err("inspecting", &src))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).map_err(io_err("copying", &src))?;
        } else {
            return Err(BackupError::Manifest(format!(
                "{} is neither a file nor a directory",
                src.display()
            )));
        }
    }
    Ok(())
}

fn verify_restored(
    dir: &Path,
    c: &ManifestChannel,
    now_secs: u64,
) -> Result<RestoredChannel, BackupError> {
    let fail = |why: String| BackupError::Verify {
        channel: c.channel_id.clone(),
        why,
    };
    let store = BlockStore::open(dir).map_err(|e| fail(e.to_string()))?;
    if store.height() != c.height {
        return Err(fail(format!(
            "height {} but the manifest says {}",
            store.height(),
            c.height
        )));
    }
    let last = store.last_hash().map(hex::encode).unwrap_or_default();
    if last != c.last_block_hash {
        return Err(fail(format!(
            "last block hash {last} but the manifest says {}",
            c.last_block_hash
        )));
    }
    let commit = store
        .commit_hash()
        .map_err(|e| fail(e.to_string()))?
        .map(hex::encode);
    if commit != c.commit_hash {
        return Err(fail(format!(
            "commit hash {commit:?} but the manifest says {:?}",
            c.commit_hash
        )));
    }
    let mut verifier = store.chain_verifier().map_err(|e| fail(e.to_string()))?;
    let mut envelopes = 0u64;
    for block in store.blocks(verifier.next_number(), c.height) {
        let block = block.map_err(|e| fail(e.to_string()))?;
        let number = verifier.next_number();
        verifier
            .check(&block, now_secs)
            .map_err(|e| fail(format!("block {number}: {e}")))?;
        envelopes += block.data.as_ref().map_or(0, |d| d.data.len() as u64);
    }
    if verifier.next_number() != c.height {
        return Err(fail(format!(
            "{} blocks readable, the manifest says {}",
            verifier.next_number(),
            c.height
        )));
    }
    Ok(RestoredChannel {
        channel_id: c.channel_id.clone(),
        height: c.height,
        envelopes,
    })
}

#[cfg(test)]
mod tests;
