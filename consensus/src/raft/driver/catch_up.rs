//! Installing a leader's snapshot: the blocks up to it are pulled from the other
//! consenters' ledgers (verified), then the raft log restarts at the snapshot.

use raft::eraftpb::Snapshot;
use tracing::info;

use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::hash::Hash;
use ordo_proto::pb::common::Block;
use ordo_proto::verify::ChainVerifier;

use super::{CrashPoint, Driver, Stop, PULL_RETRY, PULL_TIMEOUT};
use crate::catch_up::{self, BlockSource, CatchUpError, RetryPolicy, Target};
use crate::chain::BoxFuture;
use crate::raft::parse_snapshot_data;
use crate::raft::transport::{RaftTransport, MAX_PULL_BLOCKS};

impl Driver {
    /// A snapshot from the leader: this node's log is behind the others' compaction
    /// point. The blocks up to the snapshot come from the other consenters' ledgers
    /// (verified), then the raft log restarts at the snapshot.
    pub(super) fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), Stop> {
        let meta = snap.get_metadata();
        let (number, hash) = parse_snapshot_data(snap.get_data()).ok_or_else(|| {
            format!(
                "raft snapshot at index {} carries no block position",
                meta.index
            )
        })?;
        info!(
            channel = self.channel_id(),
            index = meta.index,
            block = number,
            height = self.support.height(),
            "installing a raft snapshot"
        );
        if self.support.height() <= number {
            self.pull_blocks_to(number, hash)?;
            self.crash_point(CrashPoint::AfterBlockPull)?;
        } else {
            let ours = self
                .support
                .ledger()
                .block(number)
                .map_err(|e| e.to_string())?
                .map(|b| block::hash(&b));
            if ours != Some(hash) {
                return Err(Stop::Failed(format!(
                    "the raft snapshot names block {number} with another hash than this ledger's: the chains forked"
                )));
            }
        }
        self.raw
            .mut_store()
            .apply_snapshot(snap, self.applied)
            .map_err(|e| e.to_string())?;
        self.applied = meta.index;
        // What entries would have told this node one by one, the snapshot tells at once:
        // its proposals below the snapshot's height are decided (by the blocks now in the
        // ledger), and those of earlier terms above it are lost.
        self.settle_written_proposals();
        if meta.term > self.applied_term {
            self.forget_lost_forwards(meta.term);
            self.forget_proposals_before(meta.term);
        }
        self.applied_term = meta.term;
        self.last_conf_index = meta.index;
        self.on_config_applied();
        let voters = &meta.get_conf_state().voters;
        if !voters.is_empty() && !voters.contains(&self.id) {
            self.evicted = true;
        }
        Ok(())
    }

    /// Fills the ledger up to block `target` (whose hash must be `target_hash`) from the
    /// other consenters through [`crate::catch_up`], verifying every block against the
    /// chain and the configuration in force. Tries the leader first; a source that
    /// serves a bad block loses its turn; retries until it succeeds or the chain halts.
    pub(super) fn pull_blocks_to(&mut self, target: u64, target_hash: Hash) -> Result<(), Stop> {
        let leader = self.raw.raft.leader_id;
        let mut ids: Vec<u64> = self
            .voters()
            .into_iter()
            .filter(|id| *id != self.id && *id != leader)
            .collect();
        if leader != 0 && leader != self.id {
            ids.insert(0, leader);
        }
        let sources: Vec<ConsenterSource> = ids
            .into_iter()
            .map(|id| ConsenterSource {
                transport: self.transport.clone(),
                id,
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
        .map_err(|e| e.to_string())?;
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
            |b| self.write_pulled(b),
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

    /// Writes a verified block pulled from another consenter (signed by this node; a
    /// config block puts its configuration in force here too).
    fn write_pulled(&mut self, b: Block) -> Result<(), String> {
        let metadata = b
            .metadata
            .as_ref()
            .map(|m| m.consenter_metadata.clone())
            .unwrap_or_default();
        let is_config = config::config_from_block(&b).is_ok();
        self.support
            .write_replicated(b, metadata, None)
            .map_err(|e| e.to_string())?;
        if is_config {
            self.on_config_applied();
        }
        Ok(())
    }
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
