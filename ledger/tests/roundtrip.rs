//! Property test: any sequence of valid blocks, with any mix of envelopes, duplicate tx
//! ids, empty tx ids and non-envelope entries, reads back identically after a reopen.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use ordo_ledger::{BlockStore, TxLocation};
use ordo_proto::block::{self as chain, GENESIS_PREVIOUS_HASH};
use ordo_proto::pb::common::Block;
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message;

/// One data entry of a generated block.
#[derive(Debug, Clone)]
enum Entry {
    /// An envelope with tx id `tx-K`; a small pool, so duplicates are common.
    Tx(u8, Vec<u8>),
    /// An envelope with an empty tx id: stored, not indexed.
    NoTxId(Vec<u8>),
    /// Bytes that are not an envelope (0xff starts an invalid protobuf tag).
    Garbage(Vec<u8>),
}

impl Entry {
    fn tx_id(&self) -> Option<String> {
        match self {
            Entry::Tx(k, _) => Some(format!("tx-{k}")),
            _ => None,
        }
    }

    fn bytes(&self) -> Bytes {
        match self {
            Entry::Tx(_, data) => common::envelope(&self.tx_id().unwrap_or_default(), data),
            Entry::NoTxId(data) => common::envelope("", data),
            Entry::Garbage(data) => {
                let mut b = vec![0xff];
                b.extend_from_slice(data);
                b.into()
            }
        }
    }
}

fn entry() -> impl Strategy<Value = Entry> {
    let data = || vec(any::<u8>(), 0..64);
    prop_oneof![
        8 => (0u8..60, data()).prop_map(|(k, d)| Entry::Tx(k, d)),
        1 => data().prop_map(Entry::NoTxId),
        1 => data().prop_map(Entry::Garbage),
    ]
}

proptest! {
    // Every case opens RocksDB twice and syncs once per block: keep the count modest.
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_chains_read_back_identically_after_reopen(
        blocks in vec(vec(entry(), 0..20), 1..16)
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut appended: Vec<(Block, Vec<u8>)> = Vec::new();
        let mut index: HashMap<String, TxLocation> = HashMap::new();
        {
            let store = BlockStore::open(tmp.path()).expect("open");
            let mut prev = GENESIS_PREVIOUS_HASH;
            for (n, entries) in (0u64..).zip(&blocks) {
                let block = chain::build(n, prev, entries.iter().map(Entry::bytes).collect());
                store.append(&block).expect("append");
                prev = chain::hash(&block);
                for (i, e) in (0u32..).zip(entries) {
                    if let Some(id) = e.tx_id() {
                        index.entry(id).or_insert(TxLocation { block: n, index: i, code: None, timestamp_ms: None });
                    }
                }
                let bytes = block.encode_to_vec();
                appended.push((block, bytes));
            }
        }

        let store = BlockStore::open(tmp.path()).expect("reopen");
        prop_assert_eq!(store.height(), appended.len() as u64);
        prop_assert_eq!(store.last_hash(), appended.last().map(|(b, _)| chain::hash(b)));
        for (n, (block, bytes)) in (0u64..).zip(&appended) {
            let stored = store.block_bytes(n).expect("read").expect("present");
            prop_assert_eq!(stored.as_ref(), bytes.as_slice());
            prop_assert_eq!(&store.block(n).expect("read").expect("present"), block);
        }
        let scanned: Vec<Block> = store.blocks(0, u64::MAX).collect::<Result<_, _>>().expect("scan");
        let expected: Vec<Block> = appended.iter().map(|(b, _)| b.clone()).collect();
        prop_assert_eq!(&scanned, &expected);
        for k in 0u8..60 {
            let id = format!("tx-{k}");
            prop_assert_eq!(store.tx_location(&id).expect("read"), index.get(&id).copied());
        }
        prop_assert_eq!(common::verify_ledger(&store), expected);
    }
}
