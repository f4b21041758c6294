//! Executing a catch-up: the blocks up to a leader's snapshot are pulled from the other
//! consenters' ledgers (verified) before the engine restarts its log at the snapshot.

use tracing::info;

use ordo_proto::block;
use ordo_proto::envelope::tx_id_of;
use ordo_proto::hash::Hash;
use ordo_proto::pb::common::Block;
use ordo_proto::verify::ChainVerifier;

use super::{Driver, Environment, Stop};
use crate::catch_up::{self, BlockSource, CatchUpError, RetryPolicy, Target};
use crate::chain::BoxFuture;
use crate::raft::engine::{CaughtUp, ChainTip};
use crate::raft::transport::{RaftTransport, MAX_PULL_BLOCKS};

/// How long one block pull from one consenter may take before the next is tried.
const PULL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Pause between rounds of block pulls when no consenter could serve them.
const PULL_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

impl<E: Environment> Driver<E> {
    /// Executes a [`crate::raft::engine::Command::CatchUp`]: makes the ledger hold block
    /// `to` with hash `hash` — pulled with everything before it from `sources` and
    /// verified, or, when the ledger is past it, checked to be that block (another hash
    /// there means the chains forked, and the node stops) — and reports the ledger and
    /// the tx ids of the blocks at `tx_ids_at`.
    pub(super) fn catch_up(
        &mut self,
        to: u64,
        hash: Hash,
        sources: &[u64],
        tx_ids_at: &[u64],
    ) -> Result<CaughtUp, Stop> {
        if self.support.height() <= to {
            self.pull_blocks_to(to, hash, sources)?;
        } else {
            let ours = match self.support.ledger().block(to) {
                Ok(b) => b.map(|b| block::hash(&b)),
                // Pruned here: this node verified it when it stored it, and the blocks
                // held since link to it.
                Err(ordo_ledger::LedgerError::Pruned { .. }) => Some(hash),
                Err(e) => return Err(Stop::Failed(e.to_string())),
            };
            if ours != Some(hash) {
                return Err(Stop::Failed(format!(
                    "the raft snapshot names block {to} with another hash than this ledger's: the chains forked"
                )));
            }
        }
        let ledger = self.support.ledger();
        let height = ledger.height();
        let mut carried = Vec::new();
        for n in tx_ids_at.iter().copied().filter(|n| *n < height) {
            let ids = match ledger.block(n) {
                Ok(Some(b)) => b
                    .data
                    .iter()
                    .flat_map(|d| d.data.iter())
                    .filter_map(tx_id_of)
                    .collect(),
                _ => Vec::new(),
            };
            carried.push((n, ids));
        }
        Ok(CaughtUp {
            tip: ChainTip {
                height,
                last_hash: ledger.last_hash().unwrap_or(block::GENESIS_PREVIOUS_HASH),
                state: self.support.state(),
            },
            carried,
        })
    }

    /// Fills the ledger up to block `target` (whose hash must be `target_hash`) from
    /// `ids` through [`crate::catch_up`], verifying every block against the chain and
    /// the configuration in force. A source that serves a bad block loses its turn;
    /// retries until it succeeds or the chain halts.
    fn pull_blocks_to(&mut self, target: u64, target_hash: Hash, ids: &[u64]) -> Result<(), Stop> {
        let sources: Vec<ConsenterSource> = ids
            .iter()
            .map(|id| ConsenterSource {
                transport: self.transport.clone(),
                id: *id,
            })
            .collect();
        let sources: Vec<&dyn BlockSource> =
            sources.iter().map(|s| s as &dyn BlockSource).collect();
        let state = self.support.state();
        let prev = self
            .support
            .ledger()
            .last_hash()
            .unwrap_or(block::GENESIS_PREVIOUS_HASH);
        let mut verifier = ChainVerifier::resume(
            self.support.height(),
            prev,
            state.config.clone(),
            state.last_config_block,
        )
        .map_err(|e| Stop::Failed(e.to_string()))?;
        let support = self.support.clone();
        let halt = self.halt.clone();
        let handle = self.handle.clone();
        let policy = RetryPolicy {
            pull_timeout: PULL_TIMEOUT,
            pause: PULL_RETRY,
            max_rounds: None,
            bad_block_is_fatal: false,
        };
        let filled = handle.block_on(catch_up::fill_to(
            &sources,
            Target {
                number: target,
                hash: target_hash,
            },
            || support.height(),
            &mut verifier,
            |b| write_pulled(&support, b),
            policy,
            &halt,
        ));
        match filled {
            Ok(()) => {}
            Err(CatchUpError::Halted) => return Err(Stop::Halted),
            Err(e) => return Err(Stop::Failed(e.to_string())),
        }
        info!(
            channel = self.channel_id(),
            height = self.support.height(),
            "caught up from the other consenters' ledgers"
        );
        Ok(())
    }
}

/// Writes a verified block pulled from another consenter, signed by this node (a config
/// block puts its configuration in force; the engine learns it from the report).
fn write_pulled(support: &crate::support::ChainSupport, b: Block) -> Result<(), String> {
    let metadata = b
        .metadata
        .as_ref()
        .map(|m| m.consenter_metadata.clone())
        .unwrap_or_default();
    support
        .write_replicated(b, metadata, None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Another consenter, as a source of blocks over the raft transport.
struct ConsenterSource {
    transport: std::sync::Arc<dyn RaftTransport>,
    id: u64,
}

impl BlockSource for ConsenterSource {
    fn name(&self) -> String {
        format!("raft node {:x}", self.id)
    }

    fn pull(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Block>, String>> {
        let end = end.min(start + MAX_PULL_BLOCKS - 1);
        Box::pin(async move {
            self.transport
                .pull_blocks(self.id, start, end)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
