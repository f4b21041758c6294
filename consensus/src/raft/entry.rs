//! What a raft entry carries: a kind byte and a block without metadata, and where the
//! block sits in the entry's stored bytes (so the ledger can refer to it).

use ordo_ledger::LogPosition;
use ordo_proto::pb::common::Block;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType};

/// Leading byte of an entry's data: a normal block.
pub(crate) const KIND_BLOCK: u8 = 1;
/// Leading byte of an entry's data: a config block.
pub(crate) const KIND_CONFIG_BLOCK: u8 = 2;

/// A block as raft entry data: a kind byte, then the block encoded without metadata
/// (each node adds its own signature when it applies the entry). Without metadata, the
/// bytes after the kind byte are what the ledger refers to instead of storing the block
/// again ([`logged_position`]).
pub(crate) fn entry_data(block: &Block, is_config: bool) -> Vec<u8> {
    let mut data = Vec::with_capacity(block.encoded_len() + 1);
    data.push(if is_config {
        KIND_CONFIG_BLOCK
    } else {
        KIND_BLOCK
    });
    if let Some(header) = &block.header {
        prost::encoding::message::encode(1, header, &mut data);
    }
    if let Some(body) = &block.data {
        prost::encoding::message::encode(2, body, &mut data);
    }
    data
}

/// Whether a raft entry carries a block the ledger may refer to: compaction keeps such
/// entries on disk (see [`super::storage::LogView::compaction`]). Erring towards true
/// only keeps an entry longer than needed.
pub(crate) fn carries_block(e: &Entry) -> bool {
    e.get_entry_type() == EntryType::EntryNormal
        && matches!(e.data.first(), Some(&KIND_BLOCK) | Some(&KIND_CONFIG_BLOCK))
}

/// Where the block of entry `e` sits in the entry's stored bytes (the protobuf encoding
/// `DiskLog::write` stores): rust-protobuf writes `data` after type, term and index
/// and before `context` and `sync_log`, so for a normal entry with neither, `data` ends
/// the encoding and the block starts one byte (the kind) into it. `None` when the block
/// is elsewhere (a conf change's context) — it is then stored inline. The ledger checks
/// the position against the entry before taking it.
pub(crate) fn logged_position(e: &Entry) -> Option<LogPosition> {
    if e.get_entry_type() != EntryType::EntryNormal
        || !e.context.is_empty()
        || e.sync_log
        || e.data.is_empty()
    {
        return None;
    }
    let size = e.compute_size() as usize;
    let offset = size.checked_sub(e.data.len())? + 1;
    Some(LogPosition {
        index: e.index,
        offset: u32::try_from(offset).ok()?,
    })
}
