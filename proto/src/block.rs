//! Blocks: building them from envelopes, hashing, the orderer signature and the checks a
//! reader applies before trusting one.

use bytes::Bytes;
use thiserror::Error;

use crate::cert::{Msp, VerifiedCert};
use crate::hash::{self, Hash, HASH_LEN};
use crate::identity::Identity;
use crate::merkle;
use crate::pb::common::{Block, BlockData, BlockHeader, BlockMetadata, MetadataSignature, Policy};
use crate::policy::{self, PolicyError};

/// Domain tag of the orderer's block signature, so it can never be confused with a
/// signature over anything else.
const SIGNATURE_DOMAIN: &[u8] = b"ordo/block-signature/v1";

/// The previous hash recorded in a genesis block.
pub const GENESIS_PREVIOUS_HASH: Hash = [0u8; HASH_LEN];

/// Why a block is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    /// A required part is missing or a hash has the wrong length.
    #[error("block {number}: malformed: {reason}")]
    Malformed {
        /// The block's number as it claims.
        number: u64,
        /// What is wrong.
        reason: String,
    },
    /// The number is not the one expected next.
    #[error("block {number}: expected block number {expected}")]
    WrongNumber {
        /// The block's number.
        number: u64,
        /// The number that was expected.
        expected: u64,
    },
    /// The previous hash does not link to the chain.
    #[error("block {number}: previous hash {found} does not match {expected}")]
    BrokenChain {
        /// The block's number.
        number: u64,
        /// The previous hash it carries (hex).
        found: String,
        /// The hash of the block before it (hex).
        expected: String,
    },
    /// The data hash is not the Merkle root of the data.
    #[error("block {number}: data hash does not match the Merkle root of its {count} envelopes")]
    DataHashMismatch {
        /// The block's number.
        number: u64,
        /// How many envelopes it holds.
        count: usize,
    },
    /// The orderer signatures do not satisfy the BlockValidation policy.
    #[error("block {number}: signatures: {source}")]
    Signatures {
        /// The block's number.
        number: u64,
        /// The policy failure.
        source: PolicyError,
    },
}

/// The hash of a block (of its header); a block without a header hashes as an empty one.
pub fn hash(block: &Block) -> Hash {
    hash::block_header_hash(&block.header.clone().unwrap_or_default())
}

/// The number a block claims (0 when it has no header).
pub fn number(block: &Block) -> u64 {
    block.header.as_ref().map(|h| h.number).unwrap_or(0)
}

/// Builds an unsigned block: the header links to `previous_hash` and commits to `data`.
pub fn build(number: u64, previous_hash: Hash, data: Vec<Bytes>) -> Block {
    let data_hash = merkle::root(&data);
    Block {
        header: Some(BlockHeader {
            number,
            previous_hash: Bytes::copy_from_slice(&previous_hash),
            data_hash: Bytes::copy_from_slice(&data_hash),
        }),
        data: Some(BlockData { data }),
        metadata: Some(BlockMetadata::default()),
    }
}

/// How far in the future (by the verifier's clock) a block signature's timestamp may be.
pub const MAX_SIGNATURE_CLOCK_SKEW_SECS: u64 = 600;

/// The bytes an orderer signs for a block: the domain tag, the block hash, the last
/// config block number, the consenter metadata (length-prefixed) and the signing time.
pub fn signing_bytes(
    block_hash: &Hash,
    last_config: u64,
    consenter_metadata: &[u8],
    timestamp_ms: u64,
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(SIGNATURE_DOMAIN.len() + HASH_LEN + 20 + consenter_metadata.len());
    out.extend_from_slice(SIGNATURE_DOMAIN);
    out.extend_from_slice(block_hash);
    out.extend_from_slice(&last_config.to_be_bytes());
    out.extend_from_slice(&(consenter_metadata.len() as u32).to_be_bytes());
    out.extend_from_slice(consenter_metadata);
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out
}

/// Sets the block's metadata and adds `signer`'s signature over it, stamped now.
pub fn sign(block: &mut Block, signer: &Identity, last_config: u64, consenter_metadata: Bytes) {
    sign_at(
        block,
        signer,
        last_config,
        consenter_metadata,
        crate::now_ms(),
    );
}

/// [`sign`] with the signing time given (for tests and replay).
pub fn sign_at(
    block: &mut Block,
    signer: &Identity,
    last_config: u64,
    consenter_metadata: Bytes,
    timestamp_ms: u64,
) {
    let h = hash(block);
    let sig = signer.sign(&signing_bytes(
        &h,
        last_config,
        &consenter_metadata,
        timestamp_ms,
    ));
    let md = block.metadata.get_or_insert_with(BlockMetadata::default);
    md.last_config = last_config;
    md.consenter_metadata = consenter_metadata;
    md.signatures.push(MetadataSignature {
        signer: signer.cert_bytes().clone(),
        signature: sig.to_vec().into(),
        timestamp_ms,
    });
}

/// Checks a block's own consistency: header present, hashes 32 bytes, data hash equal to
/// the Merkle root of its data; and, when `expected` is given, that it is the block with
/// that number whose previous hash is that hash.
pub fn check_structure(block: &Block, expected: Option<(u64, &Hash)>) -> Result<(), BlockError> {
    check_links(block, expected)?;
    let number = number(block);
    let data = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default();
    let data_hash = block
        .header
        .as_ref()
        .map(|h| h.data_hash.as_ref())
        .unwrap_or_default();
    if merkle::root(data).as_slice() != data_hash {
        return Err(BlockError::DataHashMismatch {
            number,
            count: data.len(),
        });
    }
    Ok(())
}

/// [`check_structure`] without recomputing the Merkle root: for a block whose data hash
/// is known to match (it was just built from the data, or verified already).
pub fn check_links(block: &Block, expected: Option<(u64, &Hash)>) -> Result<(), BlockError> {
    let header = block.header.as_ref().ok_or(BlockError::Malformed {
        number: 0,
        reason: "no header".into(),
    })?;
    let number = header.number;
    let malformed = |reason: &str| BlockError::Malformed {
        number,
        reason: reason.into(),
    };
    if header.previous_hash.len() != HASH_LEN || header.data_hash.len() != HASH_LEN {
        return Err(malformed("hashes must be 32 bytes"));
    }
    if block.data.is_none() {
        return Err(malformed("no data"));
    }
    if let Some((expected_number, expected_prev)) = expected {
        if number != expected_number {
            return Err(BlockError::WrongNumber {
                number,
                expected: expected_number,
            });
        }
        if header.previous_hash.as_ref() != expected_prev.as_slice() {
            return Err(BlockError::BrokenChain {
                number,
                found: hex::encode(&header.previous_hash),
                expected: hex::encode(expected_prev),
            });
        }
    }
    Ok(())
}

/// Verifies the orderer signatures on a block and checks them against `policy` (the
/// channel's BlockValidation policy). Each signer's certificate is checked at the time the
/// signature says it was made (so old blocks stay verifiable after certificates expire),
/// and a signature stamped more than [`MAX_SIGNATURE_CLOCK_SKEW_SECS`] after `now_secs` is
/// ignored. Signatures that do not verify, or whose certificate does not, are ignored, so
/// they can only make the policy fail. Returns the signers.
pub fn verify_signatures(
    block: &Block,
    msp: &Msp,
    policy: &Policy,
    now_secs: u64,
) -> Result<Vec<VerifiedCert>, BlockError> {
    let number = number(block);
    let md = block.metadata.clone().unwrap_or_default();
    let block_hash = hash(block);
    let mut signers = Vec::new();
    for s in &md.signatures {
        let at_secs = s.timestamp_ms / 1000;
        if at_secs > now_secs.saturating_add(MAX_SIGNATURE_CLOCK_SKEW_SECS) {
            continue;
        }
        let msg = signing_bytes(
            &block_hash,
            md.last_config,
            &md.consenter_metadata,
            s.timestamp_ms,
        );
        signers.extend(msp.verified_signers(
            &msg,
            [(s.signer.as_ref(), s.signature.as_ref())],
            at_secs,
        ));
    }
    policy::evaluate(policy, &signers, msp.org_names())
        .map_err(|source| BlockError::Signatures { number, source })?;
    Ok(signers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_blocks_link_and_verify() {
        let b0 = build(
            0,
            GENESIS_PREVIOUS_HASH,
            vec![Bytes::from_static(b"genesis")],
        );
        check_structure(&b0, Some((0, &GENESIS_PREVIOUS_HASH))).expect("genesis is sound");
        let h0 = hash(&b0);
        let b1 = build(
            1,
            h0,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        );
        check_structure(&b1, Some((1, &h0))).expect("block 1 links");
        assert!(matches!(
            check_structure(&b1, Some((2, &h0))),
            Err(BlockError::WrongNumber {
                number: 1,
                expected: 2
            })
        ));
        assert!(matches!(
            check_structure(&b1, Some((1, &[7u8; 32]))),
            Err(BlockError::BrokenChain { number: 1, .. })
        ));
        let mut tampered = b1.clone();
        if let Some(d) = tampered.data.as_mut() {
            d.data[0] = Bytes::from_static(b"x");
        }
        assert!(matches!(
            check_structure(&tampered, None),
            Err(BlockError::DataHashMismatch {
                number: 1,
                count: 2
            })
        ));
    }
}
