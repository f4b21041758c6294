//! Archives of pruned blocks: self-verifying files a node writes before it deletes blocks
//! below its retention window, so that the chain's history is kept somewhere (another disk,
//! cold storage) even though the node no longer serves it.
//!
//! ## Layout
//!
//! ```text
//! <archive_dir>/<channel>/
//!   base.ordobase                                     only when the archive starts above block 0
//!   00000000000000000000-00000000000000000999.blocks  one segment per pruning step
//!   00000000000000001000-00000000000000001499.blocks
//! ```
//!
//! Segment names are the first and last block numbers, zero-padded so that name order is
//! chain order. A segment is written as `.<first>.partial`, fsynced, renamed into place
//! and its directory fsynced, all before the ledger deletes a block it holds: a crash
//! leaves either no segment (the blocks are still in the ledger) or a whole one (and the
//! next step starts after it). Leftover `.partial` files are removed when the archive is
//! opened.
//!
//! ## Segment format (integers big-endian)
//!
//! | part | bytes |
//! |---|---|
//! | header | `ORDOARCH` ‖ version `u32` = 1 ‖ channel length `u16` ‖ channel ‖ first block `u64` |
//! | record, once per block | length `u32` ‖ the block's stored encoding (what Deliver sends) |
//! | trailer | `ORDO-END` ‖ block count `u64` ‖ hash of the last block (32) ‖ SHA-256 of every byte before it (32) |
//!
//! A segment verifies on its own (the trailer's digest, the count, the blocks' numbers,
//! Merkle data hashes and hash links) and links to the segment before it (its first
//! block's previous hash is the hash in that segment's trailer). The whole archive
//! verifies like a chain fetched from an orderer — signatures under the BlockValidation
//! policy in force — from the genesis block, or from the base file when the archive starts
//! above it ([`verify`]). A file cut short has no trailer (or a wrong one) and is refused
//! as truncated, naming the file and the last whole block.
//!
//! The base file holds what verifying from the archive's first block needs: that block's
//! number, the hash it links to and the config block in force there (`ORDOBASE` ‖ version
//! `u32` ‖ first `u64` ‖ previous hash (32) ‖ config length `u32` ‖ config block ‖ SHA-256 of
//! the bytes before it).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;
use sha2::{Digest, Sha256};
use thiserror::Error;

use ordo_proto::hash::Hash;
use ordo_proto::verify::VerifyError;

use crate::base::Base;

mod verify;
pub use verify::{verify, ArchiveSummary};

/// First bytes of a segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"ORDOARCH";
/// First bytes of a segment's trailer.
pub(crate) const TRAILER_MAGIC: &[u8; 8] = b"ORDO-END";
/// First bytes of the base file.
pub(crate) const BASE_MAGIC: &[u8; 8] = b"ORDOBASE";
/// The format version of segments and the base file.
pub(crate) const ARCHIVE_VERSION: u32 = 1;
/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".blocks";
/// Name of the base file.
pub const BASE_FILE: &str = "base.ordobase";
/// Largest block record accepted when reading an archive: a block holds at most
/// `absolute_max_bytes` (64 MiB at most) of envelopes, plus headers and signatures.
pub(crate) const MAX_RECORD_BYTES: u32 = 2 * ordo_proto::config::MAX_ABSOLUTE_MAX_BYTES;
/// Length of a trailer: magic, count, last hash, digest.
pub(crate) const TRAILER_LEN: usize = 8 + 8 + 32 + 32;

/// Why an archive could not be written or does not verify.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file ends before its trailer: cut short by a full disk, a crash of a copy, or a
    /// transfer that stopped.
    #[error("{file}: truncated: {detail}")]
    Truncated {
        /// The file.
        file: PathBuf,
        /// Where it ends.
        detail: String,
    },
    /// A file's bytes are not what its writer wrote (digest, count, numbers, hashes).
    #[error("{file}: damaged: {detail}")]
    Damaged {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Segments do not follow one another: blocks are missing between two files, or two
    /// files hold the same blocks.
    #[error("archive {dir}: {detail}")]
    Layout {
        /// The channel's archive directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A block does not verify against the chain before it (links, Merkle data hash,
    /// last-config metadata, orderer signatures).
    #[error("{file}: block {number}: {source}")]
    Chain {
        /// The segment holding the block.
        file: PathBuf,
        /// The block.
        number: u64,
        /// Why it does not verify.
        source: VerifyError,
    },
}

/// Shorthand for an [`ArchiveError::Io`] on `path`.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One segment file, as named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The file.
    pub path: PathBuf,
    /// Its first block.
    pub first: u64,
    /// Its last block.
    pub last: u64,
}

/// The archive directory of one channel.
#[derive(Debug, Clone)]
pub struct Archive {
    dir: PathBuf,
    channel: String,
}

impl Archive {
    /// The archive of `channel` under `root` (`<root>/<channel>`), created if missing;
    /// removes segments a crash left half-written.
    pub fn open(root: &Path, channel: &str) -> Result<Self, ArchiveError> {
        let dir = root.join(channel);
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let path = entry.map_err(io_at(&dir))?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".partial"))
            {
                fs::remove_file(&path).map_err(io_at(&path))?;
            }
        }
        Ok(Self {
            dir,
            channel: channel.to_string(),
        })
    }

    /// The channel's archive directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segments, in chain order.
    pub fn segments(&self) -> Result<Vec<Segment>, ArchiveError> {
        segments_in(&self.dir)
    }

    /// The block after the last one archived (`None` when nothing is): a pruning step
    /// archives from there, so a crash after a segment was written but before the blocks
    /// were deleted does not write them twice.
    pub fn next_block(&self) -> Result<Option<u64>, ArchiveError> {
        Ok(self.segments()?.last().map(|s| s.last + 1))
    }

    /// Writes blocks `first..first + blocks.len()` as one segment (see the module docs),
    /// durable before it returns; with the base file first when the archive starts here
    /// above block 0. `blocks` are the stored encodings, in order.
    pub(crate) fn write_segment(
        &self,
        first: u64,
        blocks: &[Bytes],
        last_hash: Hash,
        base: Option<&Base>,
    ) -> Result<PathBuf, ArchiveError> {
        let Some(count) = u64::try_from(blocks.len()).ok().filter(|c| *c > 0) else {
            return Err(ArchiveError::Layout {
                dir: self.dir.clone(),
                detail: "a segment needs at least one block".into(),
            });
        };
        if self.segments()?.is_empty() && first > 0 {
            let base = base.ok_or_else(|| ArchiveError::Layout {
                dir: self.dir.clone(),
                detail: format!(
                    "the archive would start at block {first} but the ledger records no base"
                ),
            })?;
            self.write_base(base)?;
        }
        let last = first + count - 1;
        let tmp = self.dir.join(format!(".{first}.partial"));
        let mut out = DigestWriter::create(&tmp)?;
        out.put(SEGMENT_MAGIC)?;
        out.put(&ARCHIVE_VERSION.to_be_bytes())?;
        let channel = self.channel.as_bytes();
        let channel_len = u16::try_from(channel.len()).map_err(|_| ArchiveError::Layout {
            dir: self.dir.clone(),
            detail: "channel id longer than 65535 bytes".into(),
        })?;
        out.put(&channel_len.to_be_bytes())?;
        out.put(channel)?;
        out.put(&first.to_be_bytes())?;
        for block in blocks {
            let len = u32::try_from(block.len())
                .ok()
                .filter(|l| *l <= MAX_RECORD_BYTES)
                .ok_or_else(|| ArchiveError::Layout {
                    dir: self.dir.clone(),
                    detail: format!("a block of {} bytes is too large to archive", block.len()),
                })?;
            out.put(&len.to_be_bytes())?;
            out.put(block)?;
        }
        out.put(TRAILER_MAGIC)?;
        out.put(&count.to_be_bytes())?;
        out.put(last_hash.as_ref())?;
        let path = self.dir.join(segment_name(first, last));
        out.finish(&path)?;
        Ok(path)
    }

    fn write_base(&self, base: &Base) -> Result<(), ArchiveError> {
        let config = base
            .config_block
            .as_ref()
            .map(|b| b.encode_to_vec())
            .ok_or_else(|| ArchiveError::Layout {
                dir: self.dir.clone(),
                detail: format!(
                    "the ledger starts at block {} but records no config block",
                    base.first_block
                ),
            })?;
        let tmp = self.dir.join(".base.partial");
        let mut out = DigestWriter::create(&tmp)?;
        out.put(BASE_MAGIC)?;
        out.put(&ARCHIVE_VERSION.to_be_bytes())?;
        out.put(&base.first_block.to_be_bytes())?;
        out.put(base.prev_hash.as_ref())?;
        let len = u32::try_from(config.len()).map_err(|_| ArchiveError::Layout {
            dir: self.dir.clone(),
            detail: "config block too large".into(),
        })?;
        out.put(&len.to_be_bytes())?;
        out.put(&config)?;
        out.finish(&self.dir.join(BASE_FILE))
    }
}

/// The name of the segment holding blocks `first..=last`.
pub fn segment_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}{SEGMENT_SUFFIX}")
}

/// The segments in `dir`, in chain order; other files are ignored.
pub(crate) fn segments_in(dir: &Path) -> Result<Vec<Segment>, ArchiveError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let path = entry.map_err(io_at(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(range) = name.strip_suffix(SEGMENT_SUFFIX) else {
            continue;
        };
        let parsed = range
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        match parsed {
            Some((first, last)) if first <= last => out.push(Segment {
                path: path.clone(),
                first,
                last,
            }),
            _ => {
                return Err(ArchiveError::Layout {
                    dir: dir.to_path_buf(),
                    detail: format!("{name} is not named <first>-<last>{SEGMENT_SUFFIX}"),
                })
            }
        }
    }
    out.sort_by_key(|s| s.first);
    Ok(out)
}

/// A file written through a running SHA-256, ended by the digest, fsynced and renamed
/// into place with its directory fsynced.
struct DigestWriter {
    tmp: PathBuf,
    out: BufWriter<File>,
    digest: Sha256,
}

impl DigestWriter {
    fn create(tmp: &Path) -> Result<Self, ArchiveError> {
        let file = File::create(tmp).map_err(io_at(tmp))?;
        Ok(Self {
            tmp: tmp.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            digest: Sha256::new(),
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.digest.update(bytes);
        self.out.write_all(bytes).map_err(io_at(&self.tmp))
    }

    fn finish(mut self, path: &Path) -> Result<(), ArchiveError> {
        let digest = self.digest.finalize();
        self.out.write_all(&digest).map_err(io_at(&self.tmp))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_at(&self.tmp)(e.into_error()))?;
        file.sync_all().map_err(io_at(&self.tmp))?;
        drop(file);
        fs::rename(&self.tmp, path).map_err(io_at(path))?;
        if let Some(parent) = path.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_at(parent))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
