//! Raft chains of one channel in one process, over real ledgers in temporary directories,
//! connected by a [`LocalNetwork`]: election, forwarding, replication, leader loss and
//! restart. (Multi-process tests over gRPC live with the orderer.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use ordo_ledger::BlockStore;
use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{ChannelConfig, ConfigEnvelope, Consenter, HeaderType, Role};
use ordo_proto::policy::build as policy;
use ordo_testkit::org::consenter_entry;
use ordo_testkit::{blocks, ChannelBuilder, TestOrg};

use super::{LocalNetwork, RaftChain, RaftOptions, RaftSetup};
use crate::chain::{Chain, ChainError, OrderRequest};
use crate::support::ChainSupport;

const CHANNEL: &str = "raft-test";

struct Cluster {
    dir: tempfile::TempDir,
    org: TestOrg,
    client: Identity,
    admin: Identity,
    genesis: ordo_proto::pb::common::Block,
    network: Arc<LocalNetwork>,
    ids: Vec<u64>,
    nodes: HashMap<u64, (Arc<ChainSupport>, Arc<RaftChain>)>,
    /// Orderer identities by raft id (consenter clusters only; others make one per start).
    identities: HashMap<u64, Identity>,
    /// Consenter entries by raft id (consenter clusters only).
    consenters: HashMap<u64, Consenter>,
    options: RaftOptions,
}

fn options() -> RaftOptions {
    RaftOptions {
        tick_interval: Duration::from_millis(20),
        election_tick: 10,
        heartbeat_tick: 2,
        max_inflight_blocks: 3,
        ..RaftOptions::default()
    }
}

impl Cluster {
    /// A raft channel whose config names `size` consenters (raft ids from their names),
    /// with `spare` more orderer identities ready to be added by config updates.
    fn with_consenters(size: usize, spare: usize, max_count: u32) -> Self {
        let mut c = Self::new(0, max_count);
        for i in 1..=size + spare {
            let name = format!("orderer{i}");
            let id = super::raft_id(&name);
            let identity = c.org.member(Role::Orderer, &name);
            let entry = consenter_entry(&identity, &name, &format!("local:{i}"));
            c.consenters.insert(id, entry);
            c.identities.insert(id, identity);
            if i <= size {
                c.ids.push(id);
            }
        }
        let mut config = config::config_from_block(&c.genesis).expect("config");
        let orderer = config.orderer.as_mut().expect("orderer");
        orderer.consensus_type = "raft".into();
        orderer.consenters = c.ids.iter().map(|id| c.consenters[id].clone()).collect();
        c.genesis = config::genesis_block(&config, 1).expect("genesis");
        c
    }

    fn new(size: u64, max_count: u32) -> Self {
        let org = TestOrg::new("A");
        let genesis = ChannelBuilder::new(CHANNEL)
            .org(&org)
            .max_count(max_count)
            .genesis(1);
        let client = org.member(Role::Client, "client");
        let admin = org.member(Role::Admin, "admin");
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            org,
            client,
            admin,
            genesis,
            network: LocalNetwork::new(),
            ids: (1..=size).collect(),
            nodes: HashMap::new(),
            identities: HashMap::new(),
            consenters: HashMap::new(),
            options: options(),
        }
    }

    fn start(&mut self, id: u64) {
        let path = self.dir.path().join(format!("node{id}"));
        let store = BlockStore::open(&path).expect("ledger");
        if store.height() == 0 {
            store.append(&self.genesis).expect("genesis");
        }
        let orderer = self
            .identities
            .get(&id)
            .cloned()
            .unwrap_or_else(|| self.org.member(Role::Orderer, &format!("orderer{id}")));
        let support = Arc::new(ChainSupport::new(store, orderer).expect("support"));
        let chain = RaftChain::start(
            support.clone(),
            RaftSetup {
                id,
                voters: self.ids.clone(),
                names: self
                    .ids
                    .iter()
                    .map(|i| (*i, format!("orderer{i}")))
                    .collect(),
                transport: self.network.transport(id),
                options: self.options,
            },
        )
        .expect("raft chain starts");
        self.network.register(id, &chain);
        self.nodes.insert(id, (support, chain));
    }

    /// Starts every node of the group.
    fn start_all(&mut self) {
        for id in self.ids.clone() {
            self.start(id);
        }
    }

    /// Stops every node of the group.
    async fn stop_all(&mut self) {
        for id in self.ids.clone() {
            self.stop(id).await;
        }
    }

    async fn stop(&mut self, id: u64) {
        if let Some((_, chain)) = self.nodes.remove(&id) {
            chain.halt().await;
        }
    }

    /// Waits until every running node knows the same leader, and returns it.
    async fn leader(&self) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let leaders: Vec<u64> = self.nodes.values().map(|(_, c)| c.leader()).collect();
            if let Some(first) = leaders.first() {
                if *first != 0 && leaders.iter().all(|l| l == first) {
                    // The leader they agree on may be a node that just stopped.
                    if let Some((_, chain)) = self.nodes.get(first) {
                        if chain.wait_ready().await.is_ok() {
                            return *first;
                        }
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn request(&self, tag: u64) -> OrderRequest {
        let (env, tx_id) = envelope::create_signed(
            &self.client,
            CHANNEL,
            HeaderType::Message,
            Bytes::from(tag.to_be_bytes().to_vec()),
            ordo_proto::now_ms(),
        );
        OrderRequest {
            envelope: env.encode_to_vec().into(),
            tx_id,
            config_seq: 0,
        }
    }

    /// A CONFIG envelope putting `config` in force (as the orderer makes one from an
    /// admin-signed update; the chain does not check the update's signatures).
    fn config_request(&self, config: &ChannelConfig) -> OrderRequest {
        let data = ConfigEnvelope {
            config: config.encode_to_vec().into(),
            last_update: Bytes::new(),
        };
        let (env, tx_id) = envelope::create_signed(
            &self.admin,
            CHANNEL,
            HeaderType::Config,
            data.encode_to_vec().into(),
            ordo_proto::now_ms(),
        );
        OrderRequest {
            envelope: env.encode_to_vec().into(),
            tx_id,
            config_seq: config.sequence - 1,
        }
    }

    /// The config in force on node `id`.
    fn config(&self, id: u64) -> ChannelConfig {
        self.nodes[&id].0.state().config.clone()
    }

    /// Proposes the config with `consenters` (by raft id) through the leader and waits
    /// until every running node has applied it.
    async fn set_consenters(&self, consenters: &[u64]) {
        let leader = self.leader().await;
        let mut cfg = self.config(leader);
        cfg.sequence += 1;
        cfg.orderer.as_mut().expect("orderer").consenters = consenters
            .iter()
            .map(|id| self.consenters[id].clone())
            .collect();
        let req = self.config_request(&cfg);
        self.nodes[&leader]
            .1
            .configure(req)
            .await
            .expect("config accepted");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !self
            .nodes
            .values()
            .all(|(s, c)| s.sequence() == cfg.sequence || c.evicted())
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "config never applied"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts node `id` as a joiner the way the orderer's join does it: its ledger starts
    /// right after `from`'s latest config block, holding nothing below it, and its raft log
    /// starts after the entry that carried that block.
    fn join(&mut self, id: u64, from: u64) {
        let source = self.nodes[&from].0.clone();
        let last_config = source.state().last_config_block;
        let path = self.dir.path().join(format!("node{id}"));
        let store = BlockStore::open_with(&path, ordo_ledger::TxIndex::Off).expect("ledger");
        let join_block = source
            .ledger()
            .block(last_config)
            .expect("read")
            .expect("block");
        store
            .start_after_config_block(&join_block)
            .expect("ledger based on the join block");
        super::prepare_join(store.consensus_log(), &join_block).expect("prepare join");
        drop(store);
        self.ids.push(id);
        self.start(id);
    }

    /// Orders through `via`, retrying while a leader change is in progress.
    async fn order(&self, via: u64, req: OrderRequest) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (_, chain) = &self.nodes[&via];
            match chain.order(req.clone()).await {
                Ok(()) => return,
                Err(ChainError::NotReady { .. } | ChainError::NotLeader { .. }) => {
                    assert!(tokio::time::Instant::now() < deadline, "never ordered");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("order failed: {e}"),
            }
        }
    }

    /// Orders the requests tagged `tags` through `via`, one after the other, and records
    /// their tx ids in `expected`.
    async fn order_all(&self, via: u64, tags: std::ops::Range<u64>, expected: &mut Vec<String>) {
        for tag in tags {
            let r = self.request(tag);
            expected.push(r.tx_id.clone());
            self.order(via, r).await;
        }
    }

    /// Waits until every running node holds `tx_ids` (each exactly once, in this order
    /// relative to each other) and all ledgers are identical block by block (headers).
    async fn converged(&self, tx_ids: &[String]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let chains: Vec<Vec<ordo_proto::pb::common::Block>> =
                self.nodes.values().map(|(s, _)| blocks(s)).collect();
            // Nodes that joined after a config block hold the chain from there on: their
            // blocks are compared by number with a node that holds it all.
            let whole: Vec<&Vec<_>> = chains
                .iter()
                .filter(|c| c.first().is_some_and(|b| block::number(b) == 0))
                .collect();
            let ids: Vec<Vec<String>> = whole.iter().map(|c| tx_ids_of(c)).collect();
            let heights: Vec<u64> = chains
                .iter()
                .map(|c| c.last().map_or(0, |b| block::number(b) + 1))
                .collect();
            let done = ids.iter().all(|i| contains_in_order(i, tx_ids))
                && heights.iter().all(|h| *h == heights[0]);
            if done {
                let reference = whole.first().expect("a node holding the whole chain");
                for c in &chains {
                    for b in c {
                        let n = usize::try_from(block::number(b)).expect("small");
                        assert_eq!(
                            block::hash(b),
                            block::hash(&reference[n]),
                            "ledgers diverge"
                        );
                    }
                }
                for i in &ids {
                    let mut seen = std::collections::HashSet::new();
                    assert!(i.iter().all(|t| seen.insert(t)), "duplicate tx ids");
                }
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no convergence: heights {heights:?}, envelopes per block {:?}",
                chains
                    .iter()
                    .map(|c| c
                        .iter()
                        .map(|b| b.data.as_ref().map_or(0, |d| d.data.len()))
                        .collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The blocks `support`'s ledger holds (from its first block on), checked to link.
fn blocks(support: &ChainSupport) -> Vec<ordo_proto::pb::common::Block> {
    let ledger = support.ledger();
    let (first, mut prev) = ledger.chain_start().expect("chain start");
    (first..ledger.height())
        .map(|n| {
            let b = ledger.block(n).expect("read").expect("present");
            block::check_structure(&b, Some((n, &prev))).expect("hash chain");
            prev = block::hash(&b);
            b
        })
        .collect()
}

fn tx_ids_of(chain: &[ordo_proto::pb::common::Block]) -> Vec<String> {
    chain[1..].iter().flat_map(blocks::tx_ids).collect()
}

fn contains_in_order(all: &[String], wanted: &[String]) -> bool {
    let mut it = all.iter();
    wanted.iter().all(|w| it.any(|a| a == w))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_orders_and_resumes_after_restart() {
    let mut c = Cluster::new(1, 4);
    c.start(1);
    c.leader().await;
    let mut expected = Vec::new();
    c.order_all(1, 0..10, &mut expected).await;
    c.stop(1).await;
    c.start(1);
    c.leader().await;
    c.order_all(1, 10..20, &mut expected).await;
    c.converged(&expected).await;
    let (support, _) = &c.nodes[&1];
    let metadata = support
        .ledger()
        .block(support.height() - 1)
        .expect("read")
        .expect("block")
        .metadata
        .expect("metadata");
    assert_eq!(
        metadata.consenter_metadata.len(),
        16,
        "raft index and term recorded"
    );
    c.stop(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_through_followers_and_survive_the_leader() {
    let mut c = Cluster::new(3, 5);
    c.start_all();
    let leader = c.leader().await;
    let follower = c
        .ids
        .iter()
        .copied()
        .find(|i| *i != leader)
        .expect("follower");
    let mut expected = Vec::new();
    for i in 0..30 {
        let r = c.request(i);
        expected.push(r.tx_id.clone());
        // Alternate: through a follower (forwarded) and through the leader.
        c.order(if i % 2 == 0 { follower } else { leader }, r).await;
    }
    c.converged(&expected).await;

    // The leader stops; the other two elect a new one and keep ordering.
    c.stop(leader).await;
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    c.order_all(new_leader, 30..50, &mut expected).await;
    c.converged(&expected).await;

    // The old leader comes back and catches up from the log.
    c.start(leader);
    c.converged(&expected).await;
    // Every node stored each block once: the ledger refers to the raft entry that
    // carried it (genesis, written before raft, is the only inline block).
    for (id, (support, _)) in &c.nodes {
        let ledger = support.ledger();
        assert_eq!(ledger.logged_position(0).expect("read"), None);
        for n in 1..ledger.height() {
            let at = ledger.logged_position(n).expect("read");
            let b = ledger.block(n).expect("read").expect("block");
            let (index, _) = super::raft_position(&b).expect("raft position");
            assert_eq!(
                at.map(|p| p.index),
                Some(index),
                "node {id:x} block {n} is stored by reference to its entry"
            );
        }
    }
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_minority_cannot_order_and_rejoins() {
    let mut c = Cluster::new(3, 5);
    c.start_all();
    let leader = c.leader().await;
    c.network.isolate(leader, true);
    // The isolated leader steps down (check quorum) and the other two go on.
    let rest: Vec<u64> = c.ids.iter().copied().filter(|i| *i != leader).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let new_leader = loop {
        let l = c.nodes[&rest[0]].1.leader();
        if l != 0 && l != leader && c.nodes[&rest[1]].1.leader() == l {
            break l;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut expected = Vec::new();
    c.order_all(new_leader, 0..10, &mut expected).await;
    // The cut-off node steps down (check quorum) and then cannot order anything.
    while c.nodes[&leader].1.status().role == "leader" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "isolated leader never stepped down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = c.request(99);
    assert!(c.nodes[&leader].1.order(r).await.is_err());
    c.network.isolate(leader, false);
    c.converged(&expected).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_snapshot_catches_up_by_pulling_blocks() {
    let mut c = Cluster::new(3, 4);
    // Tiny snapshots, so that a few blocks compact the log.
    c.options.snapshot_interval_bytes = 4 << 10;
    c.start_all();
    let leader = c.leader().await;
    let behind = c.ids.iter().copied().find(|i| *i != leader).expect("node");
    c.stop(behind).await;
    let mut expected = Vec::new();
    c.order_all(leader, 0..120, &mut expected).await;
    c.converged(&expected).await;
    // The leader keeps entries for followers it heard from lately; once the stopped one
    // counts as inactive (an election timeout), the log is compacted past it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let snap = loop {
        let snap = c.nodes[&leader].1.metrics().snapshot_index;
        if snap > 1 {
            break snap;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader never compacted its log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The stopped node's log ends before the leader's first entry: only a snapshot and
    // block pulls bring it back.
    c.start(behind);
    c.converged(&expected).await;
    assert!(
        c.nodes[&behind].1.metrics().snapshot_index >= snap,
        "the node installed the leader's snapshot"
    );
    // And it keeps replicating afterwards.
    c.order_all(behind, 120..130, &mut expected).await;
    c.converged(&expected).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consenters_are_added_and_removed_by_config_updates() {
    let mut c = Cluster::with_consenters(3, 1, 5);
    c.start_all();
    let mut expected = Vec::new();
    let leader = c.leader().await;
    c.order_all(leader, 0..20, &mut expected).await;
    // Two consenters at once is refused before anything is ordered.
    let all: Vec<u64> = c.consenters.keys().copied().collect();
    let fourth = *all.iter().find(|id| !c.ids.contains(id)).expect("spare");
    let mut cfg = c.config(leader);
    cfg.sequence += 1;
    cfg.orderer.as_mut().expect("orderer").consenters = vec![c.consenters[&leader].clone()];
    let refused = c.nodes[&leader].1.configure(c.config_request(&cfg)).await;
    assert!(
        matches!(refused, Err(ChainError::Revalidation(ref m)) if m.contains("one consenter")),
        "{refused:?}"
    );

    // Grow 3 -> 4; the new node joins from the config block that added it.
    let mut grown = c.ids.clone();
    grown.push(fourth);
    c.set_consenters(&grown).await;
    c.join(fourth, leader);
    for i in 20..40 {
        let r = c.request(i);
        expected.push(r.tx_id.clone());
        c.order(if i % 2 == 0 { fourth } else { leader }, r).await;
    }
    c.converged(&expected).await;

    // Remove the leader itself: it stops ordering, the other three go on.
    let leader = c.leader().await;
    let rest: Vec<u64> = grown.iter().copied().filter(|i| *i != leader).collect();
    c.set_consenters(&rest).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !c.nodes[&leader].1.evicted() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "removed node still ordering"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = c.nodes[&leader].1.order(c.request(999)).await;
    assert!(
        matches!(refused, Err(ChainError::NotReady { ref reason }) if reason.contains("removed")),
        "{refused:?}"
    );
    c.stop(leader).await;
    c.ids.retain(|i| *i != leader);
    for i in 40..60 {
        let r = c.request(i);
        expected.push(r.tx_id.clone());
        c.order(rest[i as usize % rest.len()], r).await;
    }
    c.converged(&expected).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_learns_that_the_leader_refused_its_forwarded_envelope() {
    let mut c = Cluster::new(3, 5);
    c.start_all();
    let leader = c.leader().await;
    let follower = c
        .ids
        .iter()
        .copied()
        .find(|i| *i != leader)
        .expect("follower");
    // New config: nobody may write any more (the client's envelope, validated against the
    // old one, must be refused on re-validation by the leader).
    let mut cfg = c.config(leader);
    cfg.sequence += 1;
    cfg.writers = Some(policy::any_member(&[], &[Role::Admin]));
    c.nodes[&leader]
        .1
        .configure(c.config_request(&cfg))
        .await
        .expect("config accepted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while c.nodes[&follower].0.sequence() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "config not replicated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stale = c.request(1);
    let (support, chain) = &c.nodes[&follower];
    let waiter = support
        .register_commit_waiter(&stale.tx_id)
        .expect("registered");
    chain.order(stale).await.expect("taken");
    let outcome = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the follower's waiter is told")
        .expect("sent");
    assert!(outcome.is_err(), "refused on re-validation: {outcome:?}");
    c.stop_all().await;
}

#[test]
fn seeded_election_jitter_is_reproducible_and_spread() {
    let a: Vec<usize> = (1..=5)
        .map(|id| super::engine::seeded_jitter(7, id, 10))
        .collect();
    let b: Vec<usize> = (1..=5)
        .map(|id| super::engine::seeded_jitter(7, id, 10))
        .collect();
    assert_eq!(a, b, "same seed, same timeouts");
    assert!(a.iter().all(|j| *j < 10));
    let distinct: std::collections::HashSet<_> = a.iter().collect();
    assert!(
        distinct.len() > 1,
        "nodes do not all time out together: {a:?}"
    );
    let other: Vec<usize> = (1..=5)
        .map(|id| super::engine::seeded_jitter(8, id, 10))
        .collect();
    assert_ne!(a, other, "another seed, other timeouts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_group_elects_a_leader_and_orders() {
    let mut c = Cluster::new(3, 5);
    c.options.election_seed = Some(42);
    c.start_all();
    let leader = c.leader().await;
    let mut expected = Vec::new();
    c.order_all(leader, 0..10, &mut expected).await;
    c.converged(&expected).await;
    c.stop_all().await;
}

/// Opens the stopped node `id`'s ledger and raft state.
fn open_stopped(
    c: &Cluster,
    id: u64,
) -> (BlockStore, super::disk::DiskLog, super::storage::LogView) {
    let store = BlockStore::open(&c.dir.path().join(format!("node{id}"))).expect("ledger");
    let (disk, view) = super::disk::DiskLog::load(store.consensus_log(), &[]).expect("raft state");
    (store, disk, view)
}

/// The raft index of the entry that wrote `store`'s last block.
fn last_entry(store: &BlockStore) -> u64 {
    let last = store
        .block(store.height() - 1)
        .expect("read")
        .expect("block");
    super::raft_position(&last).expect("raft position").0
}

/// A crash between writing a block and recording the commit index that covers it leaves
/// the ledger ahead of the raft state; raft-rs refuses to start with an applied index
/// above the commit index (it panicked, so the orderer could never start again — the
/// chaos scenario `raft_leader_kill_loop`, seed 11). The start raises the commit index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_commit_index_lags_its_ledger_restarts() {
    let mut c = Cluster::new(3, 4);
    c.start_all();
    let leader = c.leader().await;
    let follower = c.ids.iter().copied().find(|i| *i != leader).expect("node");
    let mut expected = Vec::new();
    c.order_all(leader, 0..20, &mut expected).await;
    c.converged(&expected).await;
    c.stop(follower).await;

    // The crash window, as the stopped node's disk would show it.
    let lowered = {
        let (store, disk, mut view) = open_stopped(&c, follower);
        let applied = last_entry(&store);
        let lower = view.commit(applied - 2);
        disk.write(&lower).expect("commit lowered");
        view.apply(&lower);
        // What the start finds and repairs.
        let tip = store.block(store.height() - 1).expect("read").expect("tip");
        let support = ChainSupport::new(store.clone(), c.org.member(Role::Orderer, "probe"))
            .expect("support");
        let repair = super::recovery::reconcile(
            CHANNEL,
            &view,
            Some((store.height() - 1, &tip)),
            &support.state().config,
        );
        assert_eq!(repair.applied, applied);
        assert_eq!(
            repair.found,
            super::recovery::Reconciled::CommitRaised {
                from: applied - 2,
                to: applied
            }
        );
        let write = repair.write.expect("a repair to write");
        view.apply(&write);
        assert_eq!(
            view.hard_state().commit,
            applied,
            "the repair raises the commit"
        );
        applied - 2
    };
    assert!(lowered > 0);

    // The real start path: before the repair, raft-rs panicked here.
    c.start(follower);
    c.order_all(follower, 20..30, &mut expected).await;
    c.converged(&expected).await;
    c.stop_all().await;
}

/// A crash while installing a snapshot — the missing blocks pulled into the ledger, the
/// snapshot not yet recorded in the raft state — leaves blocks in the ledger whose entries
/// the log never had. The start restarts the log at the last block's entry, with the
/// membership of the configuration in force, and the node replicates from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_ledger_holds_blocks_its_log_lacks_restarts() {
    let mut c = Cluster::with_consenters(3, 0, 4);
    c.start_all();
    let leader = c.leader().await;
    let behind = c.ids.iter().copied().find(|i| *i != leader).expect("node");
    let mut expected = Vec::new();
    c.order_all(leader, 0..5, &mut expected).await;
    c.converged(&expected).await;
    c.stop(behind).await;
    c.order_all(leader, 5..25, &mut expected).await;
    c.converged(&expected).await;

    // The blocks the stopped node would have pulled, written to its ledger; its raft log
    // still ends where it stopped.
    let source = blocks(&c.nodes[&leader].0);
    let applied = {
        let (store, _, storage) = open_stopped(&c, behind);
        let log_end = storage.last_index_now();
        for b in &source[store.height() as usize..] {
            store.append(b).expect("pulled block");
        }
        let applied = last_entry(&store);
        assert!(applied > log_end, "the ledger is ahead of the log");
        applied
    };

    c.start(behind);
    c.order_all(behind, 25..35, &mut expected).await;
    c.converged(&expected).await;
    c.stop_all().await;

    // The start recorded a snapshot at the last block's entry, with the configured voters.
    let (_, _, storage) = open_stopped(&c, behind);
    assert_eq!(
        raft::Storage::first_index(&storage).expect("first index"),
        applied + 1
    );
    let mut voters = storage.conf_state().voters.clone();
    voters.sort_unstable();
    let mut ids = c.ids.clone();
    ids.sort_unstable();
    assert_eq!(voters, ids, "membership from the configuration in force");
}
