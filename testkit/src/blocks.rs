//! Chains of signed blocks, and what tests read back out of blocks.

use bytes::Bytes;

use ordo_proto::block;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::Block;

/// `genesis` followed by blocks 1..`len` (each holding one envelope-sized string), hash
/// linked and signed by `orderer`: a valid chain for clients that verify what they pull.
pub fn signed_chain(genesis: Block, orderer: &Identity, len: u64) -> Vec<Block> {
    let mut blocks = vec![genesis];
    for n in 1..len {
        let previous = blocks.last().map(block::hash).unwrap_or_default();
        let mut b = block::build(n, previous, vec![Bytes::from(format!("tx {n}"))]);
        block::sign(&mut b, orderer, 0, Bytes::new());
        blocks.push(b);
    }
    blocks
}

/// The tx ids of `block`'s envelopes, in order; data that is not an envelope with a
/// header is skipped.
pub fn tx_ids(block: &Block) -> Vec<String> {
    block
        .data
        .iter()
        .flat_map(|d| d.data.iter())
        .filter_map(ordo_proto::envelope::tx_id_of)
        .collect()
}
