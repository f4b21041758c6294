//! `[ledger]` of a node's config: the upkeep of its channel ledgers, the same on orderers
//! and peers.

use serde::{Deserialize, Serialize};

/// `[ledger]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// Bytes per second the background scrub reads, over all channels: it reads every
    /// block again and again, checking checksums, Merkle data hashes and hash links, so
    /// that damage on disk shows in health and metrics before a client asks for the
    /// damaged block (`ordo_ledger::scrub`). 0 turns it off. Default: 4 MiB/s (a 100 GB
    /// ledger is read about every seven hours).
    pub scrub_bytes_per_sec: u64,
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self {
            scrub_bytes_per_sec: 4 * 1024 * 1024,
        }
    }
}
