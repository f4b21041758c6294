//! Canonical hashes: SHA-256, transaction ids and the block header hash.

use sha2::{Digest, Sha256};

use crate::pb::common::BlockHeader;

/// Length in bytes of every hash Ordo uses.
pub const HASH_LEN: usize = 32;

/// A SHA-256 digest.
pub type Hash = [u8; HASH_LEN];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// The transaction id of an envelope: `hex(SHA-256(nonce ‖ creator))`, where `creator` is
/// the encoded certificate exactly as carried in the header.
///
/// Binding the id to the creator stops one client from claiming another's id; the nonce
/// makes it unique per submission.
pub fn tx_id(nonce: &[u8], creator: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(nonce);
    h.update(creator);
    hex::encode(h.finalize())
}

/// The proposal hash of an endorser transaction:
/// `SHA-256(tx_id ‖ 0x00 ‖ channel_id ‖ 0x00 ‖ proposal)`, where `proposal` is the encoded
/// `ChaincodeProposal` exactly as carried in the transaction.
///
/// Endorsers put it in the response payload they sign, so an endorsement is bound to one
/// transaction (its tx id, hence its creator and nonce) on one channel and cannot be
/// replayed into another. The zero separators cannot be ambiguous: a tx id is hex and a
/// channel id is `[a-z0-9.-]`, neither holds a zero byte.
pub fn proposal_hash(tx_id: &str, channel_id: &str, proposal: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(tx_id.as_bytes());
    h.update([0u8]);
    h.update(channel_id.as_bytes());
    h.update([0u8]);
    h.update(proposal);
    h.finalize().into()
}

/// The hash of a block: SHA-256 over the fixed encoding
/// `number (u64 big-endian) ‖ previous_hash ‖ data_hash`.
///
/// A fixed encoding rather than the protobuf bytes, so that the hash does not depend on
/// how any implementation encodes a message. Both hashes are 32 bytes in a valid block
/// (the genesis block's previous hash is 32 zero bytes); [`crate::block`] checks that.
pub fn block_header_hash(header: &BlockHeader) -> Hash {
    let mut h = Sha256::new();
    h.update(header.number.to_be_bytes());
    h.update(&header.previous_hash);
    h.update(&header.data_hash);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input_is_the_standard_value() {
        assert_eq!(
            hex::encode(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn tx_id_depends_on_nonce_and_creator() {
        let a = tx_id(b"n1", b"creator");
        assert_eq!(a.len(), 64);
        assert_ne!(a, tx_id(b"n2", b"creator"));
        assert_ne!(a, tx_id(b"n1", b"other"));
        assert_eq!(a, tx_id(b"n1", b"creator"));
    }

    #[test]
    fn proposal_hash_is_the_documented_concatenation() {
        let h = proposal_hash("ab12", "ch", b"prop");
        assert_eq!(h, sha256(b"ab12\0ch\0prop"));
        assert_eq!(
            hex::encode(h),
            "b8d8fbaf3e957f6b4741317a20c075e3c3cdc29f47adcba9c30ada5f546c8e25"
        );
        assert_ne!(h, proposal_hash("ab12", "ch2", b"prop"));
        assert_ne!(h, proposal_hash("ab13", "ch", b"prop"));
        assert_ne!(h, proposal_hash("ab12", "ch", b"prop2"));
    }

    #[test]
    fn header_hash_covers_every_field() {
        let base = BlockHeader {
            number: 7,
            previous_hash: vec![1u8; 32].into(),
            data_hash: vec![2u8; 32].into(),
        };
        let h = block_header_hash(&base);
        let mut other = base.clone();
        other.number = 8;
        assert_ne!(h, block_header_hash(&other));
        let mut other = base.clone();
        other.previous_hash = vec![3u8; 32].into();
        assert_ne!(h, block_header_hash(&other));
        let mut other = base;
        other.data_hash = vec![3u8; 32].into();
        assert_ne!(h, block_header_hash(&other));
    }
}
