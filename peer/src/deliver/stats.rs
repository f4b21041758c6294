//! Counters of a deliver client, shared with whoever reports them (the metrics endpoint).

use std::sync::atomic::{AtomicU64, Ordering};

/// What a deliver client has done so far. Shared behind an `Arc`: [`super::follow`]
/// counts, readers take [`DeliverStats::snapshot`]s. Counters only grow.
#[derive(Debug, Default)]
pub struct DeliverStats {
    blocks_received: AtomicU64,
    blocks_verified: AtomicU64,
    verification_failures: AtomicU64,
    reconnects: AtomicU64,
    verify_micros: AtomicU64,
}

/// The counters of [`DeliverStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliverCounts {
    /// Blocks that arrived from an orderer, verified or not.
    pub blocks_received: u64,
    /// Blocks that verified (and were handed to the sink).
    pub blocks_verified: u64,
    /// Blocks refused by the verifier; each one dropped its stream and its endpoint.
    pub verification_failures: u64,
    /// Connection attempts after the first: every stream that ended for any reason
    /// (failure, status, idle timeout, refused block) counts one when it is replaced.
    pub reconnects: u64,
}

impl DeliverStats {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters now. Each is read atomically; together they are a close, not an
    /// exact, picture while the client runs (good enough for metrics).
    pub fn snapshot(&self) -> DeliverCounts {
        DeliverCounts {
            blocks_received: self.blocks_received.load(Ordering::Relaxed),
            blocks_verified: self.blocks_verified.load(Ordering::Relaxed),
            verification_failures: self.verification_failures.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn block_received(&self) {
        self.blocks_received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn block_verified(&self) {
        self.blocks_verified.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn verify_took(&self, took: std::time::Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.verify_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Total time spent verifying blocks (hash chain, Merkle root, orderer signatures).
    pub fn verify_time(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.verify_micros.load(Ordering::Relaxed))
    }

    pub(crate) fn verification_failed(&self) {
        self.verification_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reconnecting(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}
