//! Reading blocks back: a stored value resolved (inline, or a reference into the consensus
//! log), decoded and checked against the number it is stored under, one at a time or as a
//! forward range.

use bytes::Bytes;
use prost::Message as _;
use rocksdb::DBIteratorWithThreadMode;

use ordo_proto::pb::common::Block;

use crate::{cf, logged, BlockStore, Db, LedgerError, CF_CONSENSUS_LOG};

/// Blocks `next..end` from one forward iterator; ends after the first error.
pub(crate) struct BlockRange<'a> {
    /// The store, whose corruption check every result passes.
    pub(crate) store: &'a BlockStore,
    pub(crate) iter: Option<DBIteratorWithThreadMode<'a, Db>>,
    pub(crate) pending_error: Option<LedgerError>,
    pub(crate) next: u64,
    pub(crate) end: u64,
}

impl Iterator for BlockRange<'_> {
    type Item = Result<Block, LedgerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending_error.take() {
            return Some(self.store.checked(Some(self.next), Err(e)));
        }
        if self.next >= self.end {
            return None;
        }
        let number = self.next;
        let result = match self.iter.as_mut()?.next() {
            None => Err(LedgerError::Corrupt(format!(
                "block {number} is below the height but missing"
            ))),
            Some(Err(e)) => Err(e.into()),
            Some(Ok((key, value))) if key.as_ref() == number.to_be_bytes() => {
                resolve_stored(&self.store.inner.db, number, value.into_vec())
                    .and_then(|bytes| decode_block(number, bytes))
            }
            Some(Ok((key, _))) => Err(LedgerError::Corrupt(format!(
                "expected block {number}, found key {key:02x?}"
            ))),
        };
        let result = self.store.checked(Some(number), result);
        if result.is_ok() {
            self.next += 1;
        } else {
            self.iter = None;
        }
        Some(result)
    }
}

/// The block encoding behind a stored `blocks` value (inline, or a reference into the
/// consensus log).
pub(crate) fn resolve_stored(db: &Db, number: u64, value: Vec<u8>) -> Result<Bytes, LedgerError> {
    logged::resolve(number, value, |index| {
        Ok(db.get_cf(cf(db, CF_CONSENSUS_LOG)?, index.to_be_bytes())?)
    })
}

/// Decodes stored block bytes and checks they are the block stored under `number`.
pub(crate) fn decode_block(number: u64, bytes: Bytes) -> Result<Block, LedgerError> {
    let block = Block::decode(bytes)
        .map_err(|e| LedgerError::Corrupt(format!("block {number} does not decode: {e}")))?;
    let stored_number = block.header.as_ref().map(|h| h.number);
    if stored_number != Some(number) {
        return Err(LedgerError::Corrupt(format!(
            "block stored under {number} carries number {stored_number:?}"
        )));
    }
    Ok(block)
}
