//! The backend conformance suite: properties every consensus backend must have, run
//! against the real ledger: solo, raft as a one-node group, raft as a three-node group
//! in one process (the node under test and two more, over a [`LocalNetwork`]), and kafka
//! on librdkafka's mock cluster.
//! Later backends add a `Backend` and call the same functions.
//!
//! Total order with no gaps and no duplicates; a submitter's envelopes stay in its order;
//! a config envelope alone in its block and in force from the next block; the batch
//! timeout cuts; restart resumes where it stopped; envelopes validated against an older
//! configuration are re-validated; committed-mode waiters learn their block.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use ordo_consensus::chain::BoxFuture;
use ordo_consensus::filters::precheck;
use ordo_consensus::kafka::{default_topic, KafkaChain, KafkaOptions, PartitionConfig};
use ordo_consensus::raft::{LocalNetwork, RaftChain, RaftOptions, RaftSetup};
use ordo_consensus::{configtx, start_chain, Chain, ChainError, ChainSupport, OrderRequest};
use ordo_ledger::BlockStore;
use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{
    AckMode, Block, ChannelConfig, ConfigSignature, ConfigUpdate, HeaderType, Role,
};
use ordo_proto::policy::build as policy;
use ordo_testkit::{blocks, ChannelBuilder, TestOrg};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// A backend under test.
trait Backend {
    fn start(&self, support: Arc<ChainSupport>) -> Arc<dyn Chain>;
}

struct Solo;
impl Backend for Solo {
    fn start(&self, support: Arc<ChainSupport>) -> Arc<dyn Chain> {
        start_chain(support).expect("solo starts")
    }
}

/// Raft with a single voter: elects itself at start, and every block goes through the
/// raft log (persist, commit, apply) before it reaches the ledger.
struct RaftOne;
impl Backend for RaftOne {
    fn start(&self, support: Arc<ChainSupport>) -> Arc<dyn Chain> {
        let network = LocalNetwork::new();
        let chain = RaftChain::start(
            support,
            RaftSetup {
                id: 1,
                voters: vec![1],
                names: HashMap::new(),
                transport: network.transport(1),
                options: RaftOptions {
                    tick_interval: Duration::from_millis(20),
                    ..RaftOptions::default()
                },
            },
        )
        .expect("raft starts");
        network.register(1, &chain);
        chain
    }
}

/// Kafka on librdkafka's mock cluster (three brokers, the channel's topic replicated
/// three times): the chain produces to and consumes from the partition over the real
/// Kafka protocol. `start` returns once the chain is connected and caught up, as a
/// Broadcast client would wait out SERVICE_UNAVAILABLE; a restart reads the same
/// partition on from the last block's offset.
struct Kafka {
    /// The mock cluster, unless `ORDO_KAFKA_BROKERS` names a real broker.
    _mock: Option<MockCluster<'static, DefaultProducerContext>>,
    brokers: String,
    topic: String,
}

impl Kafka {
    /// A fresh partition: on the mock cluster, or on the real broker named by
    /// `ORDO_KAFKA_BROKERS` (a topic of its own, created through the admin API).
    fn new() -> Self {
        if let Some(brokers) = std::env::var("ORDO_KAFKA_BROKERS")
            .ok()
            .filter(|b| !b.is_empty())
        {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let topic = format!("ordo.conformance.{}.{nanos}", std::process::id());
            create_topic(&brokers, &topic);
            return Self {
                _mock: None,
                brokers,
                topic,
            };
        }
        let cluster = MockCluster::new(3).expect("mock cluster");
        let topic = default_topic("conformance");
        cluster.create_topic(&topic, 1, 3).expect("topic");
        Self {
            brokers: cluster.bootstrap_servers(),
            _mock: Some(cluster),
            topic,
        }
    }

    /// The conformance channel's partition. `RUST_LOG` shows the chain's logs;
    /// `ORDO_KAFKA_DEBUG=fetch,consumer,...` adds librdkafka's debug contexts (with
    /// `RUST_LOG=librdkafka=debug`).
    fn partition(&self) -> PartitionConfig {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        PartitionConfig {
            properties: std::env::var("ORDO_KAFKA_DEBUG")
                .map(|d| vec![("debug".to_string(), d)])
                .unwrap_or_default(),
            delivery_timeout: Duration::from_secs(5),
            ..PartitionConfig::new(self.brokers.clone(), self.topic.clone())
        }
    }
}

/// Creates a one-partition topic on a real broker.
fn create_topic(brokers: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .expect("admin client");
    let results = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(admin.create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
    })
    .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

impl Backend for Kafka {
    fn start(&self, support: Arc<ChainSupport>) -> Arc<dyn Chain> {
        let chain: Arc<dyn Chain> =
            KafkaChain::start(support, KafkaOptions::new(self.partition(), "orderer0"))
                .expect("kafka starts");
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(retry_unavailable(|| chain.wait_ready()))
        })
        .expect("connected and caught up");
        chain
    }
}

/// Raft with three voters: the chain under test is node 1 (the fixture's ledger), which
/// may be a follower forwarding to the leader; nodes 2 and 3 keep their ledgers in the
/// backend's directory across restarts. Halting the returned chain stops the whole group
/// gracefully: the leader first (it proposes what it accepted and waits for the commit),
/// then the others once they hold every block it wrote — so a halt loses nothing that
/// was taken, as with the other backends. Dropping the group without a halt (a test that
/// reopens the ledger) halts it too.
struct RaftThree {
    dir: tempfile::TempDir,
}

struct RaftGroup {
    nodes: Vec<(Arc<ChainSupport>, Arc<RaftChain>)>,
    halted: AtomicBool,
}

impl RaftThree {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
}

impl Drop for RaftGroup {
    fn drop(&mut self) {
        if !self.halted.load(Ordering::Acquire) {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(self.halt_all())
            });
        }
    }
}

impl Backend for RaftThree {
    fn start(&self, support: Arc<ChainSupport>) -> Arc<dyn Chain> {
        let dir = self.dir.path();
        let genesis = support.ledger().block(0).expect("read").expect("genesis");
        let network = LocalNetwork::new();
        let mut nodes = vec![support];
        for i in 2..=3 {
            let store = BlockStore::open(&dir.join(format!("node{i}"))).expect("ledger");
            if store.height() == 0 {
                store.append(&genesis).expect("genesis");
            }
            let signer = nodes[0].signer().clone();
            nodes.push(Arc::new(ChainSupport::new(store, signer).expect("support")));
        }
        let group: Vec<(Arc<ChainSupport>, Arc<RaftChain>)> = nodes
            .into_iter()
            .enumerate()
            .map(|(i, support)| {
                let id = i as u64 + 1;
                let chain = RaftChain::start(
                    support.clone(),
                    RaftSetup {
                        id,
                        voters: vec![1, 2, 3],
                        names: HashMap::new(),
                        transport: network.transport(id),
                        options: RaftOptions {
                            tick_interval: Duration::from_millis(20),
                            ..RaftOptions::default()
                        },
                    },
                )
                .expect("raft starts");
                network.register(id, &chain);
                (support, chain)
            })
            .collect();
        Arc::new(RaftGroup {
            nodes: group,
            halted: AtomicBool::new(false),
        })
    }
}

impl RaftGroup {
    fn node1(&self) -> &Arc<RaftChain> {
        &self.nodes[0].1
    }

    async fn halt_all(&self) {
        self.halted.store(true, Ordering::Release);
        // The leader drains first, while the others can still commit with it.
        let leader = self.node1().leader();
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        if let Some(ix) = self.nodes.iter().position(|(_, c)| c.id() == leader) {
            order.retain(|i| *i != ix);
            order.insert(0, ix);
            self.nodes[ix].1.halt().await;
            let height = self.nodes[ix].0.height();
            // The others learn the last commits from their next leader.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while self
                .nodes
                .iter()
                .enumerate()
                .any(|(i, (s, _))| i != ix && s.height() < height)
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "followers never caught up with the halted leader"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for i in order {
            self.nodes[i].1.halt().await;
        }
    }
}

impl Chain for RaftGroup {
    fn order(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(retry_unavailable(move || self.node1().order(req.clone())))
    }

    fn configure(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(retry_unavailable(move || {
            self.node1().configure(req.clone())
        }))
    }

    fn wait_ready(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        self.node1().wait_ready()
    }

    fn status(&self) -> ordo_consensus::chain::ChainStatus {
        self.node1().status()
    }

    fn halt(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.halt_all())
    }
}

/// A client of a replicated backend resubmits while no leader is ready (at start, or
/// during an election), as Broadcast clients do on SERVICE_UNAVAILABLE.
async fn retry_unavailable<F, Fut>(mut call: F) -> Result<(), ChainError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ChainError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match call().await {
            Err(ChainError::NotReady { .. } | ChainError::NotLeader { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    orderer: Identity,
    client_a: Identity,
    client_b: Identity,
    admin_a: Identity,
    admin_b: Identity,
}

fn fixture(max_count: u32, timeout_ms: u64, ack: AckMode) -> Fixture {
    let (a, b) = (TestOrg::new("A"), TestOrg::new("B"));
    let config = ChannelBuilder::new("conformance")
        .org(&a)
        .org(&b)
        .max_count(max_count)
        .timeout_ms(timeout_ms)
        .ack(ack)
        .writers(policy::any_member(&[], &[Role::Client, Role::Admin]))
        .build();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(&dir.path().join("ledger")).expect("ledger");
    store
        .append(&config::genesis_block(&config, 1).expect("genesis"))
        .expect("append genesis");
    Fixture {
        dir,
        orderer: a.member(Role::Orderer, "orderer"),
        client_a: a.member(Role::Client, "client"),
        admin_a: a.member(Role::Admin, "admin"),
        client_b: b.member(Role::Client, "client"),
        admin_b: b.member(Role::Admin, "admin"),
    }
}

impl Fixture {
    fn open(&self, backend: &dyn Backend) -> (Arc<ChainSupport>, Arc<dyn Chain>) {
        let store = BlockStore::open(&self.dir.path().join("ledger")).expect("ledger reopens");
        let support = Arc::new(ChainSupport::new(store, self.orderer.clone()).expect("support"));
        let chain = backend.start(support.clone());
        (support, chain)
    }
}

fn request(id: &Identity, tag: u64, config_seq: u64) -> OrderRequest {
    let (env, tx_id) = envelope::create_signed(
        id,
        "conformance",
        HeaderType::Message,
        Bytes::from(tag.to_be_bytes().to_vec()),
        ordo_proto::now_ms(),
    );
    OrderRequest {
        envelope: env.encode_to_vec().into(),
        tx_id,
        config_seq,
    }
}

/// The tx ids of `b`, every entry of which must be an envelope with a header.
fn tx_ids(b: &Block) -> Vec<String> {
    let ids = blocks::tx_ids(b);
    let entries = b.data.as_ref().map_or(0, |d| d.data.len());
    assert_eq!(ids.len(), entries, "every block entry is an envelope");
    ids
}

/// Every block of the ledger, checked to be a hash chain from the genesis block.
fn chain_of(support: &ChainSupport) -> Vec<Block> {
    let ledger = support.ledger();
    let mut prev = block::GENESIS_PREVIOUS_HASH;
    let mut out = Vec::new();
    for n in 0..ledger.height() {
        let b = ledger.block(n).expect("read").expect("present");
        block::check_structure(&b, Some((n, &prev))).expect("hash chain");
        prev = block::hash(&b);
        out.push(b);
    }
    out
}

async fn wait_height(support: &ChainSupport, h: u64) {
    tokio::time::timeout(Duration::from_secs(20), support.ledger().wait_for_height(h))
        .await
        .expect("height reached in time");
}

async fn total_order_no_gaps_no_duplicates(backend: &dyn Backend) {
    let f = fixture(37, 20, AckMode::Enqueued);
    let (support, chain) = f.open(backend);
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let chain = chain.clone();
        let id = if t % 2 == 0 {
            f.client_a.clone()
        } else {
            f.client_b.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..250 {
                let r = request(&id, t * 1000 + i, 0);
                ids.push(r.tx_id.clone());
                chain.order(r).await.expect("ordered");
            }
            ids
        }));
    }
    let mut per_task = Vec::new();
    for t in tasks {
        per_task.push(t.await.expect("task"));
    }
    chain.halt().await;
    let blocks = chain_of(&support);
    let all: Vec<String> = blocks[1..].iter().flat_map(tx_ids).collect();
    assert_eq!(all.len(), 2000, "no envelope lost or added");
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        2000,
        "no duplicates"
    );
    for b in &blocks[1..] {
        assert!(
            b.data.as_ref().map(|d| d.data.len()).unwrap_or(0) <= 37,
            "max_message_count respected"
        );
        assert_eq!(b.metadata.as_ref().map(|m| m.last_config), Some(0));
    }
    for ids in per_task {
        let positions: Vec<usize> = ids
            .iter()
            .map(|id| all.iter().position(|x| x == id).expect("present"))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "a submitter's order is kept"
        );
    }
}

fn config_update(
    f: &Fixture,
    support: &ChainSupport,
    change: impl FnOnce(&mut ChannelConfig),
) -> ordo_consensus::filters::Candidate {
    let mut next = support.state().config.clone();
    next.sequence += 1;
    change(&mut next);
    let bytes = next.encode_to_vec();
    let signatures = [&f.admin_a, &f.admin_b]
        .iter()
        .map(|a| ConfigSignature {
            signer: a.cert_bytes().clone(),
            signature: a.sign(&bytes).to_vec().into(),
        })
        .collect();
    let update = ConfigUpdate {
        config: bytes.into(),
        signatures,
    };
    let (env, _) = envelope::create_signed(
        &f.admin_a,
        "conformance",
        HeaderType::ConfigUpdate,
        update.encode_to_vec().into(),
        ordo_proto::now_ms(),
    );
    precheck(&support.state(), env, ordo_proto::now_ms() / 1000)
        .expect("config update passes precheck")
}

async fn config_alone_and_in_force(backend: &dyn Backend) {
    let f = fixture(100, 20, AckMode::Enqueued);
    let (support, chain) = f.open(backend);
    for i in 0..10 {
        chain
            .order(request(&f.client_a, i, 0))
            .await
            .expect("ordered");
    }
    let cand = config_update(&f, &support, |c| {
        if let Some(bs) = c.orderer.as_mut().and_then(|o| o.batch_size.as_mut()) {
            bs.max_message_count = 3;
        }
    });
    let (cfg_env, _) =
        configtx::process_config_update(&support, &cand, ordo_proto::now_ms() / 1000)
            .expect("valid update");
    chain
        .configure(OrderRequest {
            envelope: cfg_env,
            tx_id: "cfg".into(),
            config_seq: 0,
        })
        .await
        .expect("configured");
    for i in 10..20 {
        chain
            .order(request(&f.client_a, i, 1))
            .await
            .expect("ordered");
    }
    chain.halt().await;
    let blocks = chain_of(&support);
    let cfg_pos = blocks
        .iter()
        .skip(1)
        .position(|b| config::config_from_block(b).is_ok())
        .expect("config block")
        + 1;
    assert_eq!(
        blocks[cfg_pos].data.as_ref().map(|d| d.data.len()),
        Some(1),
        "config alone in its block"
    );
    let before: usize = blocks[1..cfg_pos].iter().map(|b| tx_ids(b).len()).sum();
    assert_eq!(before, 10, "the pending batch was cut before the config");
    for b in &blocks[cfg_pos + 1..] {
        assert!(
            tx_ids(b).len() <= 3,
            "new batch size in force after the config block"
        );
        assert_eq!(
            b.metadata.as_ref().map(|m| m.last_config),
            Some(cfg_pos as u64)
        );
    }
    assert_eq!(support.sequence(), 1);
    drop((support, chain));
    // And the configuration survives a restart.
    let (support2, chain2) = f.open(backend);
    assert_eq!(support2.sequence(), 1);
    assert_eq!(support2.state().limits.max_message_count, 3);
    chain2.halt().await;
}

async fn stale_config_seq_is_revalidated(backend: &dyn Backend) {
    let f = fixture(100, 20, AckMode::Enqueued);
    let (support, chain) = f.open(backend);
    // New config: only org B may write.
    let cand = config_update(&f, &support, |c| {
        c.writers = Some(policy::any_member(&["B"], &[]))
    });
    let (cfg_env, _) =
        configtx::process_config_update(&support, &cand, ordo_proto::now_ms() / 1000)
            .expect("valid update");
    chain
        .configure(OrderRequest {
            envelope: cfg_env,
            tx_id: "cfg".into(),
            config_seq: 0,
        })
        .await
        .expect("configured");
    // Validated (by the caller) against sequence 0, when A could still write.
    let from_a = request(&f.client_a, 1, 0);
    let from_b = request(&f.client_b, 2, 0);
    let rejected = support
        .register_commit_waiter(&from_a.tx_id)
        .expect("registered");
    chain.order(from_a.clone()).await.expect("taken");
    chain.order(from_b.clone()).await.expect("taken");
    let outcome = tokio::time::timeout(Duration::from_secs(10), rejected)
        .await
        .expect("told")
        .expect("sent");
    assert!(outcome.is_err(), "A's envelope refused on re-validation");
    chain.halt().await;
    let all: Vec<String> = chain_of(&support)[1..].iter().flat_map(tx_ids).collect();
    assert!(all.contains(&from_b.tx_id));
    assert!(!all.contains(&from_a.tx_id));
}

async fn batch_timeout_cuts(backend: &dyn Backend) {
    let f = fixture(10_000, 30, AckMode::Enqueued);
    let (support, chain) = f.open(backend);
    let r = request(&f.client_a, 1, 0);
    chain.order(r.clone()).await.expect("ordered");
    wait_height(&support, 2).await;
    let b = support.ledger().block(1).expect("read").expect("block 1");
    assert_eq!(tx_ids(&b), vec![r.tx_id]);
    chain.halt().await;
}

async fn restart_resumes(backend: &dyn Backend) {
    let f = fixture(5, 20, AckMode::Enqueued);
    let mut expected = Vec::new();
    for round in 0..3u64 {
        let (support, chain) = f.open(backend);
        let h = support.height();
        for i in 0..12 {
            let r = request(&f.client_b, round * 100 + i, 0);
            expected.push(r.tx_id.clone());
            chain.order(r).await.expect("ordered");
        }
        chain.halt().await;
        assert!(support.height() > h, "round {round} extended the chain");
        let all: Vec<String> = chain_of(&support)[1..].iter().flat_map(tx_ids).collect();
        assert_eq!(
            all, expected,
            "round {round}: everything so far, once, in order"
        );
        drop((support, chain));
    }
}

async fn committed_waiters_learn_their_block(backend: &dyn Backend) {
    let f = fixture(4, 20, AckMode::Committed);
    let (support, chain) = f.open(backend);
    let mut waits = Vec::new();
    for i in 0..10 {
        let r = request(&f.client_a, i, 0);
        let waiter = support
            .register_commit_waiter(&r.tx_id)
            .expect("registered");
        waits.push((r.tx_id.clone(), waiter));
        chain.order(r).await.expect("ordered");
    }
    for (tx_id, w) in waits {
        let n = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("in time")
            .expect("sent")
            .expect("committed");
        let b = support
            .ledger()
            .block(n)
            .expect("read")
            .expect("durable before the ack");
        assert!(tx_ids(&b).contains(&tx_id));
    }
    chain.halt().await;
}

macro_rules! conformance {
    ($backend:expr, $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(&$backend).await;
            }
        )*
    };
}

mod solo {
    use super::Solo;
    conformance!(
        Solo,
        total_order_no_gaps_no_duplicates,
        config_alone_and_in_force,
        stale_config_seq_is_revalidated,
        batch_timeout_cuts,
        restart_resumes,
        committed_waiters_learn_their_block,
    );
}

mod raft_one_node {
    use super::RaftOne;
    conformance!(
        RaftOne,
        total_order_no_gaps_no_duplicates,
        config_alone_and_in_force,
        stale_config_seq_is_revalidated,
        batch_timeout_cuts,
        restart_resumes,
        committed_waiters_learn_their_block,
    );
}

mod raft_three_nodes {
    use super::RaftThree;
    conformance!(
        RaftThree::new(),
        total_order_no_gaps_no_duplicates,
        config_alone_and_in_force,
        stale_config_seq_is_revalidated,
        batch_timeout_cuts,
        restart_resumes,
        committed_waiters_learn_their_block,
    );
}

mod kafka {
    use super::Kafka;
    conformance!(
        Kafka::new(),
        total_order_no_gaps_no_duplicates,
        config_alone_and_in_force,
        stale_config_seq_is_revalidated,
        batch_timeout_cuts,
        restart_resumes,
        committed_waiters_learn_their_block,
    );
}

/// Kafka-only behaviour, on the same fixture.
mod kafka_driver {
    use super::*;

    /// With the lag bound at one message every producer waits for the consumer before
    /// each envelope; concurrent submitters still get everything ordered, once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tight_lag_bound_slows_producers_and_loses_nothing() {
        let f = fixture(7, 20, AckMode::Enqueued);
        let kafka = Kafka::new();
        let store = BlockStore::open(&f.dir.path().join("ledger")).expect("ledger");
        let support = Arc::new(ChainSupport::new(store, f.orderer.clone()).expect("support"));
        let mut options = KafkaOptions::new(kafka.partition(), "orderer0");
        options.max_lag = 1;
        let chain = KafkaChain::start(support.clone(), options).expect("starts");
        retry_unavailable(|| chain.wait_ready())
            .await
            .expect("ready");
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let chain = chain.clone();
            let id = f.client_a.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    chain
                        .order(request(&id, t * 100 + i, 0))
                        .await
                        .expect("ordered");
                }
            }));
        }
        for t in tasks {
            t.await.expect("submitter");
        }
        chain.halt().await;
        let all: Vec<String> = chain_of(&support)[1..].iter().flat_map(tx_ids).collect();
        assert_eq!(all.len(), 160);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 160);
    }

    /// No broker answers: the chain refuses envelopes with the reason, reports itself as
    /// connecting, and still halts at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_brokers_the_chain_says_why_it_is_not_ready() {
        let f = fixture(7, 20, AckMode::Enqueued);
        let store = BlockStore::open(&f.dir.path().join("ledger")).expect("ledger");
        let support = Arc::new(ChainSupport::new(store, f.orderer.clone()).expect("support"));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let addr = closed.local_addr().expect("addr").to_string();
        drop(closed);
        let partition = PartitionConfig {
            delivery_timeout: Duration::from_millis(500),
            ..PartitionConfig::new(addr.clone(), "ordo.nowhere")
        };
        let chain = KafkaChain::start(support, KafkaOptions::new(partition, "orderer0"))
            .expect("starts (connecting in the background)");
        // Refused from the start, and still after the connector has failed to reach them.
        let mut reason = String::new();
        for _ in 0..100 {
            match chain.order(request(&f.client_a, 1, 0)).await {
                Err(ChainError::NotReady { reason: r }) => reason = r,
                other => panic!("expected NotReady, got {other:?}"),
            }
            assert!(reason.contains(&addr), "names the brokers: {reason}");
            if reason.contains("cannot reach") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            reason.contains("cannot reach"),
            "says the brokers failed: {reason}"
        );
        assert_eq!(chain.status().role, "kafka-connecting");
        tokio::time::timeout(Duration::from_secs(10), chain.halt())
            .await
            .expect("halts promptly without brokers");
    }
}
