//! Channel snapshots: a peer's committed state at one height as portable files, so that a
//! new peer can join the channel there instead of replaying every block from genesis.
//!
//! A snapshot of channel `C` at height `h` (blocks `0..h` committed) is a directory:
//!
//! ```text
//! manifest.json      what the snapshot is, the hash of every file, the taker's signature
//! state.records      the world state after block h-1 (`state` column family, as stored)
//! txids.records      the tx-id index after block h-1 (duplicate detection, CommitStatus),
//!                    less the entries below the expiry floor (`expiry` module)
//! config_block.pb    the config block in force after block h-1, as the peer stored it
//! ```
//!
//! The two record files share one format ([`records`]): a 16-byte header (magic, kind,
//! version), then `u32 BE key length ‖ key ‖ u32 BE value length ‖ value` per record, in
//! strictly increasing key order (RocksDB's order, so the import is a sorted load). Keys
//! and values are the ledger's own encodings (crate docs, `state` module).
//!
//! **What it holds and what it does not.** State, tx index, commit hash, the last block's
//! hash and the config in force: everything validating block `h` and later needs. No
//! block below `h` and no key history: a peer joined from it answers reads below `h`
//! with [`LedgerError::Pruned`] and history from `h` on.
//!
//! **Consistency without pausing commits.** [`SnapshotWriter::write`] holds the ledger's
//! writer lock only while it takes a RocksDB snapshot and reads the tip, the commit hash
//! and the config in force; the files are then written from that snapshot while blocks
//! keep committing. Every block is committed in one write batch, so the snapshot holds
//! whole blocks only.
//!
//! **Trust.** The manifest carries the taking peer's certificate and its Ed25519
//! signature over the manifest ([`SnapshotManifest::signing_bytes`]); the files are bound
//! to it by their SHA-256. The ledger checks the files against the manifest; who may sign
//! and whether the orderers' chain agrees with `height`, `last_block_hash` and the config
//! block is the joining peer's check (`ordo_peer`), before anything is imported.
//!
//! **Atomicity.** A snapshot is written in `<parent>/.<name>.partial` and renamed into
//! place only after every file and the manifest are fsynced; an import builds a new
//! ledger that the caller moves into place only once complete. A crash leaves no
//! half snapshot and no half ledger.

mod export;
mod import;
pub mod records;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::LedgerError;

pub use export::SnapshotWriter;
pub use import::import;

/// The folder of a peer's data directory holding the snapshots it took.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// The manifest's file name.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The world state's file name.
pub const STATE_FILE: &str = "state.records";
/// The tx-id index's file name.
pub const TXIDS_FILE: &str = "txids.records";
/// The config block's file name.
pub const CONFIG_BLOCK_FILE: &str = "config_block.pb";
/// The files every snapshot holds besides the manifest, in manifest order.
pub const DATA_FILES: [&str; 3] = [STATE_FILE, TXIDS_FILE, CONFIG_BLOCK_FILE];
/// Format version of the manifest and the record files this build writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;
/// Largest manifest read (it is a few hundred bytes plus a certificate).
const MANIFEST_BYTES_MAX: u64 = 1024 * 1024;
/// Largest config block read (a block is at most tens of MiB).
pub(crate) const CONFIG_BLOCK_BYTES_MAX: u64 = 128 * 1024 * 1024;

/// Why a snapshot could not be written, read or imported. Nothing already stored is
/// changed by a failed import.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The manifest is missing, unreadable, of another format, or inconsistent.
    #[error("snapshot manifest: {0}")]
    Manifest(String),
    /// A file does not match what the manifest says of it (size, hash, record count),
    /// or its content is malformed.
    #[error("snapshot file {file}: {why}")]
    File {
        /// The file's name within the snapshot.
        file: String,
        /// What is wrong with it.
        why: String,
    },
    /// The ledger to import into is not empty.
    #[error("the target ledger is not empty (height {0}): import only into a new ledger")]
    NotEmpty(u64),
    /// A snapshot of that name exists already.
    #[error("snapshot {0} already exists")]
    AlreadyExists(PathBuf),
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

impl From<rocksdb::Error> for SnapshotError {
    fn from(e: rocksdb::Error) -> Self {
        SnapshotError::Ledger(LedgerError::Storage(e))
    }
}

pub(crate) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io { what, path, source }
}

/// One data file of a snapshot, as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    /// Its name within the snapshot directory.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Records in it (1 for the config block).
    pub records: u64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// What a snapshot is: written as `manifest.json` (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotManifest {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// The channel.
    pub channel_id: String,
    /// Committed blocks at the snapshot: the joining peer's next block is `height`.
    pub height: u64,
    /// Hex hash of block `height - 1`.
    pub last_block_hash: String,
    /// Hex commit hash after block `height - 1`.
    pub commit_hash: String,
    /// The number of the config block in `config_block.pb`.
    pub config_block_number: u64,
    /// The expiry floor after block `height - 1` (ms; `expiry` module): `txids.records`
    /// holds no entry signed below it. Absent (0) when the channel never expired a
    /// transaction, so such a snapshot reads the same in builds older than expiry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expiry_floor_ms: u64,
    /// When it was taken, ms since the Unix epoch (the taker's clock).
    pub created_at_ms: u64,
    /// The data files, in [`DATA_FILES`] order.
    pub files: Vec<SnapshotFile>,
    /// Hex of the taking peer's certificate.
    pub signer_cert: String,
    /// Hex Ed25519 signature by that certificate's key over
    /// [`SnapshotManifest::signing_bytes`]; empty until signed.
    pub signature: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SnapshotManifest {
    /// The bytes the signature covers: the manifest's JSON with `signature` empty, so
    /// every other field (the signer's certificate included) is bound by it.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let unsigned = SnapshotManifest {
            signature: String::new(),
            ..self.clone()
        };
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }

    /// The hash of block `height - 1`.
    pub fn last_block_hash(&self) -> Result<ordo_proto::hash::Hash, SnapshotError> {
        hash_field("last_block_hash", &self.last_block_hash)
    }

    /// The commit hash after block `height - 1`.
    pub fn commit_hash(&self) -> Result<ordo_proto::hash::Hash, SnapshotError> {
        hash_field("commit_hash", &self.commit_hash)
    }

    /// The manifest's entry for data file `name`.
    pub fn file(&self, name: &str) -> Result<&SnapshotFile, SnapshotError> {
        self.files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| SnapshotError::Manifest(format!("no entry for file {name}")))
    }

    /// Checks what can be checked of the manifest alone: format, names, hashes'
    /// shapes, heights.
    pub fn check(&self) -> Result<(), SnapshotError> {
        let bad = |m: String| Err(SnapshotError::Manifest(m));
        if self.format != SNAPSHOT_FORMAT {
            return bad(format!(
                "format {} (this ordo reads format {SNAPSHOT_FORMAT})",
                self.format
            ));
        }
        if crate::backup::validate_name(&self.channel_id).is_err() {
            return bad(format!("unusable channel id {:?}", self.channel_id));
        }
        if self.height == 0 {
            return bad("height 0: a snapshot holds at least the genesis block's effects".into());
        }
        if self.config_block_number >= self.height {
            return bad(format!(
                "config block {} is not below the height {}",
                self.config_block_number, self.height
            ));
        }
        self.last_block_hash()?;
        self.commit_hash()?;
        let names: Vec<&str> = self.files.iter().map(|f| f.name.as_str()).collect();
        if names != DATA_FILES {
            return bad(format!("files {names:?}, expected {DATA_FILES:?}"));
        }
        for f in &self.files {
            let digest = hex::decode(&f.sha256).ok();
            if digest.map(|d| d.len()) != Some(32) {
                return bad(format!("file {}: sha256 is not 32 bytes of hex", f.name));
            }
        }
        if hex::decode(&self.signer_cert).is_err() {
            return bad("signer_cert is not hex".into());
        }
        Ok(())
    }

    /// The signer's certificate bytes.
    pub fn signer_cert_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        hex::decode(&self.signer_cert)
            .map_err(|e| SnapshotError::Manifest(format!("signer_cert: {e}")))
    }

    /// The signature bytes.
    pub fn signature_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        hex::decode(&self.signature).map_err(|e| SnapshotError::Manifest(format!("signature: {e}")))
    }
}

fn hash_field(name: &str, hex_text: &str) -> Result<ordo_proto::hash::Hash, SnapshotError> {
    hex::decode(hex_text)
        .ok()
        .and_then(|b| ordo_proto::hash::Hash::try_from(b.as_slice()).ok())
        .ok_or_else(|| SnapshotError::Manifest(format!("{name} is not 32 bytes of hex")))
}

/// Reads and checks ([`SnapshotManifest::check`]) a snapshot's manifest.
pub fn read_manifest(snapshot: &Path) -> Result<SnapshotManifest, SnapshotError> {
    let path = snapshot.join(MANIFEST_FILE);
    let mut text = Vec::new();
    File::open(&path)
        .map_err(io_err("opening", &path))?
        .take(MANIFEST_BYTES_MAX + 1)
        .read_to_end(&mut text)
        .map_err(io_err("reading", &path))?;
    if text.len() as u64 > MANIFEST_BYTES_MAX {
        return Err(SnapshotError::Manifest(format!(
            "{} is larger than {MANIFEST_BYTES_MAX} bytes",
            path.display()
        )));
    }
    let m: SnapshotManifest = serde_json::from_slice(&text)
        .map_err(|e| SnapshotError::Manifest(format!("{}: {e}", path.display())))?;
    m.check()?;
    Ok(m)
}

/// Reads the snapshot's config block file, checked against the manifest (size and hash).
pub fn read_config_block(
    snapshot: &Path,
    manifest: &SnapshotManifest,
) -> Result<ordo_proto::pb::common::Block, SnapshotError> {
    use prost::Message;
    let entry = manifest.file(CONFIG_BLOCK_FILE)?;
    let path = snapshot.join(CONFIG_BLOCK_FILE);
    let bad = |why: String| SnapshotError::File {
        file: CONFIG_BLOCK_FILE.into(),
        why,
    };
    if entry.bytes > CONFIG_BLOCK_BYTES_MAX {
        return Err(bad(format!(
            "{} bytes, above the {CONFIG_BLOCK_BYTES_MAX} allowed",
            entry.bytes
        )));
    }
    let mut bytes = Vec::new();
    File::open(&path)
        .map_err(io_err("opening", &path))?
        .take(entry.bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("reading", &path))?;
    if bytes.len() as u64 != entry.bytes {
        return Err(bad(format!(
            "{} bytes or more, the manifest says {}",
            bytes.len(),
            entry.bytes
        )));
    }
    if hex::encode(ordo_proto::hash::sha256(&bytes)) != entry.sha256 {
        return Err(bad("its SHA-256 differs from the manifest's".into()));
    }
    let block = ordo_proto::pb::common::Block::decode(bytes.as_slice())
        .map_err(|e| bad(format!("does not decode as a block: {e}")))?;
    if ordo_proto::block::number(&block) != manifest.config_block_number {
        return Err(bad(format!(
            "holds block {}, the manifest says config block {}",
            ordo_proto::block::number(&block),
            manifest.config_block_number
        )));
    }
    Ok(block)
}

#[cfg(test)]
mod tests;
