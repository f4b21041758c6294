//! The duplicate filter's memory: the tx ids a channel accepted recently.
//!
//! Broadcast refuses an envelope whose tx id is in the window (CONFLICT); older duplicates
//! are the validating peers' to catch (DUPLICATE_TXID), as in Fabric. The window is
//! refilled from the ledger's last blocks on restart, so a restart does not open a gap.
//!
//! Each id is kept as a 128-bit key, not a string: this runs once per envelope under a
//! channel-wide lock, and string keys cost two allocations and a SipHash of 64 bytes per
//! insert (≈ 4% of the orderer's CPU at full load). A tx id that Broadcast accepted is the
//! hex SHA-256 of the envelope's nonce and creator (checked by `envelope::unpack`), so its
//! first 128 bits are uniformly distributed: two different ids share a key only by a
//! 2⁻¹²⁸ accident, and finding such a pair on purpose takes ≈ 2⁶⁴ hashes — and would only
//! get the second envelope refused, never a duplicate admitted. Other strings (config tx
//! ids built by the node, tests) are keyed by two independently seeded 64-bit hashes.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use ordo_ledger::BlockStore;

use crate::registry::RegistryError;

/// Recently accepted tx ids of a channel (bounded, oldest forgotten first).
#[derive(Debug)]
pub struct RecentTxIds {
    set: HashSet<u128, BuildHasherDefault<KeyHasher>>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl RecentTxIds {
    /// An empty window of `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// A window holding the tx ids of the ledger's last blocks (newest last), up to
    /// `capacity`: after a restart, duplicates of recent envelopes are still refused.
    pub fn from_ledger(ledger: &BlockStore, capacity: usize) -> Result<Self, RegistryError> {
        let mut newest_first: Vec<String> = Vec::new();
        let mut number = ledger.height();
        while number > 0 && newest_first.len() < capacity {
            number -= 1;
            let Some(block) = ledger.block(number)? else {
                break;
            };
            let ids = block
                .data
                .iter()
                .flat_map(|d| d.data.iter())
                .filter_map(|e| ordo_proto::envelope::tx_id_of(e));
            let mut ids: Vec<String> = ids.collect();
            ids.reverse();
            newest_first.extend(ids);
        }
        let mut window = Self::new(capacity);
        for id in newest_first.into_iter().take(capacity).rev() {
            window.insert(&id);
        }
        Ok(window)
    }

    /// Records `tx_id`; `false` if it was already there.
    pub fn insert(&mut self, tx_id: &str) -> bool {
        let key = key(tx_id);
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(key);
        self.order.push_back(key);
        true
    }

    /// Forgets `tx_id` (its envelope was refused after all), so a retry is not a duplicate.
    /// Rare (a chain refusing an envelope), so the linear search of the order is fine.
    pub fn remove(&mut self, tx_id: &str) {
        let key = key(tx_id);
        if self.set.remove(&key) {
            self.order.retain(|k| *k != key);
        }
    }

    /// How many ids the window holds.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The 128-bit key of a tx id: the first 32 hex digits of a canonical (64 lowercase hex
/// digits) id, otherwise two seeded hashes of the string.
fn key(tx_id: &str) -> u128 {
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
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used by `HashSet<u128>`; fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, k: u128) {
        self.0 = k as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::{key, RecentTxIds};

    #[test]
    fn recent_ids_are_bounded_and_forget_the_oldest_first() {
        let mut r = RecentTxIds::new(2);
        assert!(r.insert("a"));
        assert!(!r.insert("a"), "a duplicate is refused");
        assert!(r.insert("b"));
        assert!(r.insert("c"), "the window slides");
        assert_eq!(r.len(), 2);
        assert!(r.insert("a"), "the oldest was forgotten");
        assert!(!r.insert("c"));
    }

    #[test]
    fn a_refused_envelope_can_be_retried() {
        let mut r = RecentTxIds::new(10);
        assert!(r.insert("x"));
        r.remove("x");
        assert!(r.is_empty());
        assert!(r.insert("x"));
    }

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
