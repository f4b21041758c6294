//! Applying committed entries: blocks to the ledger (by reference to their entry),
//! membership changes, a node's own removal, and log compaction.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, Entry, EntryType};
use raft::{StateRole, Storage};
use tracing::{debug, info, warn};

use ordo_ledger::LogPosition;
use ordo_proto::block;
use ordo_proto::hash::Hash;
use ordo_proto::pb::common::Block;

use super::entry::{carries_block, logged_position, KIND_CONFIG_BLOCK};
use super::{tx_id_of, Driver, Stop, MAX_SNAPSHOT_SEARCH};
use crate::raft::{consenter_metadata, raft_position, snapshot_data};

impl Driver {
    pub(super) fn apply(&mut self, entries: Vec<Entry>) -> Result<(), String> {
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            if e.term > self.applied_term {
                self.applied_term = e.term;
                self.forget_lost_forwards(e.term);
                self.forget_proposals_before(e.term);
            }
            match e.get_entry_type() {
                EntryType::EntryNormal if !e.data.is_empty() => {
                    self.apply_block(e.index, e.term, &e.data, logged_position(&e))?;
                }
                EntryType::EntryNormal => {}
                EntryType::EntryConfChange => self.apply_conf_change(&e)?,
                EntryType::EntryConfChangeV2 => {
                    return Err(format!(
                        "raft entry {} is a joint membership change, which Ordo never proposes",
                        e.index
                    ));
                }
            }
            self.applied = e.index;
        }
        if let Some(target) = self.catch_up_to {
            if self.applied >= target && self.role == StateRole::Leader {
                self.catch_up_to = None;
                self.forget_lost_proposals();
                self.support.reset_created();
                info!(
                    channel = self.channel_id(),
                    term = self.raw.raft.term,
                    height = self.support.height(),
                    "raft leader caught up; accepting envelopes"
                );
            }
        }
        Ok(())
    }

    /// A membership change: the new voter set is made durable first (applying it again
    /// after a crash changes nothing), then its config block is written.
    pub(super) fn apply_conf_change(&mut self, e: &Entry) -> Result<(), String> {
        let cc = ConfChange::parse_from_bytes(&e.data)
            .map_err(|err| format!("raft entry {} holds no conf change: {err}", e.index))?;
        let cs = self
            .raw
            .apply_conf_change(&cc)
            .map_err(|err| format!("applying the conf change of entry {}: {err}", e.index))?;
        self.raw
            .mut_store()
            .set_conf_state(cs.clone())
            .map_err(|err| err.to_string())?;
        self.last_conf_index = e.index;
        info!(
            channel = self.channel_id(),
            index = e.index,
            node = format_args!("{:x}", cc.node_id),
            change = ?cc.get_change_type(),
            voters = cs.voters.len(),
            "membership changed"
        );
        if !e.context.is_empty() {
            self.apply_block(e.index, e.term, &e.context, None)?;
        }
        if !cs.voters.contains(&self.id) {
            self.evicted = true;
        }
        Ok(())
    }

    /// Writes the block of a committed entry: by reference to the entry (`logged_at`)
    /// when it holds the block at a known place, so the block is stored once.
    pub(super) fn apply_block(
        &mut self,
        index: u64,
        term: u64,
        data: &[u8],
        logged_at: Option<LogPosition>,
    ) -> Result<(), String> {
        let (kind, body) = data
            .split_first()
            .ok_or_else(|| format!("raft entry {index} is empty"))?;
        let block = Block::decode(body)
            .map_err(|err| format!("raft entry {index} holds no block: {err}"))?;
        let number = block::number(&block);
        let height = self.support.height();
        if number < height {
            // Already in the ledger (written before a restart, or pulled).
            return Ok(());
        }
        if number > height {
            return Err(format!(
                "raft entry {index} holds block {number} but the ledger height is {height}"
            ));
        }
        let metadata = consenter_metadata(index, term);
        // An entry written before blocks went into the log without metadata holds one:
        // its bytes are not the unsigned block, so it is stored inline.
        let logged_at = logged_at.filter(|_| block.metadata.is_none());
        let mine = self.inflight.remove(&number);
        let written = match &mine {
            Some(m) if m.hash == block::hash(&block) => {
                if *kind == KIND_CONFIG_BLOCK {
                    self.support.write_config_block(block, metadata, logged_at)
                } else {
                    self.support.write_block(block, metadata, logged_at)
                }
            }
            _ => {
                if let Some(lost) = &mine {
                    // Another leader's block took this height: ours will never be
                    // written. Tell the waiters of envelopes it does not carry.
                    let carried: HashSet<String> = block
                        .data
                        .iter()
                        .flat_map(|d| d.data.iter())
                        .filter_map(|b| tx_id_of(b))
                        .collect();
                    for id in lost.tx_ids.iter().filter(|id| !carried.contains(*id)) {
                        self.support.notify_rejected(
                            id,
                            "the raft leader changed before the envelope was ordered; resubmit"
                                .into(),
                        );
                    }
                }
                self.support.write_replicated(block, metadata, logged_at)
            }
        };
        let n = written.map_err(|err| format!("writing block {number}: {err}"))?;
        if *kind == KIND_CONFIG_BLOCK {
            self.on_config_applied();
            info!(
                channel = self.channel_id(),
                block = n,
                sequence = self.support.sequence(),
                "configuration updated"
            );
        }
        Ok(())
    }

    /// A config block was written: batch limits, consenter endpoints and names follow it.
    pub(super) fn on_config_applied(&mut self) {
        let state = self.support.state();
        self.cutter.set_limits(state.limits);
        if let Some(orderer) = state.config.orderer.as_ref() {
            if !orderer.consenters.is_empty() {
                self.transport.reconfigure(&orderer.consenters);
                let mut names = self.shared.names.write().unwrap_or_else(|p| p.into_inner());
                for c in &orderer.consenters {
                    names.insert(crate::raft::raft_id(&c.id), c.id.clone());
                }
            }
        }
    }

    /// This node applied its own removal: it stops ordering for the channel. A leader
    /// first tells the others the commit index (so they apply the removal too) and hands
    /// leadership to the most up-to-date remaining voter.
    pub(super) fn leave(&mut self) {
        self.shared.evicted.store(true, Ordering::Release);
        warn!(
            channel = self.channel_id(),
            height = self.support.height(),
            "this orderer was removed from the channel's consenters; it stops ordering"
        );
        if self.role == StateRole::Leader {
            let successor = self
                .raw
                .raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != self.id)
                .max_by_key(|(_, pr)| pr.matched)
                .map(|(id, _)| *id);
            self.raw.ping();
            if let Some(next) = successor {
                self.raw.transfer_leader(next);
            }
            if let Err(Stop::Failed(e)) = self.on_ready() {
                warn!(channel = self.channel_id(), error = %e, "final raft step failed");
            }
        }
        self.reject_pending(
            "this orderer was removed from the channel's consenters; resubmit to another",
        );
    }

    /// Takes a snapshot and compacts the log once enough has been written since the last
    /// one. The compaction point keeps what live followers still need; a follower that is
    /// down does not hold it back (it catches up from the snapshot and block pulls).
    pub(super) fn maybe_compact(&mut self) -> Result<(), String> {
        let store = self.raw.store();
        if store.bytes_since_snapshot() < self.options.snapshot_interval_bytes {
            return Ok(());
        }
        let mut floor = self.applied;
        if self.role == StateRole::Leader {
            for (id, pr) in self.raw.raft.prs().iter() {
                if *id != self.id && pr.recent_active {
                    floor = floor.min(pr.matched);
                }
            }
        }
        // The snapshot records the membership in force now, so it cannot sit before the
        // last membership change.
        if floor < self.last_conf_index || floor <= store.first_index().unwrap_or(1) {
            return Ok(());
        }
        let Some((number, hash)) = self.last_block_at(floor)? else {
            return Ok(());
        };
        debug!(
            channel = self.channel_id(),
            index = floor,
            block = number,
            "raft snapshot taken; log compacted"
        );
        self.raw
            .mut_store()
            .compact(floor, snapshot_data(number, &hash), carries_block)
            .map_err(|e| e.to_string())
    }

    /// The number and hash of the last block written by an entry at or before `index`.
    pub(super) fn last_block_at(&self, index: u64) -> Result<Option<(u64, Hash)>, String> {
        let ledger = self.support.ledger();
        let height = ledger.height();
        for n in (height.saturating_sub(MAX_SNAPSHOT_SEARCH)..height).rev() {
            let Some(b) = ledger.block(n).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            if raft_position(&b).map(|(i, _)| i).unwrap_or(0) <= index {
                return Ok(Some((n, block::hash(&b))));
            }
        }
        Ok(None)
    }
}
