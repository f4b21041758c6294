//! The duplicate filter's memory: the tx ids a channel accepted recently.
//!
//! Broadcast refuses an envelope whose tx id is in the window (CONFLICT); older duplicates
//! are the validating peers' to catch (DUPLICATE_TXID), as in Fabric. The window is
//! refilled from the ledger's last blocks on restart, so a restart does not open a gap.
//!
//! Each id is kept as its 128-bit [`tx_key`](ordo_consensus::tx_key), not a string (the
//! cost and the collision argument are there): a collision would only get the second
//! envelope refused, never a duplicate admitted.

use std::collections::{HashSet, VecDeque};

use ordo_consensus::tx_key::{key, KeyBuildHasher};

use ordo_ledger::BlockStore;

use crate::registry::RegistryError;

/// Recently accepted tx ids of a channel (bounded, oldest forgotten first).
#[derive(Debug)]
pub struct RecentTxIds {
    set: HashSet<u128, KeyBuildHasher>,
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
        // Blocks below the first held were pruned; their ids are older than any window.
        while number > ledger.first_block() && newest_first.len() < capacity {
            number -= 1;
            let Some(block) = ledger.block(number)? else {
                break;
            };
            let ids = block
                .data
                .iter()
                .flat_map(|d| d.data.iter())
                .filter_map(ordo_proto::envelope::tx_id_of);
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

#[cfg(test)]
mod tests {
    use super::RecentTxIds;

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
}
