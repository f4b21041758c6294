//! Checking RocksDB's blob files record by record, to name the file — and the key, which
//! for the `blocks` column family is the block number — behind a "Blob CRC mismatch":
//! RocksDB reports that corruption without saying where it is.
//!
//! The format read here is RocksDB's blob log, version 1 (`db/blob/blob_log_format.h`),
//! all integers little-endian:
//!
//! ```text
//! header (30 B)   magic u32 = 0x00248f37, version u32 = 1, column family u32, flags u8,
//!                 compression u8, expiration range 2 × u64
//! record          key size u64, value size u64, expiration u64, header CRC u32 (masked
//!                 CRC-32C of the first 24 bytes), blob CRC u32 (masked CRC-32C of key ‖
//!                 value), key, value
//! footer (32 B)   magic u32, blob count u64, expiration range 2 × u64, CRC u32 (masked
//!                 CRC-32C of the first 28 bytes)
//! ```
//!
//! A file without a valid footer is one RocksDB is still writing (or left by a crash,
//! which RocksDB deletes when it opens the database): only its complete records are
//! checked, and a record cut short at its end is not damage.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0x0024_8f37;
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 30;
const FOOTER_LEN: u64 = 32;
const RECORD_HEADER_LEN: usize = 32;
/// How much of a value is read at once while its CRC is computed.
const CHUNK: usize = 64 * 1024;

/// Where a blob file is damaged: the first bad spot in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDamage {
    /// The blob file.
    pub file: PathBuf,
    /// The offset of the damaged part (a record's start, or the header's).
    pub offset: u64,
    /// The damaged record's key, when its header could still be trusted (a block number,
    /// `u64` big-endian, in the `blocks` column family).
    pub key: Option<Vec<u8>>,
    /// What is wrong.
    pub why: &'static str,
}

impl BlobDamage {
    /// The block number the damaged record holds, if its key is one.
    pub fn block_number(&self) -> Option<u64> {
        let key = self.key.as_deref()?;
        <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
    }
}

/// Checks every `*.blob` file in `dir` (a ledger's directory) and returns the first
/// damage found in each damaged file, sorted by file name.
pub fn find_damage(dir: &Path) -> io::Result<Vec<BlobDamage>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "blob") {
            files.push(path);
        }
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        match check_file(&file) {
            Ok(Some(damage)) => found.push(damage),
            Ok(None) => {}
            // Deleted by compaction or obsolete-file purging since it was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// The first damage in one blob file, `None` when every record checks.
pub fn check_file(path: &Path) -> io::Result<Option<BlobDamage>> {
    let damage = |offset: u64, key: Option<Vec<u8>>, why: &'static str| {
        Ok(Some(BlobDamage {
            file: path.to_path_buf(),
            offset,
            key,
            why,
        }))
    };
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if size < HEADER_LEN {
        return damage(0, None, "shorter than a blob file header");
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut header)?;
    if le32(&header[0..4]) != MAGIC {
        return damage(0, None, "header magic number mismatch");
    }
    if le32(&header[4..8]) != VERSION {
        return damage(0, None, "unknown blob file version");
    }
    let complete = size >= HEADER_LEN + FOOTER_LEN && footer_is_valid(&mut file, size)?;
    let data_end = if complete { size - FOOTER_LEN } else { size };

    let mut reader = BufReader::with_capacity(CHUNK, file);
    reader.seek(SeekFrom::Start(HEADER_LEN))?;
    let mut offset = HEADER_LEN;
    let mut chunk = vec![0u8; CHUNK];
    while offset < data_end {
        if data_end - offset < RECORD_HEADER_LEN as u64 {
            return if complete {
                damage(offset, None, "a record header runs past the footer")
            } else {
                Ok(None)
            };
        }
        let mut rh = [0u8; RECORD_HEADER_LEN];
        reader.read_exact(&mut rh)?;
        if mask(crc32c(0, &rh[..24])) != le32(&rh[24..28]) {
            return damage(offset, None, "record header CRC mismatch");
        }
        let key_len = le64(&rh[0..8]);
        let value_len = le64(&rh[8..16]);
        let body_len = key_len.checked_add(value_len);
        let body_start = offset + RECORD_HEADER_LEN as u64;
        let fits = body_len.is_some_and(|len| len <= data_end - body_start);
        if !fits {
            return if complete {
                damage(offset, None, "a record runs past the footer")
            } else {
                Ok(None)
            };
        }
        // Keys are a ledger's own (block numbers, log indexes): a key this long is damage
        // even though the header's CRC matched.
        if key_len > 64 * 1024 {
            return damage(offset, None, "a record key longer than 64 KiB");
        }
        let mut key = vec![0u8; key_len as usize];
        reader.read_exact(&mut key)?;
        let mut crc = crc32c(0, &key);
        let mut left = value_len;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            reader.read_exact(&mut chunk[..n])?;
            crc = crc32c(crc, &chunk[..n]);
            left -= n as u64;
        }
        if mask(crc) != le32(&rh[28..32]) {
            return damage(offset, Some(key), "blob CRC mismatch");
        }
        offset = body_start + key_len + value_len;
    }
    Ok(None)
}

fn footer_is_valid(file: &mut File, size: u64) -> io::Result<bool> {
    let mut footer = [0u8; FOOTER_LEN as usize];
    file.seek(SeekFrom::Start(size - FOOTER_LEN))?;
    file.read_exact(&mut footer)?;
    file.seek(SeekFrom::Start(HEADER_LEN))?;
    Ok(le32(&footer[0..4]) == MAGIC && mask(crc32c(0, &footer[..28])) == le32(&footer[28..32]))
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// RocksDB's masked CRC form (`util/crc32c.h`): rotated right by 15 bits plus a constant,
/// so that a CRC stored in data that is itself checksummed does not cancel out.
fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli) of `data`, continuing from `crc` (0 to start).
fn crc32c(crc: u32, data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = crc32c_table();
    let mut c = !crc;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value_and_extends() {
        assert_eq!(crc32c(0, b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(crc32c(0, b"1234"), b"56789"), 0xe306_9283);
    }

    /// A blob file as RocksDB writes it: header, `records`, footer.
    fn blob_file(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&[0u8; 16]);
        for (key, value) in records {
            let mut h = Vec::new();
            h.extend_from_slice(&(key.len() as u64).to_le_bytes());
            h.extend_from_slice(&(value.len() as u64).to_le_bytes());
            h.extend_from_slice(&0u64.to_le_bytes());
            let header_crc = mask(crc32c(0, &h));
            h.extend_from_slice(&header_crc.to_le_bytes());
            let blob_crc = mask(crc32c(crc32c(0, key), value));
            h.extend_from_slice(&blob_crc.to_le_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(key);
            out.extend_from_slice(value);
        }
        let mut f = Vec::new();
        f.extend_from_slice(&MAGIC.to_le_bytes());
        f.extend_from_slice(&(records.len() as u64).to_le_bytes());
        f.extend_from_slice(&[0u8; 16]);
        let crc = mask(crc32c(0, &f));
        f.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&f);
        out
    }

    fn check(bytes: &[u8]) -> Option<BlobDamage> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("000007.blob");
        std::fs::write(&path, bytes).expect("write");
        let damage = check_file(&path).expect("read");
        assert_eq!(
            find_damage(dir.path()).expect("scan"),
            damage.iter().cloned().collect::<Vec<_>>()
        );
        damage
    }

    #[test]
    fn an_intact_file_has_no_damage_and_a_flipped_value_byte_names_its_key() {
        let block_3 = 3u64.to_be_bytes();
        let block_4 = 4u64.to_be_bytes();
        let value = vec![7u8; 200_000];
        let file = blob_file(&[(&block_3, b"first"), (&block_4, &value)]);
        assert_eq!(check(&file), None);

        let mut flipped = file.clone();
        let last_value_byte = flipped.len() - FOOTER_LEN as usize - 1;
        flipped[last_value_byte] ^= 1;
        let damage = check(&flipped).expect("damage found");
        assert_eq!(damage.why, "blob CRC mismatch");
        assert_eq!(damage.block_number(), Some(4));
        assert_eq!(damage.offset, HEADER_LEN + 32 + 8 + 5);
    }

    #[test]
    fn a_damaged_record_header_or_file_header_is_named() {
        let file = blob_file(&[(&1u64.to_be_bytes(), b"value")]);
        let mut bad_header = file.clone();
        bad_header[HEADER_LEN as usize + 3] ^= 0x40;
        let damage = check(&bad_header).expect("damage found");
        assert_eq!(
            (damage.why, damage.offset, damage.key),
            ("record header CRC mismatch", HEADER_LEN, None)
        );

        let mut bad_magic = file;
        bad_magic[0] ^= 1;
        assert_eq!(
            check(&bad_magic).map(|d| d.why),
            Some("header magic number mismatch")
        );
    }

    #[test]
    fn a_file_still_being_written_is_checked_up_to_its_last_whole_record() {
        let file = blob_file(&[(&1u64.to_be_bytes(), b"one"), (&2u64.to_be_bytes(), b"two")]);
        let unfinished = &file[..file.len() - FOOTER_LEN as usize - 2];
        assert_eq!(check(unfinished), None);
        let mut damaged = unfinished.to_vec();
        damaged[HEADER_LEN as usize + 32 + 8] ^= 1;
        assert_eq!(
            check(&damaged).and_then(|d| d.block_number()),
            Some(1),
            "a damaged whole record is still found"
        );
    }
}
