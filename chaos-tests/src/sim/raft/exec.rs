//! The simulator as the engines' driver: each command executed in order against the
//! node's disk and ledger, a catch-up from the others' ledgers, and the committed-mode
//! waiters answered as the orderer's would be.

use std::collections::VecDeque;

use ordo_consensus::raft::engine::{CaughtUp, ChainTip, Command, Input};
use ordo_proto::block;
use ordo_proto::pb::common::{Block, BlockMetadata};

use super::super::raft_check::block_txs;
use super::super::schedule::SimCluster;
use super::{Sim, SimFailure};

impl Sim {
    /// Executes node `i`'s commands in order, as the orderer's driver does.
    pub(super) fn execute(&mut self, i: usize, commands: Vec<Command>) -> Result<(), SimFailure> {
        let mut queue: VecDeque<Command> = commands.into();
        while let Some(command) = queue.pop_front() {
            if let Some((n, left)) = self.torn_at {
                if n == i {
                    if left == 0 {
                        self.crash(i);
                        return Ok(());
                    }
                    self.torn_at = Some((n, left - 1));
                }
            }
            let id = self.nodes[i].id;
            match command {
                Command::Send { to, message } => self.in_flight.push((id, to, message)),
                Command::Persist(w) => self.nodes[i].disk.log.apply(&w),
                Command::WriteBlock(w) => {
                    let mut b = w.block;
                    b.metadata = Some(BlockMetadata {
                        consenter_metadata: w.metadata,
                        ..Default::default()
                    });
                    self.append(i, b);
                }
                Command::CatchUp {
                    to,
                    hash,
                    sources,
                    tx_ids_at,
                } => {
                    let report = self.catch_up(i, to, hash, &sources, &tx_ids_at)?;
                    let Some(engine) = self.nodes[i].engine.as_mut() else {
                        return Ok(());
                    };
                    let more = engine.step(Input::CaughtUp(report));
                    for c in more.into_iter().rev() {
                        queue.push_front(c);
                    }
                }
                Command::Answer { waiter, result } => {
                    if let Some(tx) = self.answers.remove(&waiter) {
                        if result.is_err() && self.waiting.get(&tx) == Some(&i) {
                            // A refused envelope: Broadcast cancels its waiter.
                            self.waiting.remove(&tx);
                        }
                    }
                }
                Command::Reject { tx_id, .. } => {
                    if self.waiting.get(&tx_id) == Some(&i) {
                        self.waiting.remove(&tx_id);
                    }
                }
                Command::ArmTimer(_) | Command::Reconfigure(_) => {}
                Command::Stop(why) => {
                    return Err(self.fail(format!("{} stopped: {why:?}", self.nodes[i].name)))
                }
            }
        }
        Ok(())
    }

    /// Appends a block to node `i`'s ledger; its waiters there learn the block.
    fn append(&mut self, i: usize, b: Block) {
        let number = self.nodes[i].disk.ledger.len() as u64;
        for tx in block_txs(&b) {
            if self.waiting.get(&tx) == Some(&i) {
                self.waiting.remove(&tx);
                self.stats.acked += 1;
                self.acked.insert(tx, number);
            }
        }
        self.nodes[i].disk.ledger.push(b);
    }

    /// Executes a catch-up: the blocks up to `to` from the first source whose ledger
    /// holds `to` with `hash` (a node that is down serves from its disk, as a real
    /// puller retries until it is back), each checked to extend the chain.
    fn catch_up(
        &mut self,
        i: usize,
        to: u64,
        hash: [u8; 32],
        sources: &[u64],
        tx_ids_at: &[u64],
    ) -> Result<CaughtUp, SimFailure> {
        let height = self.nodes[i].disk.ledger.len() as u64;
        if height > to {
            let ours = block::hash(&self.nodes[i].disk.ledger[to as usize]);
            if ours != hash {
                return Err(self.fail(format!("forked at block {to} (snapshot)")));
            }
        } else {
            let source = sources
                .iter()
                .filter_map(|id| self.index_of(*id))
                .find(|s| {
                    self.nodes[*s]
                        .disk
                        .ledger
                        .get(to as usize)
                        .is_some_and(|b| block::hash(b) == hash)
                })
                .ok_or_else(|| self.fail(format!("no consenter holds block {to}")))?;
            let pulled: Vec<Block> =
                self.nodes[source].disk.ledger[height as usize..=to as usize].to_vec();
            for b in pulled {
                let prev = block::hash(self.nodes[i].disk.ledger.last().expect("genesis"));
                let links = b
                    .header
                    .as_ref()
                    .is_some_and(|h| h.previous_hash.as_ref() == prev.as_slice());
                if !links {
                    return Err(self.fail(format!(
                        "pulled block {} does not extend the chain",
                        block::number(&b)
                    )));
                }
                self.append(i, b);
            }
        }
        let ledger = &self.nodes[i].disk.ledger;
        let carried = tx_ids_at
            .iter()
            .filter(|n| (**n as usize) < ledger.len())
            .map(|n| (*n, block_txs(&ledger[*n as usize])))
            .collect();
        Ok(CaughtUp {
            tip: ChainTip {
                height: ledger.len() as u64,
                last_hash: block::hash(ledger.last().expect("genesis")),
                state: self.state.clone(),
            },
            carried,
        })
    }
}
