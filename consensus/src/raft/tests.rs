//! Raft chains of one channel in one process, over real ledgers in temporary directories,
//! connected by a [`LocalNetwork`]: election, forwarding, replication, leader loss and
//! restart. (Multi-process tests over gRPC live with the orderer.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use prost::Message;

use ordo_ledger::BlockStore;
use ordo_proto::block;
use ordo_proto::cert;
use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{
    AckMode, BatchSize, CertificateBody, ChannelConfig, HeaderType, OrdererConfig, Organization,
    Role,
};
use ordo_proto::policy::build as policy;

use super::{LocalNetwork, RaftChain, RaftOptions, RaftSetup};
use crate::chain::{Chain, ChainError, OrderRequest};
use crate::support::ChainSupport;

const CHANNEL: &str = "raft-test";

fn member(ca: &SigningKey, role: Role, name: &str) -> Identity {
    let key = ordo_proto::crypto::generate_signing_key();
    let body = CertificateBody {
        org: "A".into(),
        role: role as i32,
        subject: format!("{name}@A"),
        public_key: key.verifying_key().to_bytes().to_vec().into(),
        not_before: 0,
        not_after: u64::MAX / 2,
        issuer_public_key: Default::default(),
        serial: 1,
    };
    Identity::new(key, cert::issue(ca, body).encode_to_vec().into()).expect("identity")
}

struct Cluster {
    dir: tempfile::TempDir,
    ca: SigningKey,
    client: Identity,
    genesis: ordo_proto::pb::common::Block,
    network: Arc<LocalNetwork>,
    ids: Vec<u64>,
    nodes: HashMap<u64, (Arc<ChainSupport>, Arc<RaftChain>)>,
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
    fn new(size: u64, max_count: u32) -> Self {
        let ca = ordo_proto::crypto::generate_signing_key();
        let config = ChannelConfig {
            channel_id: CHANNEL.into(),
            sequence: 0,
            orgs: vec![Organization {
                name: "A".into(),
                root_public_keys: vec![ca.verifying_key().to_bytes().to_vec().into()],
            }],
            orderer: Some(OrdererConfig {
                consensus_type: "solo".into(),
                batch_size: Some(BatchSize {
                    max_message_count: max_count,
                    absolute_max_bytes: 1 << 20,
                    preferred_max_bytes: 1 << 19,
                }),
                batch_timeout_ms: 50,
                ack_mode: AckMode::Committed as i32,
                ..Default::default()
            }),
            readers: Some(policy::any_member(&[], &[])),
            writers: Some(policy::any_member(&[], &[Role::Client])),
            admins: Some(policy::majority(&[], Role::Admin)),
            block_validation: Some(policy::any_member(&[], &[Role::Orderer])),
            chaincodes: vec![],
        };
        let genesis = config::genesis_block(&config, 1).expect("genesis");
        let client = member(&ca, Role::Client, "client");
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            ca,
            client,
            genesis,
            network: LocalNetwork::new(),
            ids: (1..=size).collect(),
            nodes: HashMap::new(),
        }
    }

    fn start(&mut self, id: u64) {
        let path = self.dir.path().join(format!("node{id}"));
        let store = BlockStore::open(&path).expect("ledger");
        if store.height() == 0 {
            store.append(&self.genesis).expect("genesis");
        }
        let orderer = member(&self.ca, Role::Orderer, &format!("orderer{id}"));
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
                options: options(),
            },
        )
        .expect("raft chain starts");
        self.network.register(id, &chain);
        self.nodes.insert(id, (support, chain));
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

    /// Waits until every running node holds `tx_ids` (each exactly once, in this order
    /// relative to each other) and all ledgers are identical block by block (headers).
    async fn converged(&self, tx_ids: &[String]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let chains: Vec<Vec<ordo_proto::pb::common::Block>> =
                self.nodes.values().map(|(s, _)| blocks(s)).collect();
            let ids: Vec<Vec<String>> = chains.iter().map(|c| tx_ids_of(c)).collect();
            let heights: Vec<usize> = chains.iter().map(Vec::len).collect();
            let done = ids.iter().all(|i| contains_in_order(i, tx_ids))
                && heights.iter().all(|h| *h == heights[0]);
            if done {
                for c in &chains[1..] {
                    for (a, b) in c.iter().zip(&chains[0]) {
                        assert_eq!(block::hash(a), block::hash(b), "ledgers diverge");
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
                "no convergence: heights {heights:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn blocks(support: &ChainSupport) -> Vec<ordo_proto::pb::common::Block> {
    let ledger = support.ledger();
    let mut prev = block::GENESIS_PREVIOUS_HASH;
    (0..ledger.height())
        .map(|n| {
            let b = ledger.block(n).expect("read").expect("present");
            block::check_structure(&b, Some((n, &prev))).expect("hash chain");
            prev = block::hash(&b);
            b
        })
        .collect()
}

fn tx_ids_of(chain: &[ordo_proto::pb::common::Block]) -> Vec<String> {
    chain[1..]
        .iter()
        .flat_map(|b| b.data.iter().flat_map(|d| d.data.iter()))
        .filter_map(|e| super::driver::tx_id_of(e))
        .collect()
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
    for i in 0..10 {
        let r = c.request(i);
        expected.push(r.tx_id.clone());
        c.order(1, r).await;
    }
    c.stop(1).await;
    c.start(1);
    c.leader().await;
    for i in 10..20 {
        let r = c.request(i);
        expected.push(r.tx_id.clone());
        c.order(1, r).await;
    }
    c.converged(&expected).await;
    let (support, _) = &c.nodes[&1];
    let metadata = support
        .ledger()
        .block(support.height() - 1)
        .expect("read")
        .expect("block")
        .metadata
        .expect("metadata");
    assert_eq!(metadata.consenter_metadata.len(), 8, "raft index recorded");
    c.stop(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_through_followers_and_survive_the_leader() {
    let mut c = Cluster::new(3, 5);
    for id in 1..=3 {
        c.start(id);
    }
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
    for i in 30..50 {
        let r = c.request(i);
        expected.push(r.tx_id.clone());
        c.order(new_leader, r).await;
    }
    c.converged(&expected).await;

    // The old leader comes back and catches up from the log.
    c.start(leader);
    c.converged(&expected).await;
    for id in c.ids.clone() {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_minority_cannot_order_and_rejoins() {
    let mut c = Cluster::new(3, 5);
    for id in 1..=3 {
        c.start(id);
    }
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
    for i in 0..10 {
        let r = c.request(i);
        expected.push(r.tx_id.clone());
        c.order(new_leader, r).await;
    }
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
    for id in c.ids.clone() {
        c.stop(id).await;
    }
}
