//! The raft backend: one raft-rs group per channel among the channel's consenters.
//!
//! The leader cuts blocks with the channel's [`crate::cutter::BlockCutter`] and proposes
//! whole blocks (at most `max_inflight_blocks` proposed and not yet applied); followers
//! forward the envelopes they receive to the leader ([`RaftTransport::submit`]). Every
//! node applies committed entries by signing the block with its own identity and
//! appending it to its ledger, with the entry's raft index as the block's consenter
//! metadata — so a restarted node knows which entries its ledger already holds.
//!
//! Every decision is made by the [`engine`] — a pure function of its inputs over
//! raft-rs's `RawNode` and an in-memory view of the log, which a seeded simulation can
//! replay — and carried out by a thin driver on the chain's own thread, which executes
//! the engine's commands in order against RocksDB, the transport and the waiters. The
//! engine persists entries and hard state (synced) before the messages that depend on
//! them, as raft-rs's `Ready` contract requires. Time reaches raft only as ticks the
//! engine derives from the driver's clock.
//!
//! ## Each block is stored once
//!
//! A block reaches the disk once, inside the raft entry that carries it: the entry holds
//! the block encoded without metadata, and applying the entry writes to the ledger only
//! a reference to the entry plus this node's signature metadata
//! ([`ordo_ledger::BlockStore::append_logged`]). Before, the block went to disk twice
//! (the log entry, then the ledger) — four times counting RocksDB's flushes — which was
//! the largest cost of a raft orderer. Crash safety rests on four rules:
//!
//! 1. **The entry is durable before the reference.** raft-rs hands out committed entries
//!    only once they are persisted (`applied <= min(committed, persisted)`), and the
//!    engine's `Persist` is synced; the reference is written (synced) after.
//!    A crash between the two leaves an entry the ledger does not yet name: recovery
//!    applies it again, exactly as it did when blocks were copied.
//! 2. **A referenced entry is never deleted or rewritten.** Raft truncates only
//!    uncommitted tails, which are above everything applied. Compaction
//!    ([`storage::LogView::compaction`]) deletes only entries that carry no block, and
//!    installing a snapshot ([`storage::LogView::restart`]) keeps every entry up to the
//!    node's applied index — the ones the ledger may name. Raft forgets them; the ledger
//!    owns their keys from then on.
//! 3. **The reference is checked when written**: the ledger refuses a position whose
//!    entry does not hold this block there (length and header bytes), so a wrong
//!    offset stops the chain instead of storing a ledger that reads back wrong.
//! 4. **Blocks that did not come from this node's log are stored inline**: blocks pulled
//!    from other consenters (catch-up, joining), config blocks carried in a conf
//!    change's context, and entries written before this format (which held the block
//!    with empty metadata). Reading a block does not care which it is.
//!
//! `committed` acks keep their promise: the block is acknowledged after the ledger's
//! synced write, as before, and the bytes it names were synced earlier.
//!
//! A new leader accepts envelopes only once it has applied every entry of its log, so its
//! first block follows the last block of its predecessor. Envelopes a deposed leader had
//! accepted but not yet proposed are answered SERVICE_UNAVAILABLE to committed-mode
//! waiters (the client resubmits); envelopes of a proposal that lost to another block at
//! the same height likewise. Nothing acknowledged in `committed` mode is dropped silently.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use bytes::Bytes;
use raft::eraftpb::{Snapshot, SnapshotMetadata};

use ordo_ledger::ConsensusLog;
use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::pb::common::{Block, RaftConfig};

use crate::chain::{ChainError, OrderRequest};

mod chain;
pub mod consenter;
pub mod disk;
mod driver;
pub mod engine;
mod entry;
mod logger;
pub mod membership;
pub mod recovery;
pub mod stepped;
pub mod storage;
pub mod transport;

pub use chain::RaftChain;
pub use consenter::{ClusterNetwork, RaftConsenter};
pub use driver::CrashPoint;
pub use stepped::{ManualClock, SteppedRaft};
pub use transport::{LocalNetwork, RaftTransport};

/// Timing and flow-control settings of a raft chain (from the channel's `RaftConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftOptions {
    /// Real time of one raft tick.
    pub tick_interval: Duration,
    /// Ticks without a heartbeat before a follower campaigns (randomised up to twice).
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// Blocks the leader may have proposed and not yet applied.
    pub max_inflight_blocks: usize,
    /// Log bytes after which a snapshot is taken and the log compacted.
    pub snapshot_interval_bytes: u64,
    /// Envelopes that may wait for the leader's raft loop (backpressure for Broadcast).
    pub queue_capacity: usize,
    /// Seed for election timeouts (deterministic runs, e.g. simulation): each node's
    /// timeout is fixed from the seed and its id. `None` lets raft-rs randomise every
    /// election, which is what production wants.
    pub election_seed: Option<u64>,
}

impl Default for RaftOptions {
    fn default() -> Self {
        Self {
            tick_interval: Duration::from_millis(100),
            election_tick: 10,
            heartbeat_tick: 1,
            max_inflight_blocks: 5,
            snapshot_interval_bytes: 64 << 20,
            queue_capacity: 4_096,
            election_seed: None,
        }
    }
}

impl RaftOptions {
    /// The options a channel's `RaftConfig` asks for; zero fields take the defaults.
    pub fn from_config(config: Option<&RaftConfig>) -> Self {
        let d = Self::default();
        let Some(c) = config else { return d };
        let or = |v: u64, default: u64| if v == 0 { default } else { v };
        Self {
            tick_interval: Duration::from_millis(or(
                c.tick_interval_ms,
                d.tick_interval.as_millis() as u64,
            )),
            election_tick: or(u64::from(c.election_tick), d.election_tick as u64) as usize,
            heartbeat_tick: or(u64::from(c.heartbeat_tick), d.heartbeat_tick as u64) as usize,
            max_inflight_blocks: or(
                u64::from(c.max_inflight_blocks),
                d.max_inflight_blocks as u64,
            ) as usize,
            snapshot_interval_bytes: or(c.snapshot_interval_bytes, d.snapshot_interval_bytes),
            queue_capacity: d.queue_capacity,
            election_seed: None,
        }
    }
}

/// The raft node id of a consenter: the first 8 bytes of SHA-256 of its name (never 0,
/// which raft-rs reserves). Every node derives the same ids from the channel config.
pub fn raft_id(consenter: &str) -> u64 {
    let digest = Sha256::digest(consenter.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id).max(1)
}

/// The consenter metadata of a block written by raft: the raft index and term of the
/// entry that carried it. A restarted node resumes applying after the index; a node
/// joining from a config block starts its log right after that entry.
pub fn consenter_metadata(index: u64, term: u64) -> Bytes {
    let mut m = Vec::with_capacity(16);
    m.extend_from_slice(&index.to_be_bytes());
    m.extend_from_slice(&term.to_be_bytes());
    Bytes::from(m)
}

/// The raft (index, term) a block's consenter metadata records; `None` for a block raft
/// did not write (the genesis block).
pub fn raft_position(b: &Block) -> Option<(u64, u64)> {
    let m = b.metadata.as_ref()?.consenter_metadata.as_ref();
    let index = u64::from_be_bytes(m.get(..8)?.try_into().ok()?);
    let term = m
        .get(8..16)
        .and_then(|t| <[u8; 8]>::try_from(t).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    Some((index, term))
}

/// Snapshot data: the number and hash of the last block at or before the snapshot index.
pub(crate) fn snapshot_data(number: u64, hash: &[u8]) -> Vec<u8> {
    let mut d = number.to_be_bytes().to_vec();
    d.extend_from_slice(hash);
    d
}

/// Reads [`snapshot_data`].
pub(crate) fn parse_snapshot_data(data: &[u8]) -> Option<(u64, ordo_proto::hash::Hash)> {
    let number = u64::from_be_bytes(data.get(..8)?.try_into().ok()?);
    let hash: [u8; 32] = data.get(8..40)?.try_into().ok()?;
    Some((number, hash))
}

/// Prepares the raft state of a node that joins a running channel from `join_block`, a
/// config block naming it as a consenter, once its ledger starts right after that block
/// (`BlockStore::start_after_config_block`, with the other consenters' copy of it): the
/// raft log starts as a snapshot at the entry that carried the block, with the block's
/// consenters as voters, so the leader replicates only what follows.
pub fn prepare_join(log: ConsensusLog, join_block: &Block) -> Result<(), ChainError> {
    let (index, term) = raft_position(join_block).ok_or_else(|| {
        ChainError::Unsupported(
            "the join block carries no raft position; join from a config block written by raft"
                .into(),
        )
    })?;
    let cfg = config::config_from_block(join_block)
        .map_err(|e| ChainError::Unsupported(format!("join block: {e}")))?;
    let mut meta = SnapshotMetadata {
        index,
        term,
        ..Default::default()
    };
    meta.mut_conf_state().voters = membership::voters_of(&cfg).into_iter().collect();
    let mut snap = Snapshot::default();
    snap.set_metadata(meta);
    snap.set_data(
        snapshot_data(block::number(join_block), block::hash(join_block).as_ref()).into(),
    );
    let (disk, view) =
        disk::DiskLog::load(log, &[]).map_err(|e| ChainError::Storage(e.to_string()))?;
    disk.write(&view.restart(&snap, 0))
        .map_err(|e| ChainError::Storage(e.to_string()))
}

/// Who this node is in the raft group and how it reaches the others.
pub struct RaftSetup {
    /// This node's raft id.
    pub id: u64,
    /// The founding voters (used only when the channel's raft log is empty).
    pub voters: Vec<u64>,
    /// Names of the nodes by raft id (for leader hints and logs).
    pub names: HashMap<u64, String>,
    /// The network.
    pub transport: Arc<dyn RaftTransport>,
    /// Timings and limits.
    pub options: RaftOptions,
}

/// What the raft loop publishes for `status()` and metrics.
#[derive(Debug, Default)]
struct Shared {
    leader: AtomicU64,
    term: AtomicU64,
    is_leader: AtomicBool,
    /// Set once a new leader has applied its whole log and takes envelopes.
    accepting: AtomicBool,
    role: RwLock<String>,
    leader_changes: AtomicU64,
    /// Envelopes this node forwarded, with the term of the leader that took them, for
    /// the raft loop: if an entry of a later term is applied before their block, they
    /// were lost with that leader and their committed-mode waiters are told (see the
    /// engine's `settle`).
    forwarded: Mutex<VecDeque<(String, u64)>>,
    committed: AtomicU64,
    applied: AtomicU64,
    persist_micros: AtomicU64,
    active_nodes: AtomicU64,
    snapshot_index: AtomicU64,
    /// Consenter names by raft id (for leader hints), updated with the config.
    names: RwLock<HashMap<u64, String>>,
    /// Set once this node applied its own removal from the consenters.
    evicted: AtomicBool,
}

/// What a raft chain reports for metrics: read at scrape time, written by the raft loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftMetrics {
    /// Whether this node leads the group.
    pub is_leader: bool,
    /// The current term.
    pub term: u64,
    /// Times the leader this node knows has changed since start.
    pub leader_changes: u64,
    /// Index of the last committed raft entry.
    pub committed_index: u64,
    /// Index of the last entry applied to the ledger.
    pub applied_index: u64,
    /// Total time spent persisting raft entries and hard state (synced), microseconds.
    pub persist_micros: u64,
    /// Consenters the leader heard from recently (the node itself included); 0 on a
    /// follower, which cannot know.
    pub active_nodes: u64,
    /// Raft index of the last snapshot (the log holds only entries after it).
    pub snapshot_index: u64,
}

/// An envelope handed to the leader's raft loop.
struct Proposal {
    request: OrderRequest,
    is_config: bool,
    /// Forwarded by a follower: a refusal goes back to it (its client waits there)
    /// instead of to this node's waiters.
    forwarded: bool,
    /// Answered with the leader's term once the leader took the envelope; `None` for a
    /// local normal envelope, acknowledged as soon as it is queued (a refusal then goes
    /// to its committed-mode waiter, as in solo).
    done: Option<Answer>,
}

/// How the raft loop answers a proposal whose sender waits.
type Answer = oneshot::Sender<Result<u64, ChainError>>;

#[cfg(test)]
mod tests;
