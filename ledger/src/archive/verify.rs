//! Reading an archive back and verifying it as a chain (see the [module docs](super) for
//! the format). Every length is bounded before anything is allocated for it, and every
//! file is checked against its own trailer before its blocks are trusted.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;
use sha2::{Digest, Sha256};

use ordo_proto::block as chain;
use ordo_proto::hash::Hash;
use ordo_proto::pb::common::Block;
use ordo_proto::verify::ChainVerifier;

use super::{
    io_at, segments_in, ArchiveError, Segment, ARCHIVE_VERSION, BASE_FILE, BASE_MAGIC,
    MAX_RECORD_BYTES, SEGMENT_MAGIC, TRAILER_LEN, TRAILER_MAGIC,
};

/// What a verified archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Its first block.
    pub first: u64,
    /// Its last block.
    pub last: u64,
    /// How many segment files.
    pub files: usize,
    /// Envelopes in all its blocks.
    pub envelopes: u64,
    /// The hash of its last block: what the first block a ledger still holds must link to.
    pub last_hash: Hash,
}

/// Verifies the archive of one channel in `dir` (`<archive_dir>/<channel>`): every segment
/// whole (trailer, count, digest), the segments contiguous, and the chain they hold
/// verified block by block like one fetched from an orderer (hash links, Merkle data
/// hashes, last-config metadata, orderer signatures under the BlockValidation policy in
/// force, certificates valid at `now_secs`) — from the genesis block, or from the base
/// file when the archive starts above it. `on_block` sees each verified block (progress).
pub fn verify(
    dir: &Path,
    now_secs: u64,
    mut on_block: impl FnMut(&Block),
) -> Result<ArchiveSummary, ArchiveError> {
    let channel = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ArchiveError::Layout {
            dir: dir.to_path_buf(),
            detail: "not a channel's archive directory (<archive_dir>/<channel>)".into(),
        })?;
    let segments = segments_in(dir)?;
    let (Some(first_seg), Some(last_seg)) = (segments.first(), segments.last()) else {
        return Err(ArchiveError::Layout {
            dir: dir.to_path_buf(),
            detail: "holds no segment (<first>-<last>.blocks)".into(),
        });
    };
    let mut verifier = if first_seg.first == 0 {
        ChainVerifier::new()
    } else {
        read_base(&dir.join(BASE_FILE), first_seg.first)?
    };
    let mut envelopes = 0u64;
    let mut last_hash = None;
    for seg in &segments {
        if seg.first != verifier.next_number() {
            return Err(ArchiveError::Layout {
                dir: dir.to_path_buf(),
                detail: format!(
                    "{} starts at block {} but the block after the previous segment is {}",
                    file_name(&seg.path),
                    seg.first,
                    verifier.next_number()
                ),
            });
        }
        last_hash = Some(read_segment(seg, channel, |number, block| {
            verifier
                .check(&block, now_secs)
                .map_err(|source| ArchiveError::Chain {
                    file: seg.path.clone(),
                    number,
                    source,
                })?;
            envelopes += block.data.as_ref().map_or(0, |d| d.data.len() as u64);
            on_block(&block);
            Ok(())
        })?);
    }
    Ok(ArchiveSummary {
        first: first_seg.first,
        last: last_seg.last,
        files: segments.len(),
        envelopes,
        last_hash: last_hash.unwrap_or_default(),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads and checks one segment, handing each block to `on_block` in order; returns the
/// hash of its last block.
pub(crate) fn read_segment(
    seg: &Segment,
    channel: &str,
    mut on_block: impl FnMut(u64, Block) -> Result<(), ArchiveError>,
) -> Result<Hash, ArchiveError> {
    let path = &seg.path;
    let damaged = |detail: String| ArchiveError::Damaged {
        file: path.clone(),
        detail,
    };
    let file = File::open(path).map_err(io_at(path))?;
    let size = file.metadata().map_err(io_at(path))?.len();
    if !has_trailer(&file, size).map_err(io_at(path))? {
        let whole = count_whole_records(path)?;
        return Err(ArchiveError::Truncated {
            file: path.clone(),
            detail: match whole {
                Some(0) | None => "no trailer, and not one whole block".into(),
                Some(n) => format!(
                    "no trailer: the file ends after {n} whole blocks (the last whole one is block {})",
                    seg.first + n - 1
                ),
            },
        });
    }
    let body_end = size - TRAILER_LEN as u64;
    let mut reader = HashingReader::new(BufReader::with_capacity(1 << 20, file), path);
    let first = read_header(&mut reader, channel)?;
    if first != seg.first {
        return Err(damaged(format!(
            "its header says it starts at block {first}, its name at {}",
            seg.first
        )));
    }
    let mut number = first;
    let mut last = None;
    while reader.pos < body_end {
        let len = u32::from_be_bytes(reader.array()?);
        if len > MAX_RECORD_BYTES || reader.pos + u64::from(len) > body_end {
            return Err(damaged(format!(
                "block {number}: a record of {len} bytes does not fit before the trailer"
            )));
        }
        let bytes = reader.bytes(len as usize)?;
        let block = Block::decode(bytes)
            .map_err(|e| damaged(format!("block {number} does not decode: {e}")))?;
        if chain::number(&block) != number {
            return Err(damaged(format!(
                "block {} stored where block {number} belongs",
                chain::number(&block)
            )));
        }
        last = Some(chain::hash(&block));
        on_block(number, block)?;
        number += 1;
    }
    let magic: [u8; 8] = reader.array()?;
    let count = u64::from_be_bytes(reader.array()?);
    let trailer_hash: [u8; 32] = reader.array()?;
    let computed = reader.digest.clone().finalize();
    let stored: [u8; 32] = reader.array()?;
    if &magic != TRAILER_MAGIC {
        return Err(damaged("the trailer's magic is wrong".into()));
    }
    if count != number - first || number - 1 != seg.last {
        return Err(damaged(format!(
            "holds blocks {first}..{number} but its trailer counts {count} and its name ends at {}",
            seg.last
        )));
    }
    if computed.as_slice() != stored {
        return Err(damaged(
            "its SHA-256 digest does not match its bytes".into(),
        ));
    }
    let last = last.ok_or_else(|| damaged("holds no block".into()))?;
    if last.as_ref() != trailer_hash.as_slice() {
        return Err(damaged(
            "its trailer names another hash than its last block's".into(),
        ));
    }
    Ok(last)
}

/// Whether the file ends with a trailer's magic where a trailer would start.
fn has_trailer(file: &File, size: u64) -> std::io::Result<bool> {
    let Some(at) = size.checked_sub(TRAILER_LEN as u64) else {
        return Ok(false);
    };
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, at)?;
    Ok(&magic == TRAILER_MAGIC)
}

/// How many whole block records a segment without a trailer holds (`None` when even its
/// header is cut short or wrong).
fn count_whole_records(path: &Path) -> Result<Option<u64>, ArchiveError> {
    let file = File::open(path).map_err(io_at(path))?;
    let mut reader = HashingReader::new(BufReader::new(file), path);
    if read_header(&mut reader, "").is_err_and(|e| matches!(e, ArchiveError::Truncated { .. })) {
        return Ok(None);
    }
    let mut whole = 0;
    loop {
        let Ok(len) = reader.array::<4>().map(u32::from_be_bytes) else {
            return Ok(Some(whole));
        };
        if len > MAX_RECORD_BYTES || reader.skip(u64::from(len)).is_err() {
            return Ok(Some(whole));
        }
        whole += 1;
    }
}

/// Reads a segment header; returns its first block. `channel` empty skips the channel
/// check.
fn read_header<R: Read>(r: &mut HashingReader<'_, R>, channel: &str) -> Result<u64, ArchiveError> {
    let damaged = |detail: String| ArchiveError::Damaged {
        file: r.path.to_path_buf(),
        detail,
    };
    let magic: [u8; 8] = r.array()?;
    if &magic != SEGMENT_MAGIC {
        return Err(damaged("not an Ordo archive segment (wrong magic)".into()));
    }
    let version = u32::from_be_bytes(r.array()?);
    if version != ARCHIVE_VERSION {
        return Err(damaged(format!(
            "archive format {version}, this build reads {ARCHIVE_VERSION}"
        )));
    }
    let len = u16::from_be_bytes(r.array()?);
    let name = r.bytes(len.into())?;
    if !channel.is_empty() && name.as_ref() != channel.as_bytes() {
        return Err(damaged(format!(
            "holds channel {:?}, the directory is {channel:?}",
            String::from_utf8_lossy(&name)
        )));
    }
    Ok(u64::from_be_bytes(r.array()?))
}

/// A verifier resuming at the base file's block, which must be `first`.
fn read_base(path: &PathBuf, first: u64) -> Result<ChainVerifier, ArchiveError> {
    let damaged = |detail: String| ArchiveError::Damaged {
        file: path.clone(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ArchiveError::Layout {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            detail: format!("starts at block {first} but has no {BASE_FILE} to verify it from"),
        },
        _ => io_at(path)(e),
    })?;
    let (body, digest) = bytes
        .split_last_chunk::<32>()
        .ok_or_else(|| ArchiveError::Truncated {
            file: path.clone(),
            detail: "shorter than its digest".into(),
        })?;
    if Sha256::digest(body).as_slice() != digest {
        return Err(ArchiveError::Truncated {
            file: path.clone(),
            detail: "its SHA-256 digest does not match its bytes (cut short or changed)".into(),
        });
    }
    let mut r = HashingReader::new(body, path);
    let magic: [u8; 8] = r.array()?;
    let version = u32::from_be_bytes(r.array()?);
    if &magic != BASE_MAGIC || version != ARCHIVE_VERSION {
        return Err(damaged("not an Ordo archive base file of format 1".into()));
    }
    let base_first = u64::from_be_bytes(r.array()?);
    let prev: [u8; 32] = r.array()?;
    let len = u32::from_be_bytes(r.array()?);
    if u64::from(len) + r.pos != body.len() as u64 {
        return Err(damaged(format!(
            "a config block of {len} bytes does not fit"
        )));
    }
    let config_block = Block::decode(r.bytes(len as usize)?)
        .map_err(|e| damaged(format!("its config block does not decode: {e}")))?;
    if base_first != first {
        return Err(damaged(format!(
            "it is the base of block {base_first}, the first segment starts at {first}"
        )));
    }
    let number = chain::number(&config_block);
    let config = ordo_proto::config::config_from_block(&config_block)
        .map_err(|e| damaged(format!("config block {number}: {e}")))?;
    ChainVerifier::resume(first, Hash::from(prev), config, number)
        .map_err(|e| damaged(format!("config block {number}: {e}")))
}

/// Reads through a running SHA-256, counting the bytes read.
struct HashingReader<'a, R> {
    inner: R,
    path: &'a Path,
    digest: Sha256,
    pos: u64,
}

impl<'a, R: Read> HashingReader<'a, R> {
    fn new(inner: R, path: &'a Path) -> Self {
        Self {
            inner,
            path,
            digest: Sha256::new(),
            pos: 0,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ArchiveError> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ArchiveError::Truncated {
                file: self.path.to_path_buf(),
                detail: format!("ends at byte {} in the middle of a record", self.pos),
            },
            _ => io_at(self.path)(e),
        })?;
        self.digest.update(&*buf);
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ArchiveError> {
        let mut out = [0u8; N];
        self.fill(&mut out)?;
        Ok(out)
    }

    /// `len` bytes; the caller bounded `len` already.
    fn bytes(&mut self, len: usize) -> Result<Bytes, ArchiveError> {
        let mut out = vec![0u8; len];
        self.fill(&mut out)?;
        Ok(out.into())
    }

    fn skip(&mut self, len: u64) -> Result<(), ArchiveError> {
        let copied = std::io::copy(&mut (&mut self.inner).take(len), &mut std::io::sink())
            .map_err(io_at(self.path))?;
        self.pos += copied;
        if copied < len {
            return Err(ArchiveError::Truncated {
                file: self.path.to_path_buf(),
                detail: "ends inside a record".into(),
            });
        }
        Ok(())
    }
}
