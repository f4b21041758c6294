//! Filling a ledger from other nodes' ledgers: pull a range, verify every block, write
//! it, try the next source, retry — the one implementation of that loop.
//!
//! Two places need it: an orderer joining a running raft channel pulls the chain up to
//! its join block before it starts (`orderer::registry`), and a raft node whose log is
//! behind its leader's snapshot pulls the blocks up to the snapshot
//! (`raft::driver::catch_up`, executing the raft engine's `CatchUp`). Both trust nothing they pull: each block goes through a
//! [`ChainVerifier`] (hash chain, data hash, signatures under the configuration in force)
//! and the block at the target must have the target's hash, or the chains forked.
//!
//! What the two differ in is policy ([`RetryPolicy`]): how long one pull may take, how
//! long to pause when no source served anything, whether to give up after some rounds
//! (a join answers its admin; a raft node retries until it halts), and whether a block
//! that fails verification ends the catch-up (a join: the join block the admin gave is
//! probably not this channel's) or only that source's turn (raft: another consenter may
//! serve the right block).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use ordo_proto::block;
use ordo_proto::hash::Hash;
use ordo_proto::pb::common::Block;
use ordo_proto::verify::ChainVerifier;

use crate::chain::BoxFuture;

/// A node blocks can be pulled from.
pub trait BlockSource: Send + Sync {
    /// How logs and errors name it.
    fn name(&self) -> String;
    /// Blocks `start..=end` in order, or a prefix of them (a source may cap a pull).
    fn pull(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Block>, String>>;
}

/// The block a catch-up ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Its number: the catch-up ends once the ledger's height is past it.
    pub number: u64,
    /// Its hash: another block there means the chains forked.
    pub hash: Hash,
}

/// How a catch-up retries (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long one pull from one source may take before the next source is tried.
    pub pull_timeout: Duration,
    /// Pause after a round in which no source served a block.
    pub pause: Duration,
    /// Rounds without progress before giving up; `None` retries until halted.
    pub max_rounds: Option<u32>,
    /// Whether a block that fails verification ends the catch-up (else only that
    /// source's turn ends).
    pub bad_block_is_fatal: bool,
}

/// Why a catch-up stopped short of its target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatchUpError {
    /// A source served a block that does not verify, or another block at the target
    /// (only with [`RetryPolicy::bad_block_is_fatal`]).
    #[error("block {number} from {source_name}: {reason}")]
    BadBlock {
        /// The block's number.
        number: u64,
        /// Which source served it.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing a verified block failed: the local ledger's problem, not the source's.
    #[error("writing pulled block {number}: {reason}")]
    Write {
        /// The block's number.
        number: u64,
        /// What the ledger said.
        reason: String,
    },
    /// No source served the next block within the allowed rounds.
    #[error("no source could serve block {height} after {rounds} rounds: {failures}")]
    Unavailable {
        /// The ledger's height (the block wanted).
        height: u64,
        /// Rounds tried.
        rounds: u32,
        /// What each source said last.
        failures: String,
    },
    /// The caller halted.
    #[error("halted while catching up")]
    Halted,
}

/// What a pull from one source achieved.
enum Turn {
    /// Blocks written (at least one).
    Progressed,
    /// The source failed; the next one is tried.
    Failed(String),
}

/// Pulls, verifies and writes blocks until the ledger (whose height `height` reports)
/// holds `target`; tries `sources` in order, round after round, per `policy`. `write`
/// appends one verified block; `verifier` must be positioned at the ledger's height.
pub async fn fill_to(
    sources: &[&dyn BlockSource],
    target: Target,
    height: impl Fn() -> u64,
    verifier: &mut ChainVerifier,
    mut write: impl FnMut(Block) -> Result<(), String>,
    policy: RetryPolicy,
    halt: &CancellationToken,
) -> Result<(), CatchUpError> {
    let mut rounds = 0u32;
    let mut logged = height();
    while height() <= target.number {
        let mut failures = Vec::new();
        let mut progressed = false;
        for source in sources {
            if halt.is_cancelled() {
                return Err(CatchUpError::Halted);
            }
            match pull_once(*source, target, &height, verifier, &mut write, policy).await? {
                Turn::Progressed => {
                    progressed = true;
                    break;
                }
                Turn::Failed(why) => {
                    warn!(source = %source.name(), error = %why, "block pull failed; trying another source");
                    failures.push(format!("{}: {why}", source.name()));
                }
            }
        }
        if height() >= logged + 1_000 {
            logged = height();
            info!(height = logged, target = target.number, "pulling blocks");
        }
        if progressed {
            rounds = 0;
            continue;
        }
        rounds += 1;
        if policy.max_rounds.is_some_and(|max| rounds >= max) {
            return Err(CatchUpError::Unavailable {
                height: height(),
                rounds,
                failures: failures.join("; "),
            });
        }
        if rounds % 20 == 1 {
            warn!(
                height = height(),
                target = target.number,
                "no source could serve the missing blocks; retrying"
            );
        }
        tokio::select! {
            _ = halt.cancelled() => return Err(CatchUpError::Halted),
            _ = tokio::time::sleep(policy.pause) => {}
        }
    }
    Ok(())
}

/// One pull from one source: verifies and writes what it served.
async fn pull_once(
    source: &dyn BlockSource,
    target: Target,
    height: &impl Fn() -> u64,
    verifier: &mut ChainVerifier,
    write: &mut impl FnMut(Block) -> Result<(), String>,
    policy: RetryPolicy,
) -> Result<Turn, CatchUpError> {
    let start = height();
    let pulled = tokio::time::timeout(policy.pull_timeout, source.pull(start, target.number)).await;
    let blocks = match pulled {
        Err(_) => return Ok(Turn::Failed("timed out".into())),
        Ok(Err(e)) => return Ok(Turn::Failed(e)),
        Ok(Ok(blocks)) => blocks,
    };
    let mut written = 0u64;
    let now = ordo_proto::now_ms() / 1000;
    for b in blocks
        .into_iter()
        .take((target.number + 1 - start) as usize)
    {
        let number = block::number(&b);
        // The target's hash first: the verifier advances on a block it accepts, and a
        // forked target must leave it where it was for the next source.
        let refusal = if number == target.number && block::hash(&b) != target.hash {
            Some("is another block than the expected one: the chains forked".to_string())
        } else {
            verifier
                .check(&b, now)
                .err()
                .map(|e| format!("refused: {e}"))
        };
        if let Some(reason) = refusal {
            if policy.bad_block_is_fatal {
                return Err(CatchUpError::BadBlock {
                    number,
                    source_name: source.name(),
                    reason,
                });
            }
            // The verifier does not move on a refusal, so the next source starts here.
            return Ok(Turn::Failed(format!("block {number} {reason}")));
        }
        write(b).map_err(|reason| CatchUpError::Write { number, reason })?;
        written += 1;
    }
    Ok(if written > 0 {
        Turn::Progressed
    } else {
        Turn::Failed("served no block".into())
    })
}

#[cfg(test)]
mod tests;
