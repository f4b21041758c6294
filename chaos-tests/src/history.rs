//! The history of a run: every submit, acknowledgement, delivered block, peer state and
//! fault, with the node and the time, in the order they happened.
//!
//! Recorders (load clients, Deliver readers, peer pollers, the nemesis) append to one
//! shared [`History`]; the checkers read the finished list. Times are milliseconds since
//! the run started, from one monotonic clock.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

/// A block as a node served it: enough to compare chains and find transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockSummary {
    /// Block number.
    pub number: u64,
    /// Hash of the block header (hex).
    pub hash: String,
    /// The header's previous hash (hex).
    pub previous: String,
    /// The tx ids of the block's envelopes, in order (empty string for an envelope
    /// without one).
    pub txs: Vec<String>,
    /// SHA-256 over the envelopes' bytes, in order (hex): the header hash covers the
    /// data only through the data hash, and a node that accepts data under a header it
    /// does not match must show.
    pub data_digest: String,
    /// For a config block made from a client's CONFIG_UPDATE (every config block but the
    /// genesis): who signed that update, as the hex SHA-256 of its creator certificate. The
    /// block's tx id is the orderer's own (it signs the CONFIG envelope), so the
    /// [`crate::check::submitted`] checker matches config blocks to the operator's
    /// [`Event::ConfigSubmit`]s by this instead.
    pub config_update_by: Option<String>,
}

/// How Broadcast answered one envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AckOutcome {
    /// SUCCESS; in `committed` mode with the block number.
    Success {
        /// The block holding the envelope, when the node said.
        block: Option<u64>,
    },
    /// Any other status: the node says the envelope was not ordered.
    Refused {
        /// The status name.
        status: String,
        /// The node's reason.
        info: String,
    },
    /// No answer (stream broke, node died, timeout): the outcome is unknown.
    Unknown {
        /// What happened.
        reason: String,
    },
}

/// Where a recorded block came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BlockSource {
    /// A Deliver stream that followed the node during the run.
    Stream,
    /// The node's whole chain, read after the faults healed.
    Final,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Event {
    /// A client sent an envelope to a node.
    Submit {
        /// The envelope's tx id.
        tx: String,
        /// The node it went to.
        node: String,
    },
    /// The node's answer.
    Ack {
        /// The envelope's tx id.
        tx: String,
        /// The node that answered.
        node: String,
        /// What it said.
        outcome: AckOutcome,
    },
    /// A node served a block.
    Block {
        /// The node.
        node: String,
        /// Following or final read.
        source: BlockSource,
        /// The block.
        block: BlockSummary,
    },
    /// A node's final chain starts above block 0: it answered NOT_FOUND below `first` (a
    /// peer joined from a snapshot holds no earlier block). Its chain is checked from
    /// there.
    ChainBase {
        /// The node.
        node: String,
        /// The lowest block it holds.
        first: u64,
    },
    /// A peer's (height, commit hash) as its channel info reported it.
    PeerState {
        /// The peer.
        peer: String,
        /// Its ledger height.
        height: u64,
        /// The commit hash after block `height - 1` (hex).
        commit_hash: String,
    },
    /// The nemesis did something.
    Fault {
        /// What, in words (`kill orderer1`, `partition {0} | {1,2}`, ...).
        what: String,
    },
    /// A node's process ended without the nemesis killing or stopping it (and not on a
    /// disk the nemesis filled).
    Exited {
        /// The node.
        node: String,
        /// How it ended (exit code or signal).
        status: String,
        /// The panic or last error its log shows, if any.
        last_words: String,
    },
    /// An operator submitted a config update (`ordo channel consenter update`): the config
    /// block it makes, if the channel accepts it, holds a tx no load client sent.
    ConfigSubmit {
        /// The signer of the update, as [`BlockSummary::config_update_by`] names it.
        by: String,
        /// What the update changes.
        what: String,
    },
    /// Every fault was undone: from here on the system must make progress.
    Healed,
}

/// An event and when it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    /// What happened.
    pub event: Event,
}

/// The shared, append-only history of one run. Cloning shares it.
#[derive(Debug, Clone)]
pub struct History {
    start: Instant,
    records: Arc<Mutex<Vec<Record>>>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            records: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Appends `event`, stamped now.
    pub fn record(&self, event: Event) {
        let at_ms = self.now_ms();
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Record { at_ms, event });
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many events match `pred` so far.
    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|r| pred(&r.event))
            .count()
    }
}
