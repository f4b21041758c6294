//! The record files of a snapshot: a header, then length-prefixed key/value records in
//! strictly increasing key order, hashed as they are written and as they are read.
//!
//! ```text
//! header   "ORDOSNAP" ‖ kind u32 BE ‖ version u32 BE          16 bytes
//! record   key length u32 BE ‖ key ‖ value length u32 BE ‖ value
//! ```
//!
//! The reader trusts nothing: lengths are bounded before anything is allocated
//! ([`MAX_KEY_BYTES`], [`MAX_VALUE_BYTES`]), keys must increase strictly (no duplicates,
//! RocksDB's order), and the file must end exactly after a record. The caller compares
//! the count and the hash ([`RecordReader::finish`]) with the manifest.

use std::io::{self, BufRead, Write};

use sha2::{Digest, Sha256};

/// The first 8 bytes of every record file.
pub const MAGIC: &[u8; 8] = b"ORDOSNAP";
/// The record files' format version.
pub const RECORDS_VERSION: u32 = 1;
/// Largest key accepted: a state key is a namespace and a key of at most 64 KiB each.
pub const MAX_KEY_BYTES: u32 = 2 * 64 * 1024 + 8;
/// Largest value accepted: a version and a value no bigger than a block.
pub const MAX_VALUE_BYTES: u32 = 128 * 1024 * 1024;
/// The header's length.
pub const HEADER_BYTES: u64 = 16;

/// One record: key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Which column family a record file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// World state.
    State = 1,
    /// Tx-id index.
    TxIds = 2,
}

/// Writes one record file, counting and hashing.
pub struct RecordWriter<W: Write> {
    out: W,
    hash: Sha256,
    records: u64,
    bytes: u64,
    last_key: Option<Vec<u8>>,
}

impl<W: Write> RecordWriter<W> {
    /// Starts a file of `kind` on `out` (writes the header).
    pub fn new(out: W, kind: Kind) -> io::Result<Self> {
        let mut w = Self {
            out,
            hash: Sha256::new(),
            records: 0,
            bytes: 0,
            last_key: None,
        };
        let mut header = Vec::with_capacity(HEADER_BYTES as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&(kind as u32).to_be_bytes());
        header.extend_from_slice(&RECORDS_VERSION.to_be_bytes());
        w.put(&header)?;
        Ok(w)
    }

    /// Appends one record. Keys must come in strictly increasing order (they come from a
    /// RocksDB iterator); a key or value over the limits is refused, as a reader would.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        if key.len() > MAX_KEY_BYTES as usize || value.len() > MAX_VALUE_BYTES as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "record of {} + {} bytes is over the limits",
                    key.len(),
                    value.len()
                ),
            ));
        }
        if self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "record keys are not in increasing order",
            ));
        }
        self.put(&(key.len() as u32).to_be_bytes())?;
        self.put(key)?;
        self.put(&(value.len() as u32).to_be_bytes())?;
        self.put(value)?;
        self.records += 1;
        self.last_key = Some(key.to_vec());
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and returns the writer with (records, bytes, SHA-256).
    pub fn finish(mut self) -> io::Result<(W, u64, u64, [u8; 32])> {
        self.out.flush()?;
        Ok((
            self.out,
            self.records,
            self.bytes,
            self.hash.finalize().into(),
        ))
    }
}

/// Reads one record file, counting and hashing; see the module docs for what it refuses.
pub struct RecordReader<R: BufRead> {
    input: R,
    hash: Sha256,
    records: u64,
    bytes: u64,
    last_key: Option<Vec<u8>>,
}

impl<R: BufRead> RecordReader<R> {
    /// Reads and checks the header of a file of `kind`.
    pub fn new(input: R, kind: Kind) -> Result<Self, String> {
        let mut r = Self {
            input,
            hash: Sha256::new(),
            records: 0,
            bytes: 0,
            last_key: None,
        };
        let mut header = [0u8; HEADER_BYTES as usize];
        r.take_exact(&mut header)
            .map_err(|e| format!("header: {e}"))?;
        if &header[..8] != MAGIC {
            return Err("not a snapshot record file (bad magic)".into());
        }
        let found_kind = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        if found_kind != kind as u32 {
            return Err(format!(
                "holds records of kind {found_kind}, expected {}",
                kind as u32
            ));
        }
        let version = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
        if version != RECORDS_VERSION {
            return Err(format!(
                "record format {version}, this ordo reads {RECORDS_VERSION}"
            ));
        }
        Ok(r)
    }

    /// The next record, `None` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record>, String> {
        let at_end = self
            .input
            .fill_buf()
            .map_err(|e| format!("reading: {e}"))?
            .is_empty();
        if at_end {
            return Ok(None);
        }
        let record = self.records;
        let key = self.take_field(MAX_KEY_BYTES, "key", record)?;
        let value = self.take_field(MAX_VALUE_BYTES, "value", record)?;
        if self.last_key.as_ref().is_some_and(|last| *last >= key) {
            return Err(format!(
                "record {record}: key not greater than the previous key"
            ));
        }
        self.last_key = Some(key.clone());
        self.records += 1;
        Ok(Some((key, value)))
    }

    fn take_field(&mut self, max: u32, what: &str, record: u64) -> Result<Vec<u8>, String> {
        let mut len = [0u8; 4];
        self.take_exact(&mut len)
            .map_err(|e| format!("record {record}: {what} length: {e}"))?;
        let len = u32::from_be_bytes(len);
        if len > max {
            return Err(format!(
                "record {record}: {what} of {len} bytes, above the {max} allowed"
            ));
        }
        let mut field = vec![0u8; len as usize];
        self.take_exact(&mut field)
            .map_err(|e| format!("record {record}: {what}: {e}"))?;
        Ok(field)
    }

    fn take_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(io::ErrorKind::UnexpectedEof, "the file is truncated")
            } else {
                e
            }
        })?;
        self.hash.update(&*buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Records read, bytes read and the SHA-256 of everything read.
    pub fn finish(self) -> (u64, u64, [u8; 32]) {
        (self.records, self.bytes, self.hash.finalize().into())
    }
}
