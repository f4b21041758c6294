//! Applying committed entries: blocks (by reference to their entry), membership
//! changes, a node's own removal, and log compaction.
//!
//! Rules:
//! - Entries are applied once, in log order; an entry at or below `applied` is skipped.
//! - A block below the ledger's height is already there (written before a restart, or
//!   pulled); one above it means the log and the ledger disagree, and the node stops.
//! - A block this node proposed is written as built only if its hash is the one
//!   proposed; otherwise another leader's block took the height, and the waiters of
//!   the envelopes ours carried that the written one does not are told.
//! - A membership change's voter set is made durable before its config block is
//!   written.
//! - A block written from a normal entry is stored by reference to the entry
//!   ([`ordo_ledger::LogPosition`]); one from a conf change's context, or from an entry
//!   written before that format (it holds metadata), is stored inline.
//! - Compaction snapshots at the last block written at or below the floor: the applied
//!   index, lowered to what live followers still need, never below the last membership
//!   change; entries that carry blocks stay on disk.

use std::collections::HashSet;
use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, Entry, EntryType};
use raft::{StateRole, Storage};
use tracing::{debug, info, warn};

use ordo_ledger::LogPosition;
use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::envelope::tx_id_of;
use ordo_proto::pb::common::Block;

use super::{BlockMark, BlockWrite, Command, Engine, Origin};
use crate::raft::entry::{carries_block, logged_position, KIND_CONFIG_BLOCK};
use crate::raft::storage::LogWrite;
use crate::raft::{consenter_metadata, snapshot_data};
use crate::support::ConfigState;

impl Engine {
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
                self.reset_created();
                info!(
                    channel = %self.channel,
                    term = self.raw.raft.term,
                    height = self.tip.height,
                    "raft leader caught up; accepting envelopes"
                );
            }
        }
        Ok(())
    }

    /// A membership change: the new voter set is made durable first (applying it again
    /// after a crash changes nothing), then its config block is written.
    fn apply_conf_change(&mut self, e: &Entry) -> Result<(), String> {
        let cc = ConfChange::parse_from_bytes(&e.data)
            .map_err(|err| format!("raft entry {} holds no conf change: {err}", e.index))?;
        let cs = self
            .raw
            .apply_conf_change(&cc)
            .map_err(|err| format!("applying the conf change of entry {}: {err}", e.index))?;
        self.persist(LogWrite::ConfState(cs.clone()));
        self.last_conf_index = e.index;
        info!(
            channel = %self.channel,
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
    fn apply_block(
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
        let height = self.tip.height;
        if number < height {
            return Ok(());
        }
        if number > height {
            return Err(format!(
                "raft entry {index} holds block {number} but the ledger height is {height}"
            ));
        }
        let hash = block::hash(&block);
        let is_config = *kind == KIND_CONFIG_BLOCK;
        // An entry written before blocks went into the log without metadata holds one:
        // its bytes are not the unsigned block, so it is stored inline.
        let logged_at = logged_at.filter(|_| block.metadata.is_none());
        let mine = self.inflight.remove(&number);
        let origin = match &mine {
            Some(m) if m.hash == hash => {
                if is_config {
                    Origin::ProposedConfig
                } else {
                    Origin::Proposed
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
                        .filter_map(tx_id_of)
                        .collect();
                    let lost: Vec<String> = lost
                        .tx_ids
                        .iter()
                        .filter(|id| !carried.contains(*id))
                        .cloned()
                        .collect();
                    for id in lost {
                        self.reject(
                            &id,
                            "the raft leader changed before the envelope was ordered; resubmit",
                        );
                    }
                }
                Origin::Replicated
            }
        };
        let new_state = match origin {
            Origin::ProposedConfig => {
                let config = config::config_from_block(&block)
                    .map_err(|err| format!("config block {number}: {err}"))?;
                Some(config)
            }
            Origin::Replicated => config::config_from_block(&block).ok(),
            Origin::Proposed => None,
        };
        let new_state = match new_state {
            Some(config) => Some(Arc::new(
                ConfigState::new(config, number)
                    .map_err(|err| format!("config block {number}: {err}"))?,
            )),
            None => None,
        };
        let tx_ids = match origin {
            Origin::Proposed | Origin::ProposedConfig => mine.map(|m| m.tx_ids).unwrap_or_default(),
            Origin::Replicated => Vec::new(),
        };
        self.out.push(Command::WriteBlock(BlockWrite {
            block,
            metadata: consenter_metadata(index, term),
            logged_at,
            origin,
            tx_ids,
        }));
        self.tip.height = number + 1;
        self.tip.last_hash = hash;
        self.marks.push_back(BlockMark {
            index,
            number,
            hash,
        });
        if origin == Origin::Replicated {
            // Whatever this node had built beyond this block is void now.
            self.reset_created();
        }
        if let Some(state) = new_state {
            self.tip.state = state;
            self.on_config_applied();
            info!(
                channel = %self.channel,
                block = number,
                sequence = self.tip.state.sequence(),
                "configuration updated"
            );
        }
        Ok(())
    }

    /// A config block came in force: batch limits and the consenters follow it.
    pub(super) fn on_config_applied(&mut self) {
        self.cutter.set_limits(self.tip.state.limits);
        let consenters = self.consenters();
        if !consenters.is_empty() {
            self.out.push(Command::Reconfigure(consenters));
        }
    }

    /// This node applied its own removal: it stops ordering for the channel. A leader
    /// first tells the others the commit index (so they apply the removal too) and hands
    /// leadership to the most up-to-date remaining voter.
    pub(super) fn leave(&mut self) {
        warn!(
            channel = %self.channel,
            height = self.tip.height,
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
            self.on_ready();
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
        let Some(at) = self.marks.iter().rposition(|m| m.index <= floor) else {
            return Ok(());
        };
        let mark = self.marks[at];
        let planned = store
            .compaction(floor, snapshot_data(mark.number, &mark.hash), carries_block)
            .map_err(|e| e.to_string())?;
        if let Some(w) = planned {
            debug!(
                channel = %self.channel,
                index = floor,
                block = mark.number,
                "raft snapshot taken; log compacted"
            );
            self.marks.drain(..at);
            self.persist(w);
        }
        Ok(())
    }
}
