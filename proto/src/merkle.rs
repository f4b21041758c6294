//! The Merkle tree over a block's envelopes (RFC 6962 / RFC 9162 shape).
//!
//! Leaves are hashed as `SHA-256(0x00 ‖ leaf)` and inner nodes as
//! `SHA-256(0x01 ‖ left ‖ right)`; the different prefixes make a leaf impossible to pass
//! off as an inner node. The left subtree of `n` leaves holds the largest power of two
//! smaller than `n`. An inclusion proof lets anyone show that one transaction is in a
//! block knowing only the block header.

use sha2::{Digest, Sha256};

use crate::hash::{Hash, HASH_LEN};

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Upper bound on proof length accepted by [`verify_inclusion`]: a tree of 2^64 leaves.
const MAX_PROOF_LEN: usize = 64;

/// `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(leaf);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

fn subtree_root(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes.len() {
        0 => crate::hash::sha256(b""),
        1 => leaf_hashes[0],
        n => {
            let k = split_point(n);
            node_hash(
                &subtree_root(&leaf_hashes[..k]),
                &subtree_root(&leaf_hashes[k..]),
            )
        }
    }
}

/// The Merkle root over `leaves`; the root of no leaves is `SHA-256("")`.
pub fn root<T: AsRef<[u8]>>(leaves: &[T]) -> Hash {
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    subtree_root(&hashes)
}

/// The audit path proving that leaf `index` is in the tree over `leaves`, from the leaf's
/// sibling up to the root's child; `None` when `index` is out of range.
pub fn inclusion_proof<T: AsRef<[u8]>>(leaves: &[T], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    let mut proof = Vec::new();
    path(&hashes, index, &mut proof);
    Some(proof)
}

fn path(hashes: &[Hash], index: usize, out: &mut Vec<Hash>) {
    let n = hashes.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if index < k {
        path(&hashes[..k], index, out);
        out.push(subtree_root(&hashes[k..]));
    } else {
        path(&hashes[k..], index - k, out);
        out.push(subtree_root(&hashes[..k]));
    }
}

/// Checks that `leaf` is at `index` in a tree of `tree_size` leaves with root `root`
/// (the algorithm of RFC 9162, section 2.1.3.2).
pub fn verify_inclusion(
    leaf: &[u8],
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &[u8],
) -> bool {
    if index >= tree_size || proof.len() > MAX_PROOF_LEN || root.len() != HASH_LEN {
        return false;
    }
    let mut fnode = index;
    let mut snode = tree_size - 1;
    let mut r = leaf_hash(leaf);
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r.as_slice() == root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("leaf-{i}").into_bytes()).collect()
    }

    #[test]
    fn small_trees_have_the_expected_shape() {
        let l = leaves(3);
        let expected = node_hash(
            &node_hash(&leaf_hash(&l[0]), &leaf_hash(&l[1])),
            &leaf_hash(&l[2]),
        );
        assert_eq!(root(&l), expected);
        assert_eq!(root(&l[..1]), leaf_hash(&l[0]));
        assert_eq!(root::<Vec<u8>>(&[]), crate::hash::sha256(b""));
    }

    #[test]
    fn out_of_range_index_has_no_proof() {
        assert!(inclusion_proof(&leaves(4), 4).is_none());
        assert!(!verify_inclusion(b"x", 4, 4, &[], &root(&leaves(4))));
    }

    proptest! {
        #[test]
        fn every_leaf_proves(n in 1usize..70, seed in any::<u64>()) {
            let l: Vec<Vec<u8>> = (0..n).map(|i| format!("{seed}-{i}").into_bytes()).collect();
            let r = root(&l);
            for (i, leaf) in l.iter().enumerate() {
                let proof = inclusion_proof(&l, i).expect("index in range");
                prop_assert!(verify_inclusion(leaf, i as u64, n as u64, &proof, &r));
            }
        }

        #[test]
        fn any_tampering_fails(
            n in 2usize..50,
            pick in any::<prop::sample::Index>(),
            flip_byte in any::<prop::sample::Index>(),
            what in 0u8..5,
        ) {
            let l = leaves(n);
            let r = root(&l);
            let i = pick.index(n);
            let mut proof = inclusion_proof(&l, i).expect("index in range");
            let mut leaf = l[i].clone();
            let mut index = i as u64;
            let size = n as u64;
            let mut root_bytes = r.to_vec();
            match what {
                0 => { let b = flip_byte.index(leaf.len()); leaf[b] ^= 0x01; }
                1 => {
                    if proof.is_empty() { return Ok(()); }
                    let p = flip_byte.index(proof.len());
                    proof[p][0] ^= 0x80;
                }
                2 => { index = (index + 1) % size; }
                3 => {
                    if proof.pop().is_none() { proof.push(r); }
                }
                _ => { let b = flip_byte.index(root_bytes.len()); root_bytes[b] ^= 0x01; }
            }
            // The leaves are all distinct, so every change must fail. (The tree size is
            // not authenticated by the root alone; callers take it from the block.)
            prop_assert!(!verify_inclusion(&leaf, index, size, &proof, &root_bytes));
        }
    }
}
