//! Pulling a chain from nodes that are not trusted: open a block stream from one of
//! several sources, verify every block, hand it to a sink, fail over and back off — the
//! one implementation of that loop in Ordo.
//!
//! Three places use it, and differ only in [`PullPolicy`], [`Until`] and where blocks
//! come from ([`BlockOpener`]):
//!
//! | user | sources | until | a block that fails verification |
//! |---|---|---|---|
//! | a peer's deliver client (`ordo_peer::deliver`) | the channel's orderers (Deliver) | [`Until::Forever`] | avoids that orderer for a while |
//! | an orderer joining a raft channel (`ordo_orderer::registry`) | the consenters (Cluster pulls) | [`Until::Block`]: the join block | ends the join (the join block is probably another channel's) |
//! | a raft node behind its leader's snapshot (`ordo_consensus::catch_up`) | the other consenters | [`Until::Block`]: the snapshot's block | ends that source's turn |
//!
//! # Layout
//!
//! Sans-IO cores and a thin async driver:
//!
//! - [`EndpointSet`] (core): which source to ask next — round-robin, skipping a source
//!   that served a block failing verification for [`PullPolicy::avoid_ms`].
//! - [`Backoff`] (core): capped exponential backoff with equal jitter from a seeded RNG.
//! - `Outage` (core): which failures are worth a WARN line.
//! - [`pull`] (driver): owns the streams, the timers, the [`ChainVerifier`](ordo_proto::verify::ChainVerifier) and the sink;
//!   counts in [`PullStats`].
//!
//! # The flow
//!
//! [`pull`] asks the [`EndpointSet`] for a source and opens a stream there from the
//! verifier's next block (which must be the sink's). For each block that arrives:
//!
//! 1. with [`Until::Block`], the block at the target must have the target's hash (else
//!    the chains forked);
//! 2. the [`ChainVerifier`](ordo_proto::verify::ChainVerifier) checks it — number, hash chain, Merkle data hash, last-config
//!    metadata and the orderer signatures against the BlockValidation policy of the
//!    configuration in force — on tokio's blocking pool (a block of tens of megabytes
//!    takes long enough to stall other tasks);
//! 3. only if it verifies, [`BlockSink::deliver`] takes it; after that the sink's
//!    [`BlockSink::next_number`] must be the next block's number. With
//!    [`PullPolicy::endpoints_from_config`], a config block that changes the channel's
//!    orderer endpoints replaces the channel part of the [`EndpointSet`].
//!
//! A block that fails step 1 or 2 is never delivered: the stream is dropped, the source
//! avoided, and the pull goes on elsewhere from the same block — or, with
//! [`PullPolicy::bad_block_is_fatal`], stops with [`PullError::BadBlock`]. Any other end
//! of a stream — the source's error, a stream that cannot be opened within
//! [`PullPolicy::open_timeout`], no block for [`PullPolicy::idle_timeout`], or a stream
//! that ends — moves on to the next source after a backoff delay, or at once when the
//! stream served blocks before it ended (a source may cap how much one pull returns).
//! Every replaced stream counts one reconnect.
//!
//! # Limits
//!
//! One stream at a time; one block in hand at a time (the next block is not read before
//! the sink took the current one, so a slow sink slows the source down rather than
//! filling memory). [`PullPolicy::give_up_after_rounds`] bounds the retries of a pull
//! that must answer someone (a join); without it the pull retries until halted.
//!
//! # Halting
//!
//! The halt token is watched while waiting on a source or a backoff timer, never while
//! the sink holds a block: a `deliver` future is always polled to completion, so a
//! committer never sees a block half taken.

mod backoff;
mod endpoints;
mod outage;
mod run;
mod stats;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use thiserror::Error;
use tokio_stream::Stream;

use ordo_proto::hash::Hash;
use ordo_proto::pb::common::Block;

pub use backoff::Backoff;
pub use endpoints::{channel_endpoints, EndpointSet, MAX_ENDPOINTS};
pub use outage::OUTAGE_REMINDER;
pub use run::pull;
pub use stats::{PullCounts, PullStats};

/// A boxed `Send` future (trait methods that open streams return one).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Blocks as a source serves them, in order; an item's error ends the stream (the
/// source's words, for the logs).
pub type BlockStream<'a> = Pin<Box<dyn Stream<Item = Result<Block, String>> + Send + 'a>>;

/// Opens block streams at named sources (an orderer's `host:port`, a consenter's id).
pub trait BlockOpener: Sync {
    /// Opens a stream of the blocks `start..` of `source`: up to `end` inclusive when it
    /// is given (a source may serve only a prefix and end the stream), else following the
    /// chain as it grows. Errors are the source's words, for the logs.
    fn open<'a>(
        &'a self,
        source: &'a str,
        start: u64,
        end: Option<u64>,
    ) -> BoxFuture<'a, Result<BlockStream<'a>, String>>;
}

/// Where verified blocks go: a committer, a ledger being filled, anything that consumes
/// a chain.
///
/// The contract:
///
/// - [`BlockSink::next_number`] is the number of the block the sink wants next (its
///   height). When [`pull`] starts it must equal the verifier's next block.
/// - [`BlockSink::deliver`] is called with exactly that block, verified, once. After it
///   returns `Ok`, `next_number` must be one more; [`pull`] stops with
///   [`PullError::SinkOutOfStep`] otherwise.
/// - [`pull`] always polls a `deliver` future to completion (a halt waits for it).
/// - An error ends [`pull`]: [`SinkError::Closed`] with [`Finished::SinkClosed`],
///   anything else with [`PullError::Sink`]. The sink must then not have taken the block
///   half-way: a committer applies a block in one write batch or not at all.
/// - A sink may take a block before it is done with it (a committer that writes block n
///   while it checks block n+1): then a failure of block n may surface from the next
///   `deliver`, and [`BlockSink::flush`] waits until every block taken is done. [`pull`]
///   flushes before it returns, whatever it returns.
///
/// Implement `deliver` with `async fn deliver(&mut self, block: Block) -> ...`, whose
/// future must be `Send`.
pub trait BlockSink: Send {
    /// The number of the block the sink wants next.
    fn next_number(&self) -> u64;

    /// Takes the next block, already verified.
    fn deliver(&mut self, block: Block) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Waits until every block taken is done with (durable, for a committer). A sink that
    /// finishes each block within `deliver` has nothing to wait for.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Why a sink did not take a block.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The sink stops taking blocks (its owner is shutting down): [`pull`] ends with
    /// [`Finished::SinkClosed`].
    #[error("the sink is closed")]
    Closed,
    /// The sink failed (a storage error, say): [`pull`] ends with [`PullError::Sink`].
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// A block a pull must end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Its number: the pull ends once the sink's height is past it.
    pub number: u64,
    /// Its hash: another block there means the chains forked.
    pub hash: Hash,
}

/// How long a pull goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Follow the chain as it grows, until halted (a peer).
    Forever,
    /// Until the sink holds this block (a node catching up to a known block).
    Block(Target),
}

/// How a pull waits, retries and judges its sources (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullPolicy {
    /// How long opening a stream may take (for a source that answers a whole range at
    /// once, the whole pull).
    pub open_timeout: Duration,
    /// How long an open stream may stay silent before the source is given up on.
    pub idle_timeout: Duration,
    /// Backoff before the first retry after progress, in milliseconds; each further
    /// failure in a row doubles it.
    pub backoff_base_ms: u64,
    /// Largest backoff, in milliseconds.
    pub backoff_max_ms: u64,
    /// Whether each delay is drawn from `[ceiling / 2, ceiling]` (spreads the retries of
    /// many clients that lost the same source) or is the ceiling itself.
    pub jitter: bool,
    /// Seeds the jitter, so that a run replays.
    pub jitter_seed: u64,
    /// How long a source that served a block failing verification is skipped, in
    /// milliseconds (0: not skipped).
    pub avoid_ms: u64,
    /// Give up after this many rounds (every source asked once) without a verified
    /// block; `None` retries until halted.
    pub give_up_after_rounds: Option<u32>,
    /// Whether a block failing verification ends the pull (else only that source's
    /// turn).
    pub bad_block_is_fatal: bool,
    /// Whether the channel's orderer endpoints in each configuration in force (its
    /// consenters' `endpoint`s) join the sources, ahead of the ones given.
    pub endpoints_from_config: bool,
}

/// How a pull ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The sink holds the target block ([`Until::Block`]).
    Reached,
    /// The halt token was cancelled.
    Halted,
    /// The sink closed.
    SinkClosed,
}

/// Why [`pull`] stopped short. Failures of sources are not errors — the pull fails over
/// and retries; these are the conditions retrying cannot repair (or, with a policy that
/// gives up, did not).
#[derive(Debug, Error)]
pub enum PullError {
    /// No source is known.
    #[error("no source to pull blocks from")]
    NoSources,
    /// The sink and the verifier disagree on the next block: at start, or after the sink
    /// took a block without advancing by one.
    #[error("the sink expects block {sink} but the verifier is at block {verifier}")]
    SinkOutOfStep {
        /// The sink's next block.
        sink: u64,
        /// The verifier's next block.
        verifier: u64,
    },
    /// The sink failed to take a verified block.
    #[error("the sink failed to take block {number}: {source}")]
    Sink {
        /// The block.
        number: u64,
        /// The sink's error.
        source: SinkError,
    },
    /// The task verifying a block died (a bug: verification does not panic).
    #[error("block verification task failed: {0}")]
    VerifierTask(String),
    /// A source served a block that does not verify, or another block at the target
    /// (only with [`PullPolicy::bad_block_is_fatal`]).
    #[error("block {number} from {source_name}: {reason}")]
    BadBlock {
        /// The block's number.
        number: u64,
        /// Which source served it.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No source served a verified block within [`PullPolicy::give_up_after_rounds`].
    #[error("no source could serve block {height} after {rounds} rounds: {failures}")]
    Unavailable {
        /// The sink's height (the block wanted).
        height: u64,
        /// Rounds tried.
        rounds: u32,
        /// What each source said last, in rotation order.
        failures: String,
    },
}
