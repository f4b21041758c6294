//! Block verification as every client of Deliver runs it ([`ChainVerifier`]): structure,
//! number and hash link, data hash (Merkle root), the last-config pointer, config blocks
//! (a new configuration taking over, and its own checks), and the orderers' signatures
//! against the BlockValidation policy in force.
//!
//! Input: up to 8 length-prefixed pieces, one block each, checked in order from a
//! verifier that expects the genesis block. A piece's first byte is a mode: with bit 0
//! set, the harness rebuilds the block around the decoded block's data — the number and
//! previous hash the verifier expects, the data hash, and org A's orderer's signature with
//! the decoded last-config pointer — so that mutations of block contents (config blocks
//! above all) get past the hash link and the signature.
//!
//! Invariants: a refused block changes nothing (the verifier still expects the same
//! number); an accepted block advances it by one and is hash-linked to the one before.

use bytes::Bytes;
use prost::Message;

use ordo_proto::block;
use ordo_proto::pb::common::Block;
use ordo_proto::verify::ChainVerifier;

use crate::fixture::{self, members, NOW_MS, NOW_SECS};

/// Blocks per input at most.
const MAX_BLOCKS: usize = 8;

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut verifier = ChainVerifier::new();
    let mut previous: Option<[u8; 32]> = None;
    for piece in fixture::pieces(data, MAX_BLOCKS) {
        let Some((mode, rest)) = fixture::split(piece) else {
            continue;
        };
        let Ok(mut b) = Block::decode(rest) else {
            continue;
        };
        if mode & 1 != 0 {
            b = rebuilt(&b, verifier.next_number(), previous.unwrap_or_default());
        }
        let expected = verifier.next_number();
        match verifier.check(&b, NOW_SECS) {
            Ok(()) => {
                assert_eq!(verifier.next_number(), expected + 1);
                assert_eq!(block::number(&b), expected);
                if let Some(prev) = previous {
                    let link = b.header.as_ref().map(|h| h.previous_hash.clone());
                    assert_eq!(
                        link.as_deref(),
                        Some(&prev[..]),
                        "accepted an unlinked block"
                    );
                }
                previous = Some(block::hash(&b));
            }
            Err(_) => assert_eq!(
                verifier.next_number(),
                expected,
                "a refused block moved the chain"
            ),
        }
    }
}

/// `b`'s data and last-config pointer in a block numbered `number` after `previous`,
/// signed by org A's orderer.
fn rebuilt(b: &Block, number: u64, previous: [u8; 32]) -> Block {
    let data: Vec<Bytes> = b.data.as_ref().map(|d| d.data.clone()).unwrap_or_default();
    let last_config = b.metadata.as_ref().map(|m| m.last_config).unwrap_or(0);
    let mut out = block::build(number, previous, data);
    block::sign_at(
        &mut out,
        &members().orderer,
        last_config,
        Bytes::new(),
        NOW_MS,
    );
    out
}

/// The fixture chain: genesis and two signed blocks (as received, and the same to be
/// rebuilt), and a config block to be rebuilt.
pub fn seeds() -> Vec<Vec<u8>> {
    // Signed at a fixed time: the same seed bytes on every run.
    let mut chain = vec![fixture::genesis().clone()];
    for n in 1..3u64 {
        let previous = chain.last().map(block::hash).unwrap_or_default();
        let mut b = block::build(n, previous, vec![Bytes::from(format!("tx {n}"))]);
        block::sign_at(&mut b, &members().orderer, 0, Bytes::new(), NOW_MS);
        chain.push(b);
    }
    let as_received = |mode: u8, b: &Block| [&[mode][..], &b.encode_to_vec()].concat();
    vec![
        fixture::join_pieces(chain.iter().map(|b| as_received(0, b))),
        fixture::join_pieces(
            chain
                .iter()
                .enumerate()
                .map(|(i, b)| as_received(u8::from(i > 0), b)),
        ),
        fixture::join_pieces([as_received(0, &chain[0]), as_received(1, &chain[0])]),
    ]
}
