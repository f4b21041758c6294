//! Taking envelopes as leader: re-validation, cutting, membership checks, proposing
//! blocks to raft, and answering whoever waits for the envelope.

use std::collections::{BTreeSet, HashSet};

use raft::eraftpb::{ConfChange, ConfChangeType};
use raft::StateRole;
use tracing::{debug, info, warn};

use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::pb::common::Block;

use super::entry::entry_data;
use super::{Driver, Inflight, Item};
use crate::chain::ChainError;
use crate::raft::membership::{self, MembershipChange};
use crate::raft::{Answer, Proposal};

impl Driver {
    /// Takes one envelope as leader: re-validates it if the config moved, cuts, proposes.
    pub(super) fn propose(&mut self, p: Proposal) {
        if self.role != StateRole::Leader || self.catch_up_to.is_some() {
            let e = self.not_leader_error();
            self.answer(p.done, &p.request.tx_id, Err(e));
            return;
        }
        let req = p.request;
        if p.is_config {
            if req.config_seq != self.support.sequence() {
                let reason = format!(
                    "config update validated at sequence {} but the channel is at {}",
                    req.config_seq,
                    self.support.sequence()
                );
                self.answer(p.done, &req.tx_id, Err(ChainError::Revalidation(reason)));
                return;
            }
            let change = match self.membership_change(&req.envelope) {
                Ok(c) => c,
                Err(e) => {
                    self.answer(p.done, &req.tx_id, Err(e));
                    return;
                }
            };
            let pending = self.cutter.cut();
            if !pending.is_empty() {
                self.propose_block(pending, false);
            }
            self.batch_deadline = None;
            let item = Item {
                envelope: req.envelope,
                tx_id: req.tx_id,
            };
            let tx_id = item.tx_id.clone();
            self.propose_config_block(item, change);
            self.answer(p.done, &tx_id, Ok(self.raw.raft.term));
            return;
        }
        // As in every backend, the envelope is taken (the chain answers for it) and a
        // refusal on re-validation reaches its committed-mode waiter.
        if req.config_seq < self.support.sequence() {
            if let Err(e) = self.support.revalidate(&req.envelope) {
                debug!(tx_id = %req.tx_id, error = %e, "envelope refused on re-validation");
                self.refuse(p.done, p.forwarded, &req.tx_id, e.to_string());
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
                        .or(Some(self.now() + self.support.state().batch_timeout))
                } else {
                    None
                };
                self.answer(p.done, &tx_id, Ok(self.raw.raft.term));
            }
            Err(e) => self.refuse(p.done, p.forwarded, &tx_id, e.to_string()),
        }
    }

    /// A normal envelope taken and then refused: a forwarding follower hears it in the
    /// answer to its Submit (its client's waiter is there); a local one through the
    /// waiter here.
    pub(super) fn refuse(
        &self,
        done: Option<Answer>,
        forwarded: bool,
        tx_id: &str,
        reason: String,
    ) {
        if forwarded {
            self.answer(done, tx_id, Err(ChainError::Revalidation(reason)));
        } else {
            self.support.notify_rejected(tx_id, reason);
            self.answer(done, tx_id, Ok(self.raw.raft.term));
        }
    }

    /// Answers a proposal: through its channel when its sender waits (forwarded and
    /// config envelopes), else — a local envelope already acknowledged as taken — a
    /// refusal reaches its committed-mode waiter.
    pub(super) fn answer(
        &self,
        done: Option<Answer>,
        tx_id: &str,
        result: Result<u64, ChainError>,
    ) {
        match (done, result) {
            (Some(done), result) => {
                let _ = done.send(result);
            }
            (None, Err(e)) => self.support.notify_rejected(tx_id, e.to_string()),
            (None, Ok(_)) => {}
        }
    }

    /// The membership change a config envelope asks for, checked against the live
    /// voters (refused when it changes more than one consenter or would lose quorum; a
    /// consenter whose certificates change must not be needed for quorum meanwhile).
    pub(super) fn membership_change(
        &self,
        envelope: &[u8],
    ) -> Result<MembershipChange, ChainError> {
        let proposed_config = config::config_from_envelope(envelope)
            .map_err(|e| ChainError::Revalidation(format!("config envelope: {e}")))?;
        let proposed = membership::voters_of(&proposed_config);
        let current = self.voters();
        if proposed.is_empty() || current.is_empty() {
            return Ok(MembershipChange::Unchanged);
        }
        let change = membership::change_between(&current, &proposed)
            .map_err(|e| ChainError::Revalidation(e.to_string()))?;
        let rekeyed = membership::rekeyed_between(&self.support.state().config, &proposed_config)
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
    pub(super) fn propose_config_block(&mut self, item: Item, change: MembershipChange) {
        let (node_id, change_type) = match change {
            MembershipChange::Unchanged => return self.propose_block(vec![item], true),
            MembershipChange::Add(id) => (id, ConfChangeType::AddNode),
            MembershipChange::Remove(id) => (id, ConfChangeType::RemoveNode),
        };
        let tx_ids = vec![item.tx_id.clone()];
        let block = self.support.create_next_block(vec![item.envelope]);
        let context = entry_data(&block, true);
        let mut cc = ConfChange::default();
        cc.set_change_type(change_type);
        cc.node_id = node_id;
        info!(
            channel = self.channel_id(),
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
        let block = self
            .support
            .create_next_block(items.into_iter().map(|i| i.envelope).collect());
        let data = entry_data(&block, is_config);
        let proposed = self.raw.propose(Vec::new(), data);
        self.after_proposal(block, tx_ids, is_config, proposed);
    }

    pub(super) fn after_proposal(
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
                warn!(channel = self.channel_id(), block = number, error = %e, "block proposal dropped");
                self.support.uncreate(&block);
                for id in tx_ids {
                    self.support
                        .notify_rejected(&id, format!("raft dropped the proposal: {e}"));
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
