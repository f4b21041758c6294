//! The deterministic block cutter: which envelopes go into which block.
//!
//! Pure and synchronous, with no clock: timers live in the backend, which calls
//! [`BlockCutter::cut`] when the batch timeout fires. Every orderer that feeds the same
//! envelopes in the same order through the same calls gets the same batches, which is what
//! lets Kafka orderers cut identical blocks independently.
//!
//! The outcomes of [`BlockCutter::ordered`], in the order they are checked:
//! 1. A config envelope: the pending batch (if any) is cut, then the config envelope is
//!    cut alone.
//! 2. An envelope larger than `preferred_max_bytes`: the pending batch (if any) is cut,
//!    then the envelope is cut alone (it is at most `absolute_max_bytes`, or refused).
//! 3. An envelope that would take the pending batch past `preferred_max_bytes`: the
//!    pending batch is cut, and the envelope starts the next one.
//! 4. Otherwise the envelope joins the pending batch, which is cut once it holds
//!    `max_message_count` envelopes.
//!
//! So every batch holds at most `max_message_count` envelopes, every batch of more than
//! one envelope holds at most `preferred_max_bytes`, and every batch at most
//! `absolute_max_bytes`.

use thiserror::Error;

use ordo_proto::pb::common::BatchSize;

/// The batch limits of a channel (its `BatchSize` configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most envelopes in one block.
    pub max_message_count: u32,
    /// Largest envelope, and largest block data.
    pub absolute_max_bytes: u32,
    /// A block is cut once its data reaches this size.
    pub preferred_max_bytes: u32,
}

impl From<&BatchSize> for BatchLimits {
    fn from(b: &BatchSize) -> Self {
        Self {
            max_message_count: b.max_message_count,
            absolute_max_bytes: b.absolute_max_bytes,
            preferred_max_bytes: b.preferred_max_bytes,
        }
    }
}

/// Something the cutter can batch: it only needs the size in bytes.
pub trait BatchItem {
    /// Size of the item as it will be stored in the block.
    fn size_bytes(&self) -> usize;
}

impl BatchItem for bytes::Bytes {
    fn size_bytes(&self) -> usize {
        self.len()
    }
}

/// An envelope the cutter refused, unchanged state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CutterError {
    /// Larger than `absolute_max_bytes`: the filters should have refused it.
    #[error("envelope of {size} bytes exceeds absolute_max_bytes {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: u32,
    },
}

/// The result of [`BlockCutter::ordered`].
#[derive(Debug, PartialEq, Eq)]
pub struct Ordered<T> {
    /// Batches cut by this call, in order (zero, one or two).
    pub batches: Vec<Vec<T>>,
    /// Whether envelopes remain pending afterwards (the backend then runs the timer).
    pub pending: bool,
}

/// Accumulates envelopes into batches under a channel's [`BatchLimits`].
#[derive(Debug)]
pub struct BlockCutter<T> {
    limits: BatchLimits,
    pending: Vec<T>,
    pending_bytes: usize,
}

impl<T: BatchItem> BlockCutter<T> {
    /// An empty cutter.
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> BatchLimits {
        self.limits
    }

    /// Changes the limits, from the next envelope on (after a config block; the pending
    /// batch is always empty then, because a config envelope cuts it).
    pub fn set_limits(&mut self, limits: BatchLimits) {
        self.limits = limits;
    }

    /// How many envelopes are waiting for the next cut.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Adds one envelope; see the module docs for the outcomes.
    pub fn ordered(&mut self, item: T, is_config: bool) -> Result<Ordered<T>, CutterError> {
        let size = item.size_bytes();
        if size > self.limits.absolute_max_bytes as usize {
            return Err(CutterError::TooLarge {
                size,
                max: self.limits.absolute_max_bytes,
            });
        }
        let mut batches = Vec::new();
        if is_config || size > self.limits.preferred_max_bytes as usize {
            if !self.pending.is_empty() {
                batches.push(self.cut());
            }
            batches.push(vec![item]);
            return Ok(Ordered {
                batches,
                pending: false,
            });
        }
        if self.pending_bytes + size > self.limits.preferred_max_bytes as usize {
            batches.push(self.cut());
        }
        self.pending.push(item);
        self.pending_bytes += size;
        if self.pending.len() >= self.limits.max_message_count as usize {
            batches.push(self.cut());
        }
        Ok(Ordered {
            batches,
            pending: !self.pending.is_empty(),
        })
    }

    /// Cuts the pending batch (possibly empty).
    pub fn cut(&mut self) -> Vec<T> {
        self.pending_bytes = 0;
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn limits(count: u32, abs: u32, pref: u32) -> BatchLimits {
        BatchLimits {
            max_message_count: count,
            absolute_max_bytes: abs,
            preferred_max_bytes: pref,
        }
    }
    fn item(tag: u32, size: usize) -> Bytes {
        let mut v = vec![0u8; size.max(4)];
        v[..4].copy_from_slice(&tag.to_be_bytes());
        Bytes::from(v)
    }

    #[test]
    fn cuts_at_max_message_count() {
        let mut c = BlockCutter::new(limits(2, 100, 50));
        let r = c.ordered(item(1, 4), false).expect("fits");
        assert!(r.batches.is_empty() && r.pending);
        let r = c.ordered(item(2, 4), false).expect("fits");
        assert_eq!(r.batches, vec![vec![item(1, 4), item(2, 4)]]);
        assert!(!r.pending);
    }

    #[test]
    fn config_cuts_pending_then_goes_alone() {
        let mut c = BlockCutter::new(limits(10, 100, 50));
        c.ordered(item(1, 4), false).expect("fits");
        let r = c.ordered(item(2, 4), true).expect("fits");
        assert_eq!(r.batches, vec![vec![item(1, 4)], vec![item(2, 4)]]);
        assert!(!r.pending);
    }

    #[test]
    fn overflowing_preferred_cuts_first_and_oversize_goes_alone() {
        let mut c = BlockCutter::new(limits(10, 100, 10));
        c.ordered(item(1, 6), false).expect("fits");
        let r = c.ordered(item(2, 6), false).expect("fits");
        assert_eq!(r.batches, vec![vec![item(1, 6)]]);
        assert!(r.pending);
        let r = c.ordered(item(3, 50), false).expect("fits");
        assert_eq!(r.batches, vec![vec![item(2, 6)], vec![item(3, 50)]]);
        assert_eq!(
            c.ordered(item(4, 101), false),
            Err(CutterError::TooLarge {
                size: 101,
                max: 100
            })
        );
        assert_eq!(c.pending_count(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add { size: usize, config: bool },
        Cut,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                8 => (4usize..300, prop::bool::weighted(0.05)).prop_map(|(size, config)| Op::Add { size, config }),
                1 => Just(Op::Cut),
            ],
            0..200,
        )
    }

    fn run(l: BatchLimits, ops: &[Op]) -> (Vec<Vec<Bytes>>, Vec<Bytes>, Vec<Bytes>) {
        let mut c = BlockCutter::new(l);
        let mut out = Vec::new();
        let mut accepted = Vec::new();
        let mut configs = Vec::new();
        for (tag, op) in ops.iter().enumerate() {
            match op {
                Op::Add { size, config } => {
                    let it = item(tag as u32, *size);
                    if let Ok(r) = c.ordered(it.clone(), *config) {
                        accepted.push(it.clone());
                        if *config {
                            configs.push(it);
                        }
                        out.extend(r.batches);
                    }
                }
                Op::Cut => {
                    let b = c.cut();
                    if !b.is_empty() {
                        out.push(b);
                    }
                }
            }
        }
        let rest = c.cut();
        if !rest.is_empty() {
            out.push(rest);
        }
        (out, accepted, configs)
    }

    proptest! {
        #[test]
        fn cutter_properties(
            count in 1u32..20, abs in 100u32..400, pref_frac in 1u32..100, ops in ops()
        ) {
            let pref = (abs * pref_frac / 100).max(1);
            let l = limits(count, abs, pref);
            let (batches, accepted, configs) = run(l, &ops);
            // Deterministic.
            let (again, _, _) = run(l, &ops);
            prop_assert_eq!(&batches, &again);
            // Nothing lost, nothing duplicated, order kept.
            let flat: Vec<Bytes> = batches.iter().flatten().cloned().collect();
            prop_assert_eq!(&flat, &accepted);
            for b in &batches {
                prop_assert!(!b.is_empty());
                prop_assert!(b.len() <= count as usize);
                let bytes: usize = b.iter().map(|x| x.len()).sum();
                prop_assert!(bytes <= abs as usize);
                if b.len() > 1 {
                    prop_assert!(bytes <= pref as usize);
                }
                // A config envelope is always alone.
                if b.iter().any(|x| configs.contains(x)) {
                    prop_assert_eq!(b.len(), 1);
                }
            }
        }
    }
}
