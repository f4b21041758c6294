//! Fixtures shared by the crate's unit tests: ledgers whose blocks are in blob files on
//! disk, and damage done to those files.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ordo_proto::block::{self as chain, GENESIS_PREVIOUS_HASH};
use ordo_proto::pb::common::{Envelope, Header, HeaderType, Payload};
use prost::Message;

use crate::{BlockStore, CF_BLOCKS};

/// An unsigned endorser-transaction envelope on `channel` with `tx_id` and header
/// timestamp `at_ms`: what the ledger reads of a transaction (its id, its time).
pub(crate) fn tx_envelope(channel: &str, tx_id: &str, at_ms: u64) -> Bytes {
    let payload = Payload {
        header: Some(Header {
            channel_id: channel.into(),
            r#type: HeaderType::EndorserTransaction as i32,
            tx_id: tx_id.into(),
            timestamp_ms: at_ms,
            ..Default::default()
        }),
        data: Bytes::new(),
    };
    Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    }
    .encode_to_vec()
    .into()
}

/// Appends blocks 0..4 whose single envelope carries `marker(n)` in 8 KiB of data (so the
/// block goes to a blob file), flushes them to disk and closes the store.
pub(crate) fn ledger_in_blob_files(dir: &Path, marker: impl Fn(u64) -> String) {
    let store = BlockStore::open(dir).expect("open");
    append_marked_blocks(&store, 4, marker);
    let blocks = store.cf(CF_BLOCKS).expect("cf");
    store.inner.db.flush_cf(blocks).expect("flush");
}

/// Appends `count` blocks of about 8 KiB each (their bytes go to blob files when flushed).
pub(crate) fn append_large_blocks(store: &BlockStore, count: u64) {
    append_marked_blocks(store, count, |n| format!("block-{n}"));
}

/// Appends `count` blocks after the tip, each with one envelope carrying `marker(n)` in
/// 8 KiB of data.
fn append_marked_blocks(store: &BlockStore, count: u64, marker: impl Fn(u64) -> String) {
    for _ in 0..count {
        let n = store.height();
        let payload = Payload {
            header: Some(Header {
                channel_id: "ch".into(),
                r#type: HeaderType::Message as i32,
                tx_id: format!("tx-{n}"),
                ..Default::default()
            }),
            data: Bytes::from(format!("{}{}", marker(n), "x".repeat(8 * 1024))),
        };
        let env: Bytes = Envelope {
            payload: payload.encode_to_vec().into(),
            signature: Bytes::new(),
        }
        .encode_to_vec()
        .into();
        let b = chain::build(
            n,
            store.last_hash().unwrap_or(GENESIS_PREVIOUS_HASH),
            vec![env],
        );
        store.append(&b).expect("append");
    }
}

/// Flips one byte of the first occurrence of `needle` in the ledger's blob files; returns
/// the file.
pub(crate) fn flip_in_blob_files(dir: &Path, needle: &[u8]) -> PathBuf {
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "blob") {
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("read");
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at] ^= 0x20;
            std::fs::write(&path, bytes).expect("write");
            return path;
        }
    }
    panic!("{needle:?} is in no blob file");
}
