//! What goes into the raft engine and what comes out: its inputs, its commands, what it
//! starts from and what it publishes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft::StateRole;

use ordo_ledger::LogPosition;
use ordo_proto::hash::Hash;
use ordo_proto::pb::common::{Block, Consenter};

use super::super::storage::{LogView, LogWrite};
use crate::chain::{ChainError, OrderRequest};
use crate::support::ConfigState;

/// Names a proposal's sender, who waits for an [`Command::Answer`].
pub type WaiterId = u64;

/// What the engine knows of the ledger: its height, its last block's hash and the
/// configuration in force.
#[derive(Debug, Clone)]
pub struct ChainTip {
    /// Blocks in the ledger.
    pub height: u64,
    /// Hash of the last block.
    pub last_hash: Hash,
    /// The configuration in force.
    pub state: Arc<ConfigState>,
}

/// A block written by a raft entry: compaction snapshots at the last one at or below its
/// floor (the snapshot names that block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMark {
    /// Index of the entry that wrote it (0 for a block raft did not write: genesis).
    pub index: u64,
    /// The block's number.
    pub number: u64,
    /// The block's hash.
    pub hash: Hash,
}

/// What a driver loaded to start an engine.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The raft state, already reconciled with the ledger ([`super::recovery`]).
    pub view: LogView,
    /// Index of the last entry applied to the ledger.
    pub applied: u64,
    /// The ledger.
    pub tip: ChainTip,
    /// The blocks written by entries above the log's snapshot, oldest first, preceded
    /// by the last one at or below it.
    pub marks: Vec<BlockMark>,
}

/// An envelope for the leader.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// The envelope, as Broadcast checked it.
    pub request: OrderRequest,
    /// A config update.
    pub is_config: bool,
    /// Forwarded by a follower: a refusal goes back to it (its client waits there).
    pub forwarded: bool,
    /// Answered with the leader's term once the leader took the envelope, or why not;
    /// `None` for a local normal envelope, acknowledged when it was queued (a refusal
    /// then reaches its committed-mode waiter, as in solo).
    pub waiter: Option<WaiterId>,
}

/// What the driver reports after a [`Command::CatchUp`].
#[derive(Debug, Clone)]
pub struct CaughtUp {
    /// The ledger now.
    pub tip: ChainTip,
    /// The tx ids of the blocks at the numbers the command asked about (those the
    /// ledger holds), in the order asked.
    pub carried: Vec<(u64, Vec<String>)>,
}

/// Something that happened to the node.
#[derive(Debug, Clone)]
pub enum Input {
    /// The time since the driver started (ticks and batch timeouts fire against it),
    /// and the wall clock in Unix seconds (envelope timestamps are re-validated
    /// against it).
    Time {
        /// Monotonic time since the driver started.
        now: Duration,
        /// Wall-clock Unix seconds.
        unix_secs: u64,
    },
    /// An encoded raft message from node `from` (as the transport authenticated it).
    Message {
        /// The authenticated sender.
        from: u64,
        /// The encoded `eraftpb::Message`.
        bytes: Vec<u8>,
    },
    /// An envelope to order.
    Propose(Proposal),
    /// This node forwarded `tx_id` to the leader of `term`, which took it.
    Forwarded {
        /// The envelope's tx id.
        tx_id: String,
        /// The term of the leader that took it.
        term: u64,
    },
    /// Everything waiting was stepped: handle raft's `Ready` (the group commit).
    Flush,
    /// The answer to [`Command::CatchUp`].
    CaughtUp(CaughtUp),
    /// Stop. A follower stops at once ([`Command::Stop`]); a leader first orders what it
    /// took and reports [`EngineStatus::drained`] when it is done, and the driver stops
    /// it once its own queue is empty too.
    Halt,
}

/// Where a block written by [`Command::WriteBlock`] came from, which decides how it is
/// checked and signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This node built it (trusted, data hash not recomputed).
    Proposed,
    /// This node built it, a config block (its configuration comes in force).
    ProposedConfig,
    /// Another node built it (data hash recomputed and checked).
    Replicated,
}

/// A block to sign and append.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockWrite {
    /// The block, unsigned.
    pub block: Block,
    /// The consenter metadata to record (the entry's raft index and term).
    pub metadata: Bytes,
    /// Where the raft log already holds the block (stored by reference), if it does.
    pub logged_at: Option<LogPosition>,
    /// Who built it.
    pub origin: Origin,
    /// The tx ids of its envelopes, in order, when this node built it (known from the
    /// proposal, so the writer tells committed-mode waiters without decoding a thousand
    /// envelopes again); empty for a replicated block.
    pub tx_ids: Vec<String>,
}

/// Why the engine stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// A halt was asked for and the node did not lead.
    Halted,
    /// This node applied its own removal from the consenters.
    Evicted,
    /// Raft state or a peer's data is unusable (a corrupt entry, a forked snapshot).
    Failed(String),
}

/// What the engine asks its driver to do; see the table in the module docs.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Send an encoded raft message.
    Send {
        /// The receiver.
        to: u64,
        /// The encoded `eraftpb::Message`.
        message: Vec<u8>,
    },
    /// Make a raft-state write durable.
    Persist(LogWrite),
    /// Sign and append a block.
    WriteBlock(BlockWrite),
    /// Make the ledger hold block `to` with hash `hash`, then report [`Input::CaughtUp`].
    CatchUp {
        /// The block number.
        to: u64,
        /// Its hash.
        hash: Hash,
        /// Consenters to pull from, in order of preference.
        sources: Vec<u64>,
        /// Numbers whose blocks' tx ids the report must carry.
        tx_ids_at: Vec<u64>,
    },
    /// Answer a proposal's sender: the leader's term once taken, or why not.
    Answer {
        /// Who waits.
        waiter: WaiterId,
        /// The answer.
        result: Result<u64, ChainError>,
    },
    /// Tell the committed-mode waiter of `tx_id` its envelope will not be written.
    Reject {
        /// The envelope.
        tx_id: String,
        /// Why, for the client.
        reason: String,
    },
    /// Step [`Input::Time`] at this time (since the driver started) at the latest.
    ArmTimer(Duration),
    /// The channel's consenters changed (endpoints, names).
    Reconfigure(Vec<Consenter>),
    /// The engine stopped; step it no more.
    Stop(Stopped),
}

/// What the engine publishes for `status()`, metrics and the driver's flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStatus {
    /// Leader, follower, candidate…
    pub role: StateRole,
    /// The leader this node knows (0 when none).
    pub leader: u64,
    /// The current term.
    pub term: u64,
    /// Index of the last committed entry.
    pub committed: u64,
    /// Index of the last entry applied to the ledger.
    pub applied: u64,
    /// Index of the last snapshot.
    pub snapshot_index: u64,
    /// Consenters the leader heard from recently (itself included); 0 on a follower.
    pub active_nodes: u64,
    /// A leader that applied its whole log and has room in its pipeline.
    pub accepting: bool,
    /// Whether the driver should step the envelopes waiting for the leader now (an
    /// accepting leader, or a halting leader draining its queue).
    pub takes_proposals: bool,
    /// This node applied its own removal.
    pub evicted: bool,
    /// Halting, with nothing left to order (see [`Input::Halt`]).
    pub drained: bool,
}
