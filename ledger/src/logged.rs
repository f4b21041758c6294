//! Blocks stored by reference to the consensus log entry that carried them.
//!
//! A replicated backend (raft) first makes each block durable as an entry of the
//! channel's consensus log, and applies it to the ledger once it commits. Storing the
//! block's bytes a second time would double what every block costs the disk (the WAL,
//! then a blob file at flush), so the ledger can instead record *where in the log* the
//! block already is: [`BlockStore::append_logged`](crate::BlockStore::append_logged).
//!
//! ## Record format
//!
//! A `blocks` value that starts with byte `0x00` is a reference (a protobuf-encoded
//! block always starts with the key of field 1, `0x0a`, so the two never collide and
//! ledgers written before references existed read as before):
//!
//! | bytes | meaning |
//! |---|---|
//! | 1 | `0x00` |
//! | 8 | consensus log index, `u64` BE |
//! | 4 | offset of the block's bytes within that entry's stored value, `u32` BE |
//! | rest | this node's metadata of the block, encoded as protobuf field 3 of `Block` |
//!
//! The entry holds the block encoded **without** metadata (fields 1 and 2 only) from
//! `offset` to its end. Because protobuf fields concatenate, those bytes followed by the
//! record's metadata field are exactly the encoding of the signed block, so
//! [`BlockStore::block_bytes`](crate::BlockStore::block_bytes) returns what an inline
//! append would have stored — Deliver sends it unchanged.
//!
//! ## Rules the consensus log must keep
//!
//! The log owns the entry's key, the ledger only points at it. So an entry a block
//! references is never deleted or overwritten: it was committed (a log only truncates
//! uncommitted tails) and log compaction ([`ConsensusLog::discard`]) removes only entries
//! the backend knows carry no referenced block. A reference is written only after its
//! entry was synced (raft-rs hands out committed entries only once they are persisted),
//! and it is checked against the entry when written (length and header bytes), so a
//! wrong offset is refused instead of stored.
//!
//! [`ConsensusLog::discard`]: crate::ConsensusLog::discard

use bytes::{Bytes, BytesMut};
use ordo_proto::pb::common::Block;
use prost::Message;

use crate::LedgerError;

/// First byte of a `blocks` value that refers to a consensus log entry.
const REFERENCE_TAG: u8 = 0x00;
/// Tag, index and offset.
const REFERENCE_HEAD: usize = 1 + 8 + 4;

/// Where a block's bytes (without metadata) already are on disk: in the stored value of
/// a consensus log entry, from `offset` to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The consensus log index of the entry.
    pub index: u64,
    /// Where in the entry's stored bytes the block's encoding starts.
    pub offset: u32,
}

/// The block's metadata as protobuf field 3 (empty when it has none).
fn metadata_field(block: &Block) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(m) = &block.metadata {
        prost::encoding::message::encode(3, m, &mut out);
    }
    out
}

/// The `blocks` value recording `block` as the bytes at `at` plus its metadata.
pub(crate) fn encode_reference(at: LogPosition, block: &Block) -> Vec<u8> {
    let metadata = metadata_field(block);
    let mut out = Vec::with_capacity(REFERENCE_HEAD + metadata.len());
    out.push(REFERENCE_TAG);
    out.extend_from_slice(&at.index.to_be_bytes());
    out.extend_from_slice(&at.offset.to_be_bytes());
    out.extend_from_slice(&metadata);
    out
}

/// Checks that `entry` (the stored log value at `at.index`) holds `block` without its
/// metadata from `at.offset` on: the right length, and the header's bytes (the header
/// commits to the data through its data hash).
pub(crate) fn check_entry(entry: &[u8], at: LogPosition, block: &Block) -> Result<(), LedgerError> {
    let refused = |why: &str| {
        LedgerError::InvalidBlock(format!(
            "consensus log entry {} does not hold this block at offset {}: {why}",
            at.index, at.offset
        ))
    };
    let body = entry
        .get(at.offset as usize..)
        .ok_or_else(|| refused("the entry is shorter"))?;
    let unsigned_len = block.encoded_len() - metadata_field(block).len();
    if body.len() != unsigned_len {
        return Err(refused(&format!(
            "{} bytes where the block needs {unsigned_len}",
            body.len()
        )));
    }
    let mut header = Vec::new();
    if let Some(h) = &block.header {
        prost::encoding::message::encode(1, h, &mut header);
    }
    if !body.starts_with(&header) {
        return Err(refused("another header"));
    }
    Ok(())
}

/// Whether a stored `blocks` value is a reference.
pub(crate) fn is_reference(value: &[u8]) -> bool {
    value.first() == Some(&REFERENCE_TAG)
}

/// The log position a stored `blocks` value refers to; `None` for an inline block (or a
/// reference too short to read, which [`resolve`] reports as corrupt).
pub(crate) fn position_of(value: &[u8]) -> Option<LogPosition> {
    if !is_reference(value) {
        return None;
    }
    let index = u64::from_be_bytes(value.get(1..9)?.try_into().ok()?);
    let offset = u32::from_be_bytes(value.get(9..13)?.try_into().ok()?);
    Some(LogPosition { index, offset })
}

/// The block encoding a stored `blocks` value stands for: the value itself, or — for a
/// reference — the log entry's bytes followed by the recorded metadata. `entry` reads a
/// consensus log entry by index.
pub(crate) fn resolve(
    number: u64,
    value: Vec<u8>,
    entry: impl FnOnce(u64) -> Result<Option<Vec<u8>>, LedgerError>,
) -> Result<Bytes, LedgerError> {
    if !is_reference(&value) {
        return Ok(Bytes::from(value));
    }
    let corrupt = |why: String| LedgerError::Corrupt(format!("block {number}: {why}"));
    let LogPosition { index, offset } = position_of(&value)
        .ok_or_else(|| corrupt(format!("a reference of {} bytes", value.len())))?;
    let offset = offset as usize;
    let stored = entry(index)?.ok_or_else(|| {
        corrupt(format!(
            "refers to consensus log entry {index}, which is not stored"
        ))
    })?;
    let body = stored.get(offset..).ok_or_else(|| {
        corrupt(format!(
            "refers to offset {offset} of consensus log entry {index}, which has {} bytes",
            stored.len()
        ))
    })?;
    let metadata = &value[REFERENCE_HEAD..];
    let mut out = BytesMut::with_capacity(body.len() + metadata.len());
    out.extend_from_slice(body);
    out.extend_from_slice(metadata);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_proto::block;

    fn signed_block() -> Block {
        let mut b = block::build(
            3,
            [7u8; 32],
            vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")],
        );
        b.metadata = Some(ordo_proto::pb::common::BlockMetadata {
            consenter_metadata: Bytes::from_static(b"raft position"),
            ..Default::default()
        });
        b
    }

    /// A log entry holding the block without metadata after `prefix` bytes of framing.
    fn entry_for(b: &Block, prefix: &[u8]) -> Vec<u8> {
        let unsigned = Block {
            metadata: None,
            ..b.clone()
        };
        let mut e = prefix.to_vec();
        e.extend_from_slice(&unsigned.encode_to_vec());
        e
    }

    #[test]
    fn a_reference_resolves_to_the_inline_encoding() {
        let b = signed_block();
        let entry = entry_for(&b, b"frame");
        let at = LogPosition {
            index: 9,
            offset: 5,
        };
        check_entry(&entry, at, &b).expect("the entry holds the block");
        let value = encode_reference(at, &b);
        assert_eq!(position_of(&value), Some(at));
        assert!(
            !is_reference(&b.encode_to_vec()),
            "inline blocks start with 0x0a"
        );
        let bytes = resolve(3, value, |i| {
            assert_eq!(i, 9);
            Ok(Some(entry.clone()))
        })
        .expect("resolve");
        assert_eq!(bytes.as_ref(), b.encode_to_vec().as_slice());
    }

    #[test]
    fn a_wrong_offset_or_block_is_refused_when_written() {
        let b = signed_block();
        let entry = entry_for(&b, b"frame");
        for offset in [4, 6, 500] {
            let at = LogPosition { index: 1, offset };
            assert!(matches!(
                check_entry(&entry, at, &b),
                Err(LedgerError::InvalidBlock(_))
            ));
        }
        let mut other = b.clone();
        if let Some(h) = other.header.as_mut() {
            h.number = 4;
        }
        let at = LogPosition {
            index: 1,
            offset: 5,
        };
        assert!(matches!(
            check_entry(&entry, at, &other),
            Err(LedgerError::InvalidBlock(_))
        ));
    }

    #[test]
    fn a_dangling_or_short_reference_is_corrupt() {
        let b = signed_block();
        let at = LogPosition {
            index: 2,
            offset: 5,
        };
        let value = encode_reference(at, &b);
        assert!(matches!(
            resolve(3, value.clone(), |_| Ok(None)),
            Err(LedgerError::Corrupt(_))
        ));
        assert!(matches!(
            resolve(3, value, |_| Ok(Some(b"abc".to_vec()))),
            Err(LedgerError::Corrupt(_))
        ));
        assert!(matches!(
            resolve(3, vec![0, 1, 2], |_| Ok(Some(Vec::new()))),
            Err(LedgerError::Corrupt(_))
        ));
    }
}
