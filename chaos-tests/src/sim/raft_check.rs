//! What both raft simulations share: the channel they run, the raft settings, and the
//! safety and final checks of the chains their nodes write.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ordo_consensus::raft::RaftOptions;
use ordo_proto::pb::common::{Block, ChannelConfig, Consenter};
use ordo_testkit::{ChannelBuilder, TestOrg};

/// The simulated channel.
pub(super) const CHANNEL: &str = "sim";
/// One raft tick of simulated time.
pub(super) const TICK: Duration = Duration::from_millis(10);

/// The raft settings of a run: small snapshots, so that compaction, snapshots and
/// catch-ups happen in most runs; election timeouts fixed from the seed.
pub(super) fn options(seed: u64) -> RaftOptions {
    RaftOptions {
        tick_interval: TICK,
        election_tick: 10,
        heartbeat_tick: 2,
        max_inflight_blocks: 3,
        snapshot_interval_bytes: 16 * 1024,
        queue_capacity: 1_000,
        election_seed: Some(seed),
    }
}

/// The channel: `org`, these consenters, blocks of at most 4 envelopes or 50 ms,
/// `committed` acks.
pub(super) fn channel_config(org: &TestOrg, consenters: Vec<Consenter>) -> ChannelConfig {
    ChannelBuilder::new(CHANNEL)
        .org(org)
        .consensus("raft")
        .max_count(4)
        .consenters(consenters)
        .build()
}

/// The safety checks over every block any node writes: one block per height across
/// nodes, only submitted envelopes, no envelope twice in one node's chain.
#[derive(Default)]
pub(super) struct ChainCheck {
    /// The first block seen at each height (hash).
    canonical: BTreeMap<u64, [u8; 32]>,
    /// Every envelope a client submitted.
    pub(super) submitted: BTreeSet<String>,
}

impl ChainCheck {
    /// Checks block `number` that node `name` wrote; `txs` are the tx ids already in
    /// that node's chain.
    pub(super) fn block(
        &mut self,
        name: &str,
        txs: &mut BTreeSet<String>,
        number: u64,
        block: &Block,
    ) -> Result<(), String> {
        let hash = ordo_proto::block::hash(block);
        match self.canonical.get(&number) {
            Some(h) if *h != hash => {
                return Err(format!(
                    "fork at block {number}: {name} wrote another block than a node before it"
                ))
            }
            Some(_) => {}
            None => {
                self.canonical.insert(number, hash);
            }
        }
        if number == 0 {
            return Ok(());
        }
        for tx in block_txs(block) {
            if !self.submitted.contains(&tx) {
                return Err(format!("block {number} holds {tx}, never submitted"));
            }
            if !txs.insert(tx.clone()) {
                return Err(format!(
                    "{name}: tx {tx} ordered twice (again in block {number})"
                ));
            }
        }
        Ok(())
    }
}

/// Every envelope whose waiter was told a block (`acked`: tx id → block) is in that
/// block of the final chain `blocks` (genesis first).
pub(super) fn check_acked(
    blocks: impl Iterator<Item = Block>,
    acked: &BTreeMap<String, u64>,
) -> Result<(), String> {
    let mut where_is: BTreeMap<String, u64> = BTreeMap::new();
    for (number, block) in blocks.enumerate().skip(1) {
        for tx in block_txs(&block) {
            where_is.insert(tx, number as u64);
        }
    }
    for (tx, block) in acked {
        match where_is.get(tx) {
            Some(b) if b == block => {}
            Some(b) => {
                return Err(format!(
                    "tx {tx} was acknowledged in block {block} but is in block {b}"
                ))
            }
            None => {
                return Err(format!(
                    "tx {tx} was acknowledged in block {block} but is not in the chain"
                ))
            }
        }
    }
    Ok(())
}

/// The tx ids of a block's envelopes.
pub(super) use ordo_testkit::blocks::tx_ids as block_txs;
