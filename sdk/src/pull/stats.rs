//! Counters of a pull, shared with whoever reports them (a peer's metrics endpoint).

use std::sync::atomic::{AtomicU64, Ordering};

/// What a pull has done so far. Shared behind an `Arc`: [`super::pull`] counts,
/// readers take [`PullStats::snapshot`]s. Counters only grow.
#[derive(Debug, Default)]
pub struct PullStats {
    blocks_received: AtomicU64,
    blocks_verified: AtomicU64,
    verification_failures: AtomicU64,
    reconnects: AtomicU64,
    verify_micros: AtomicU64,
}

/// The counters of [`PullStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullCounts {
    /// Blocks that arrived from a source, verified or not.
    pub blocks_received: u64,
    /// Blocks that verified (and were handed to the sink).
    pub blocks_verified: u64,
    /// Blocks refused (the verifier, or another block at the target); each one dropped
    /// its stream.
    pub verification_failures: u64,
    /// Connection attempts after the first: every stream that ended for any reason
    /// (failure, status, idle timeout, refused block) counts one when it is replaced.
    pub reconnects: u64,
}

impl PullStats {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters now. Each is read atomically; together they are a close, not an
    /// exact, picture while the client runs (good enough for metrics).
    pub fn snapshot(&self) -> PullCounts {
        PullCounts {
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
