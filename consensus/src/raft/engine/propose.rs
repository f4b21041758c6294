//! A leader taking envelopes: re-validation, cutting, membership checks, proposing
//! blocks to raft, and answering whoever waits for the envelope.
//!
//! Rules:
//! - Only an accepting leader (one that applied its whole log) takes an envelope; anyone
//!   else answers "not the leader" (with the leader it knows) or "not ready".
//! - A config update validated at another sequence than the channel's is refused to its
//!   submitter; one that changes the consenters must change at most one, keep quorum
//!   among the consenters recently heard from, and go as a raft conf change whose
//!   context is the config block (the block and the membership commit together).
//! - Pending envelopes are cut into a block of their own before a config block, so that
//!   no envelope is ordered under limits it was not cut by.
//! - A normal envelope is taken (the chain answers for it) even when re-validation or
//!   the cutter refuses it: the refusal reaches a forwarding follower in its answer, and a
//!   local envelope's committed-mode waiter through a [`Command::Reject`].
//! - A block whose proposal raft drops is taken back (the next block reuses its number)
//!   and its envelopes' waiters are told.

use std::collections::{BTreeSet, HashSet};

use raft::eraftpb::{ConfChange, ConfChangeType};
use raft::StateRole;
use tracing::{debug, info, warn};

use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::pb::common::Block;

use super::{Command, Engine, Inflight, Item, Proposal, WaiterId};
use crate::chain::ChainError;
use crate::raft::entry::entry_data;
use crate::raft::membership::{self, MembershipChange};

impl Engine {
    /// Takes one envelope as leader: re-validates it if the config moved, cuts, proposes.
    pub(super) fn propose(&mut self, p: Proposal) {
        if self.role != StateRole::Leader || self.catch_up_to.is_some() {
            let e = self.not_leader_error();
            self.answer(p.waiter, &p.request.tx_id, Err(e));
            return;
        }
        let req = p.request;
        let sequence = self.tip.state.sequence();
        if p.is_config {
            if req.config_seq != sequence {
                let reason = format!(
                    "config update validated at sequence {} but the channel is at {sequence}",
                    req.config_seq
                );
                self.answer(p.waiter, &req.tx_id, Err(ChainError::Revalidation(reason)));
                return;
            }
            let change = match self.membership_change(&req.envelope) {
                Ok(c) => c,
                Err(e) => {
                    self.answer(p.waiter, &req.tx_id, Err(e));
                    return;
                }
            };
            let pending = self.cutter.cut();
            if !pending.is_empty() {
                self.propose_block(pending, false);
            }
            self.batch_deadline = None;
            let tx_id = req.tx_id.clone();
            self.propose_config_block(
                Item {
                    envelope: req.envelope,
                    tx_id: req.tx_id,
                },
                change,
            );
            let term = self.raw.raft.term;
            self.answer(p.waiter, &tx_id, Ok(term));
            return;
        }
        if req.config_seq < sequence {
            if let Err(e) =
                crate::filters::revalidate(&self.tip.state, &req.envelope, self.unix_secs)
            {
                debug!(tx_id = %req.tx_id, error = %e, "envelope refused on re-validation");
                self.refuse(p.waiter, p.forwarded, &req.tx_id, e.to_string());
                return;
            }
        }
        let tx_id = req.tx_id.clone();
        let item = Item {
            envelope: req.envelope,
            tx_id: req.tx_id,
        };
        match self.cutter.ordered(item, false) {
            Ok(o) => {
                for b in o.batches {
                    self.propose_block(b, false);
                }
                self.batch_deadline = if o.pending {
                    self.batch_deadline
                        .or(Some(self.now + self.tip.state.batch_timeout))
                } else {
                    None
                };
                let term = self.raw.raft.term;
                self.answer(p.waiter, &tx_id, Ok(term));
            }
            Err(e) => self.refuse(p.waiter, p.forwarded, &tx_id, e.to_string()),
        }
    }

    /// A normal envelope taken and then refused: a forwarding follower hears it in the
    /// answer to its Submit (its client's waiter is there); a local one through the
    /// waiter here.
    fn refuse(&mut self, waiter: Option<WaiterId>, forwarded: bool, tx_id: &str, reason: String) {
        if forwarded {
            self.answer(waiter, tx_id, Err(ChainError::Revalidation(reason)));
        } else {
            self.reject(tx_id, reason);
            let term = self.raw.raft.term;
            self.answer(waiter, tx_id, Ok(term));
        }
    }

    /// Answers a proposal: its sender when it waits (forwarded and config envelopes),
    /// else — a local envelope already acknowledged as taken — a refusal reaches its
    /// committed-mode waiter.
    pub(super) fn answer(
        &mut self,
        waiter: Option<WaiterId>,
        tx_id: &str,
        result: Result<u64, ChainError>,
    ) {
        match (waiter, result) {
            (Some(waiter), result) => self.out.push(Command::Answer { waiter, result }),
            (None, Err(e)) => self.reject(tx_id, e.to_string()),
            (None, Ok(_)) => {}
        }
    }

    /// The membership change a config envelope asks for, checked against the live
    /// voters (refused when it changes more than one consenter or would lose quorum; a
    /// consenter whose certificates change must not be needed for quorum meanwhile).
    fn membership_change(&self, envelope: &[u8]) -> Result<MembershipChange, ChainError> {
        let proposed_config = config::config_from_envelope(envelope)
            .map_err(|e| ChainError::Revalidation(format!("config envelope: {e}")))?;
        let proposed = membership::voters_of(&proposed_config);
        let current = self.voters();
        if proposed.is_empty() || current.is_empty() {
            return Ok(MembershipChange::Unchanged);
        }
        let change = membership::change_between(&current, &proposed)
            .map_err(|e| ChainError::Revalidation(e.to_string()))?;
        let rekeyed = membership::rekeyed_between(&self.tip.state.config, &proposed_config)
            .map_err(|e| ChainError::Revalidation(e.to_string()))?;
        let active: HashSet<u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, pr)| **id == self.id || pr.recent_active)
            .map(|(id, _)| *id)
            .collect();
        membership::check_quorum(&current, change, &active).map_err(|e| ChainError::NotReady {
            reason: e.to_string(),
        })?;
        if let Some(id) = rekeyed {
            membership::check_rekey_quorum(&current, id, &active).map_err(|e| {
                ChainError::NotReady {
                    reason: e.to_string(),
                }
            })?;
        }
        Ok(change)
    }

    /// The voters in force.
    pub(super) fn voters(&self) -> BTreeSet<u64> {
        self.raw
            .store()
            .conf_state()
            .voters
            .iter()
            .copied()
            .collect()
    }

    /// Proposes a config block; one that changes the consenters goes as the context of a
    /// raft conf change, so the block and the membership change commit together.
    fn propose_config_block(&mut self, item: Item, change: MembershipChange) {
        let (node_id, change_type) = match change {
            MembershipChange::Unchanged => return self.propose_block(vec![item], true),
            MembershipChange::Add(id) => (id, ConfChangeType::AddNode),
            MembershipChange::Remove(id) => (id, ConfChangeType::RemoveNode),
        };
        let tx_ids = vec![item.tx_id.clone()];
        let block = self.create_next_block(vec![item.envelope]);
        let context = entry_data(&block, true);
        let mut cc = ConfChange::default();
        cc.set_change_type(change_type);
        cc.node_id = node_id;
        info!(
            channel = %self.channel,
            node = format_args!("{node_id:x}"),
            change = ?change_type,
            block = block::number(&block),
            "proposing a membership change"
        );
        let proposed = self.raw.propose_conf_change(context, cc);
        self.after_proposal(block, tx_ids, true, proposed);
    }

    pub(super) fn propose_block(&mut self, items: Vec<Item>, is_config: bool) {
        let tx_ids: Vec<String> = items.iter().map(|i| i.tx_id.clone()).collect();
        let block = self.create_next_block(items.into_iter().map(|i| i.envelope).collect());
        let data = entry_data(&block, is_config);
        let proposed = self.raw.propose(Vec::new(), data);
        self.after_proposal(block, tx_ids, is_config, proposed);
    }

    fn after_proposal(
        &mut self,
        block: Block,
        tx_ids: Vec<String>,
        is_config: bool,
        proposed: raft::Result<()>,
    ) {
        let number = block::number(&block);
        match proposed {
            Ok(()) => {
                self.inflight.insert(
                    number,
                    Inflight {
                        hash: block::hash(&block),
                        tx_ids,
                        is_config,
                        term: self.raw.raft.term,
                    },
                );
            }
            Err(e) => {
                warn!(channel = %self.channel, block = number, error = %e, "block proposal dropped");
                self.uncreate(&block);
                for id in tx_ids {
                    self.reject(&id, format!("raft dropped the proposal: {e}"));
                }
            }
        }
    }

    pub(super) fn not_leader_error(&self) -> ChainError {
        let leader = self.raw.raft.leader_id;
        if leader == 0 || leader == self.id {
            ChainError::NotReady {
                reason: "no raft leader is ready yet".into(),
            }
        } else {
            ChainError::NotLeader {
                hint: Some(format!("raft node {leader:x}")),
            }
        }
    }
}
