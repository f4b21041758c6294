//! The tx-id index: where each transaction id was first ordered, and whether a ledger
//! keeps the index at all.

use std::collections::HashSet;

use bytes::Bytes;
use rocksdb::WriteOptions;

use ordo_proto::pb::common::Block;

use crate::{cf, Db, LedgerError, CF_META, META_TX_INDEX, TX_LOCATION_LEN};

/// Where a transaction id was first ordered: the block and the position of its envelope in
/// the block's data. The index is what validators and `CommitStatus` need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// The block number.
    pub block: u64,
    /// The index of the envelope within the block's data.
    pub index: u32,
    /// The validation code a peer gave the transaction (`None` on an orderer's ledger,
    /// where transactions are ordered, not validated).
    pub code: Option<u8>,
    /// The transaction's signed timestamp (ms since the Unix epoch), which expiry judges
    /// (`ordo-peer`'s validator, "Expiry"); `None` for entries written before it was kept
    /// and on ledgers that do not expire transactions (orderers).
    pub timestamp_ms: Option<u64>,
}

impl TxLocation {
    /// The `txids` value: block number `u64` BE ‖ index `u32` BE, then the validation code
    /// byte on a peer's ledger, then the timestamp `u64` BE when known. The four shapes
    /// have four lengths (12, 13, 20, 21 bytes), so the length says which it is.
    pub(crate) fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TX_LOCATION_LEN + 9);
        out.extend_from_slice(&self.block.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        if let Some(code) = self.code {
            out.push(code);
        }
        if let Some(at) = self.timestamp_ms {
            out.extend_from_slice(&at.to_be_bytes());
        }
        out
    }

    /// The timestamp of an encoded entry, without decoding the rest (the expiry
    /// compaction filter reads every entry it compacts). `None` for an entry without one,
    /// or of a length no entry has.
    pub(crate) fn timestamp_of(bytes: &[u8]) -> Option<u64> {
        let at = match bytes.len() {
            n if n == TX_LOCATION_LEN + 8 => TX_LOCATION_LEN,
            n if n == TX_LOCATION_LEN + 9 => TX_LOCATION_LEN + 1,
            _ => return None,
        };
        bytes
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
    }

    pub(crate) fn decode(tx_id: &str, bytes: &[u8]) -> Result<Self, LedgerError> {
        let bad = || {
            LedgerError::Corrupt(format!(
                "tx index entry for {tx_id:?} is {} bytes, expected {TX_LOCATION_LEN}, {}, {} or {}",
                bytes.len(),
                TX_LOCATION_LEN + 1,
                TX_LOCATION_LEN + 8,
                TX_LOCATION_LEN + 9
            ))
        };
        let code = match bytes.len() {
            n if n == TX_LOCATION_LEN || n == TX_LOCATION_LEN + 8 => None,
            n if n == TX_LOCATION_LEN + 1 || n == TX_LOCATION_LEN + 9 => {
                Some(bytes[TX_LOCATION_LEN])
            }
            _ => return Err(bad()),
        };
        let block = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        let index = bytes
            .get(8..TX_LOCATION_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        Ok(Self {
            block: u64::from_be_bytes(block),
            index: u32::from_be_bytes(index),
            code,
            timestamp_ms: Self::timestamp_of(bytes),
        })
    }
}

/// Whether a ledger indexes its transactions by tx id.
///
/// Peers need the index (duplicate detection, `CommitStatus`); an orderer never looks a
/// transaction up by id (its duplicate filter is a window in memory, refilled from the last
/// blocks), and keeping the index cost it a RocksDB lookup and a memtable insert per
/// envelope — about 8% of its CPU at full load. As in Fabric, the orderer's ledger indexes
/// blocks by number only.
///
/// The choice is made when the ledger is created and recorded in it: reopening always
/// uses the recorded choice, so an index is never partial. Ledgers created before the
/// choice existed are indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxIndex {
    /// Every first occurrence of a tx id is indexed (peers, tools).
    #[default]
    On,
    /// No tx-id index: [`BlockStore::tx_location`] answers [`LedgerError::NotIndexed`].
    Off,
}

/// The (index, tx id) of the first occurrence of each tx id among a block's envelopes.
pub(crate) fn first_occurrences(block: &Block) -> Result<Vec<(u32, String)>, LedgerError> {
    let data = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    for (i, entry) in data.iter().enumerate() {
        let Some(tx_id) = tx_id_of(entry) else {
            continue;
        };
        if seen.insert(tx_id.clone()) {
            let index = u32::try_from(i).map_err(|_| {
                LedgerError::InvalidBlock(format!("more than {} data entries", u32::MAX))
            })?;
            candidates.push((index, tx_id));
        }
    }
    Ok(candidates)
}

/// The signed timestamp (ms) of a block data entry's header, if it is an envelope with one.
pub(crate) fn timestamp_of_entry(entry: &Bytes) -> Option<u64> {
    use ordo_proto::pb::common::{Envelope, Payload};
    use prost::Message;
    let envelope = Envelope::decode(entry.clone()).ok()?;
    let payload = Payload::decode(envelope.payload).ok()?;
    payload.header.map(|h| h.timestamp_ms)
}

/// The tx id carried by a block data entry, if it is an envelope with a non-empty one.
pub(crate) fn tx_id_of(entry: &Bytes) -> Option<String> {
    ordo_proto::envelope::tx_id_of(entry).filter(|id| !id.is_empty())
}

/// The ledger's [`TxIndex`]: the recorded one, or — for an empty ledger — `wanted`,
/// recorded now (synced) when it is [`TxIndex::Off`].
pub(crate) fn settle_tx_index(
    db: &Db,
    height: u64,
    wanted: TxIndex,
) -> Result<TxIndex, LedgerError> {
    let meta = cf(db, CF_META)?;
    let recorded = match db.get_cf(meta, META_TX_INDEX)? {
        Some(v) if v.as_slice() == b"off" => Some(TxIndex::Off),
        Some(v) => {
            return Err(LedgerError::Corrupt(format!(
                "meta tx_index is {v:02x?}, expected \"off\""
            )))
        }
        None => None,
    };
    match (recorded, height) {
        (Some(choice), _) => Ok(choice),
        (None, 0) if wanted == TxIndex::Off => {
            let mut opts = WriteOptions::default();
            opts.set_sync(true);
            db.put_cf_opt(meta, META_TX_INDEX, b"off", &opts)?;
            Ok(TxIndex::Off)
        }
        (None, _) => Ok(TxIndex::On),
    }
}
