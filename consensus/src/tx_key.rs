//! 128-bit keys for tx ids, for the per-envelope maps of the orderer's hot path: the
//! duplicate filter's window and the committed-mode waiters.
//!
//! Both run once per envelope under a channel-wide lock, and string keys cost
//! allocations and a SipHash of 64 bytes per operation (≈ 4% of the orderer's CPU at full
//! load for the duplicate filter alone). A tx id that Broadcast accepted is the hex
//! SHA-256 of the envelope's nonce and creator (checked by `envelope::unpack`), so its
//! first 128 bits are uniformly distributed: two different ids share a key only by a
//! 2⁻¹²⁸ accident, and finding such a pair on purpose takes ≈ 2⁶⁴ hashes. Other strings
//! (config tx ids built by the node, tests) are keyed by two independently seeded 64-bit
//! hashes. A map that must never confuse two ids even then keeps the id beside its key
//! and compares it (the waiters do).

use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// The 128-bit key of a tx id: the first 32 hex digits of a canonical (64 lowercase hex
/// digits) id, otherwise two seeded hashes of the string.
pub fn key(tx_id: &str) -> u128 {
    let canonical = tx_id.len() == 64
        && tx_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if canonical {
        if let Some(k) = tx_id
            .get(..32)
            .and_then(|h| u128::from_str_radix(h, 16).ok())
        {
            return k;
        }
    }
    let half = |seed: u8| {
        let mut h = DefaultHasher::new();
        seed.hash(&mut h);
        tx_id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// Hashes a key that is already uniformly distributed by taking its low 64 bits, instead
/// of running SipHash over it again.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used by maps keyed by `u128`; fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, k: u128) {
        self.0 = k as u64;
    }
}

/// The hasher builder of maps keyed by [`key`].
pub type KeyBuildHasher = BuildHasherDefault<KeyHasher>;

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn canonical_ids_key_by_their_first_128_bits_and_others_by_hash() {
        let id = ordo_proto::hash::tx_id(b"nonce", b"creator");
        assert_eq!(
            key(&id),
            u128::from_str_radix(&id[..32], 16).expect("hex"),
            "a real tx id is keyed by its leading digits"
        );
        let other = ordo_proto::hash::tx_id(b"nonce2", b"creator");
        assert_ne!(key(&id), key(&other));
        // Upper-case or short strings are not canonical; they still get distinct keys.
        assert_ne!(key(&id.to_uppercase()), key(&id));
        assert_ne!(key("a"), key("b"));
        assert_eq!(key("a"), key("a"));
    }
}
