//! Helpers shared by the integration tests: test envelopes and blocks, and a full check of
//! a stored ledger that does not trust the store's own bookkeeping.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;

use bytes::Bytes;
use ordo_ledger::{BlockStore, TxLocation};
use ordo_proto::block::{self as chain, GENESIS_PREVIOUS_HASH};
use ordo_proto::pb::common::{Block, Envelope, Header, HeaderType, Payload};
use prost::Message;

/// An encoded envelope whose payload header carries `tx_id`; unsigned.
pub fn envelope(tx_id: &str, data: &[u8]) -> Bytes {
    let payload = Payload {
        header: Some(Header {
            channel_id: "ch".into(),
            r#type: HeaderType::Message as i32,
            tx_id: tx_id.into(),
            ..Default::default()
        }),
        data: Bytes::copy_from_slice(data),
    };
    Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    }
    .encode_to_vec()
    .into()
}

/// The block that `store` accepts next, holding one envelope per tx id.
pub fn next_block(store: &BlockStore, tx_ids: &[String]) -> Block {
    let data = tx_ids
        .iter()
        .map(|id| envelope(id, id.as_bytes()))
        .collect();
    chain::build(
        store.height(),
        store.last_hash().unwrap_or(GENESIS_PREVIOUS_HASH),
        data,
    )
}

/// The tx id of a block data entry, decoded independently of the store.
pub fn tx_id_of(entry: &Bytes) -> Option<String> {
    let envelope = Envelope::decode(entry.clone()).ok()?;
    let header = Payload::decode(envelope.payload).ok()?.header?;
    (!header.tx_id.is_empty()).then_some(header.tx_id)
}

/// Checks the whole ledger: every block below the height is present (by number and in the
/// range scan, identically), decodes, has the expected number and links to the one before;
/// the last hash is the last block's; every tx id of every block resolves to its first
/// location. Returns the chain.
pub fn verify_ledger(store: &BlockStore) -> Vec<Block> {
    let height = store.height();
    let mut prev = GENESIS_PREVIOUS_HASH;
    let mut first: HashMap<String, TxLocation> = HashMap::new();
    let mut blocks = Vec::new();
    for (n, block) in (0..height).zip(store.blocks(0, height)) {
        let block = block.unwrap_or_else(|e| panic!("block {n} in the range scan: {e}"));
        chain::check_structure(&block, Some((n, &prev)))
            .unwrap_or_else(|e| panic!("block {n} is not hash-linked: {e}"));
        let by_number = store.block(n).expect("read by number").expect("present");
        assert_eq!(
            by_number, block,
            "block {n}: range scan and point read differ"
        );
        let bytes = store.block_bytes(n).expect("read bytes").expect("present");
        assert_eq!(Block::decode(bytes).expect("decode bytes"), block);
        prev = chain::hash(&block);
        let data = block
            .data
            .as_ref()
            .map(|d| d.data.as_slice())
            .unwrap_or_default();
        for (index, entry) in data.iter().enumerate() {
            if let Some(id) = tx_id_of(entry) {
                let index = u32::try_from(index).expect("index fits");
                first.entry(id).or_insert(TxLocation {
                    block: n,
                    index,
                    code: None,
                    timestamp_ms: None,
                });
            }
        }
        blocks.push(block);
    }
    assert_eq!(blocks.len() as u64, height, "the range scan ended early");
    assert!(store.block(height).expect("read").is_none());
    assert_eq!(store.last_hash(), (height > 0).then_some(prev), "last hash");
    for (id, location) in &first {
        assert_eq!(
            store.tx_location(id).expect("read index"),
            Some(*location),
            "tx {id}"
        );
    }
    blocks
}
