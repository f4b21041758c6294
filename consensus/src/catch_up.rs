//! Filling a ledger from other nodes' ledgers up to a known block: the orderer side of
//! [`ordo_sdk::pull`], the one loop that pulls, verifies, writes and retries (a peer's
//! deliver client uses the same loop to follow a channel).
//!
//! A raft node whose log is behind its leader's snapshot pulls the blocks up to the
//! snapshot with it (`raft::driver::catch_up`, executing the raft engine's `CatchUp`). It
//! trusts nothing it pulls: each block goes through a [`ChainVerifier`] (hash chain, data
//! hash, signatures under the configuration in force) and the block at the target must
//! have the target's hash, or the chains forked. (An orderer joining a running channel no
//! longer pulls the chain below its join block: `orderer::registry`.)
//!
//! The policy is a parameter ([`RetryPolicy`]): how long one pull may take, how long to
//! pause when a source served nothing, whether to give up after some rounds (raft retries
//! until it halts), and whether a block that fails verification ends the catch-up or only
//! that source's turn (raft: another consenter may serve the right block).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use ordo_proto::pb::common::Block;
use ordo_proto::verify::ChainVerifier;
use ordo_sdk::pull::{
    self, BlockOpener, BlockSink, BlockStream, Finished, PullError, PullPolicy, PullStats,
    SinkError, Until,
};

use crate::chain::BoxFuture;

pub use ordo_sdk::pull::Target;

/// A node blocks can be pulled from.
pub trait BlockSource: Send + Sync {
    /// How logs and errors name it (unique among the sources of one catch-up).
    fn name(&self) -> String;
    /// Blocks `start..=end` in order, or a prefix of them (a source may cap a pull).
    fn pull(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Block>, String>>;
}

/// How a catch-up retries (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long one pull from one source may take before the next source is tried.
    pub pull_timeout: Duration,
    /// Pause after a pull in which a source served no block.
    pub pause: Duration,
    /// Rounds (every source asked once) without progress before giving up; `None`
    /// retries until halted.
    pub max_rounds: Option<u32>,
    /// Whether a block that fails verification ends the catch-up (else only that
    /// source's turn ends).
    pub bad_block_is_fatal: bool,
}

/// Why a catch-up stopped short of its target.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    /// The pull stopped: a bad block under a fatal policy ([`PullError::BadBlock`]), no
    /// source served within the allowed rounds ([`PullError::Unavailable`]), writing a
    /// verified block failed ([`PullError::Sink`]: the local ledger's problem, not the
    /// source's), or the ledger and the verifier disagree.
    #[error(transparent)]
    Pull(#[from] PullError),
    /// The caller halted.
    #[error("halted while catching up")]
    Halted,
}

/// Pulls, verifies and writes blocks until the ledger (whose height `height` reports)
/// holds `target`; asks `sources` in turn, per `policy`. `write` appends one verified
/// block; `verifier` must be positioned at the ledger's height.
pub async fn fill_to(
    sources: &[&dyn BlockSource],
    target: Target,
    height: impl Fn() -> u64 + Send,
    verifier: &mut ChainVerifier,
    write: impl FnMut(Block) -> Result<(), String> + Send,
    policy: RetryPolicy,
    halt: &CancellationToken,
) -> Result<(), CatchUpError> {
    let names = sources.iter().map(|s| s.name()).collect();
    let pause_ms = u64::try_from(policy.pause.as_millis()).unwrap_or(u64::MAX);
    let pull_policy = PullPolicy {
        open_timeout: policy.pull_timeout,
        idle_timeout: policy.pull_timeout,
        backoff_base_ms: pause_ms,
        backoff_max_ms: pause_ms,
        jitter: false,
        jitter_seed: 0,
        avoid_ms: 0,
        give_up_after_rounds: policy.max_rounds,
        bad_block_is_fatal: policy.bad_block_is_fatal,
        endpoints_from_config: false,
    };
    let mut sink = LedgerSink { height, write };
    let pulled = pull::pull(
        "catch-up",
        &Sources(sources),
        names,
        verifier,
        &mut sink,
        Until::Block(target),
        &pull_policy,
        &PullStats::new(),
        halt,
    )
    .await;
    match pulled? {
        Finished::Reached => Ok(()),
        Finished::Halted | Finished::SinkClosed => Err(CatchUpError::Halted),
    }
}

/// The sources as a [`BlockOpener`]: a pull of a range becomes a stream of its blocks.
struct Sources<'s>(&'s [&'s dyn BlockSource]);

impl BlockOpener for Sources<'_> {
    fn open<'a>(
        &'a self,
        source: &'a str,
        start: u64,
        end: Option<u64>,
    ) -> BoxFuture<'a, Result<BlockStream<'a>, String>> {
        Box::pin(async move {
            let found = self.0.iter().find(|s| s.name() == source);
            let found = found.ok_or_else(|| format!("no source named {source}"))?;
            let blocks = found.pull(start, end.unwrap_or(start)).await?;
            Ok(Box::pin(tokio_stream::iter(blocks.into_iter().map(Ok))) as BlockStream<'a>)
        })
    }
}

/// The ledger being filled, as a [`BlockSink`].
struct LedgerSink<H, W> {
    height: H,
    write: W,
}

impl<H, W> BlockSink for LedgerSink<H, W>
where
    H: Fn() -> u64 + Send,
    W: FnMut(Block) -> Result<(), String> + Send,
{
    fn next_number(&self) -> u64 {
        (self.height)()
    }

    async fn deliver(&mut self, block: Block) -> Result<(), SinkError> {
        (self.write)(block).map_err(|reason| SinkError::Failed(reason.into()))
    }
}

#[cfg(test)]
mod tests;
