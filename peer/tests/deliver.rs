//! The deliver client against real orderers: `ordo_orderer::run` in-process on
//! 127.0.0.1 listeners with RocksDB ledgers in temporary directories, and the test kit's
//! fake orderer for orderers that misbehave (tamper with blocks, say nothing).
//!
//! Every wait is bounded by a timeout; nothing sleeps to synchronise.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use ordo_orderer::config::{IdentitySection, LimitsSection, LogSection, NodeSection};
use ordo_orderer::OrdererConfig as NodeConfig;
use ordo_peer::deliver::{
    follow, BlockSink, DeliverConfig, DeliverCounts, DeliverError, FollowOptions, PullError,
    SinkError,
};
use ordo_proto::block;
use ordo_proto::hash::Hash;
use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::{admin_command, JoinChannel};
use ordo_proto::pb::common::{AckMode, Block, ChannelConfig, Envelope, Role, Status as Code};
use ordo_proto::pb::orderer::{BroadcastResponse, SeekBehavior};
use ordo_proto::policy::build as policy;
use ordo_proto::verify::ChainVerifier;
use ordo_sdk::transport::Transport;
use ordo_testkit::fake_orderer::{DeliverFault, FakeOrderer, Faults, Source, Tamper, Which};
use ordo_testkit::org::consenter_entry;
use ordo_testkit::{envelopes, ChannelBuilder, TestOrg};

/// Bound on any single wait of a test.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Crypto material and channels
// ---------------------------------------------------------------------------------------

/// One org with an orderer, an admin, a peer and a client, in a temporary directory.
struct Org {
    dir: tempfile::TempDir,
    org: TestOrg,
    orderer: Identity,
    admin: Identity,
    peer: Identity,
    client: Identity,
}

impl Org {
    fn new() -> Self {
        let org = TestOrg::new("A");
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            orderer: org.member(Role::Orderer, "orderer"),
            admin: org.member(Role::Admin, "admin"),
            peer: org.member(Role::Peer, "peer"),
            client: org.member(Role::Client, "client"),
            org,
        }
    }

    /// A solo channel whose orderer endpoints are `endpoints`, cutting blocks of at most
    /// two envelopes.
    fn channel(&self, channel_id: &str, endpoints: &[String]) -> (ChannelConfig, Block) {
        let consenters = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| consenter_entry(&self.orderer, &format!("orderer{i}"), e))
            .collect();
        let builder = ChannelBuilder::new(channel_id)
            .org(&self.org)
            .max_count(2)
            .consenters(consenters)
            .ack(AckMode::Enqueued)
            .admins(policy::any_member(&[], &[Role::Admin]));
        (builder.clone().build(), builder.genesis(1))
    }

    fn envelope(&self, channel_id: &str, tag: u64) -> (Envelope, String) {
        envelopes::message(&self.client, channel_id, 8, tag)
    }
}

// ---------------------------------------------------------------------------------------
// A real orderer, in-process
// ---------------------------------------------------------------------------------------

struct Orderer {
    addr: String,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ordo_orderer::OrdererError>>,
}

async fn bind() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("local addr").to_string();
    (l, addr)
}

/// An address where nothing listens: bound, then released.
fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").to_string()
}

/// Runs an orderer node of `org` on `grpc` with its data in `data_dir`.
async fn start_orderer(org: &Org, grpc: TcpListener, data_dir: PathBuf) -> Orderer {
    let (ops, _) = bind().await;
    let id_dir = org.dir.path().join("orderer-identity");
    std::fs::create_dir_all(&id_dir).expect("identity dir");
    let (key_file, cert_file) = (id_dir.join("orderer.key"), id_dir.join("orderer.cert"));
    org.orderer
        .save(&key_file, &cert_file)
        .expect("identity saved");
    let addr = grpc.local_addr().expect("local addr");
    let config = NodeConfig {
        node: NodeSection {
            name: "orderer0".into(),
            listen_addr: addr,
            ops_listen_addr: ops.local_addr().expect("ops addr"),
            data_dir,
            cluster_source_addr: None,
        },
        identity: IdentitySection {
            key_file,
            cert_file,
        },
        limits: LimitsSection::default(),
        log: LogSection::default(),
        kafka: Default::default(),
        tls: Default::default(),
        connections: Default::default(),
        ledger: Default::default(),
    };
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(ordo_orderer::run(config, grpc, ops, async move {
        token.cancelled().await
    }));
    Orderer {
        addr: addr.to_string(),
        stop,
        task,
    }
}

impl Orderer {
    /// Joins the node to the channel of `genesis`.
    async fn join(&self, org: &Org, genesis: &Block) {
        let ch = ordo_sdk::orderer::connect(&self.addr, &Transport::Plain)
            .await
            .expect("connect");
        // The listener accepts connections before the node has started its Admin handler,
        // which refuses requests signed before its start (replay protection across
        // restarts): wait until it answers a read, as `ordo up` does, then sign the join.
        for _ in 0..100 {
            let list = ordo_sdk::orderer::admin_request(
                &org.admin,
                "",
                admin_command::Command::List(ordo_proto::pb::admin::ListChannels {}),
            );
            let answered = ordo_sdk::orderer::admin_client(ch.clone())
                .execute(list)
                .await
                .is_ok();
            if answered {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let req = ordo_sdk::orderer::admin_request(
            &org.admin,
            "",
            admin_command::Command::Join(JoinChannel {
                genesis_block: genesis.encode_to_vec().into(),
            }),
        );
        tokio::time::timeout(WAIT, ordo_sdk::orderer::admin_client(ch).execute(req))
            .await
            .expect("join in time")
            .expect("the orderer joins the channel");
    }

    /// Broadcasts `envs` over one stream and checks every one was accepted.
    async fn broadcast(&self, envs: Vec<Envelope>) {
        let ch = ordo_sdk::orderer::connect(&self.addr, &Transport::Plain)
            .await
            .expect("connect");
        let mut client = ordo_sdk::orderer::broadcast_client(ch);
        let n = envs.len();
        let mut stream = client
            .broadcast(tokio_stream::iter(envs))
            .await
            .expect("broadcast opens")
            .into_inner();
        let mut answers: Vec<BroadcastResponse> = Vec::with_capacity(n);
        while answers.len() < n {
            let r = tokio::time::timeout(WAIT, stream.next())
                .await
                .expect("broadcast answers in time")
                .expect("broadcast stream open")
                .expect("broadcast response");
            assert_eq!(r.status, Code::Success as i32, "broadcast: {}", r.info);
            answers.push(r);
        }
    }

    /// Blocks `0..=last` as the node holds them.
    async fn blocks(&self, org: &Org, channel_id: &str, last: u64) -> Vec<Block> {
        let req = ordo_sdk::orderer::seek_request(
            &org.peer,
            channel_id,
            ordo_sdk::orderer::position(Some(0)),
            Some(ordo_sdk::orderer::position(Some(last))),
            SeekBehavior::FailIfNotReady,
        );
        let ch = ordo_sdk::orderer::connect(&self.addr, &Transport::Plain)
            .await
            .expect("connect");
        let mut stream = ordo_sdk::orderer::broadcast_client(ch)
            .deliver(req)
            .await
            .expect("deliver opens")
            .into_inner();
        let mut blocks = Vec::new();
        // OK after the stop block ends the stream.
        while let Some(resp) = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("deliver in time")
            .expect("deliver ends with OK")
        {
            blocks.push(resp.block.expect("a block"));
        }
        blocks
    }

    /// Stops the node gracefully and waits until it has closed its ledgers.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("orderer stops in time")
            .expect("orderer task")
            .expect("orderer stops cleanly");
    }
}

// ---------------------------------------------------------------------------------------
// The sink and the follower
// ---------------------------------------------------------------------------------------

/// A sink that checks the order and passes blocks to the test.
struct TestSink {
    next: u64,
    out: mpsc::Sender<Block>,
}

impl BlockSink for TestSink {
    fn next_number(&self) -> u64 {
        self.next
    }

    async fn deliver(&mut self, block: Block) -> Result<(), SinkError> {
        assert_eq!(block::number(&block), self.next, "blocks arrive in order");
        self.out.send(block).await.map_err(|_| SinkError::Closed)?;
        self.next += 1;
        Ok(())
    }
}

struct Follower {
    rx: mpsc::Receiver<Block>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), DeliverError>>,
    stats: Arc<ordo_peer::deliver::DeliverStats>,
    /// Every block the sink took, in order.
    blocks: Vec<Block>,
}

/// Test timings: quick backoff; timeouts long enough that a healthy stream never hits
/// them, so reconnect counts are exact.
fn quick() -> DeliverConfig {
    DeliverConfig {
        backoff_base_ms: 20,
        backoff_max_ms: 500,
        connect_timeout_ms: 10_000,
        idle_timeout_ms: 10_000,
        ..DeliverConfig::default()
    }
}

fn start_follow(opts: FollowOptions, next: u64) -> Follower {
    let (tx, rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let stats = opts.stats.clone();
    let task = tokio::spawn(follow(opts, TestSink { next, out: tx }, stop.clone()));
    Follower {
        rx,
        stop,
        task,
        stats,
        blocks: Vec::new(),
    }
}

use ordo_testkit::blocks::tx_ids;

impl Follower {
    /// Takes blocks until every id of `want` has been seen in some block.
    async fn until_seen(&mut self, want: &[String]) {
        let mut missing: HashSet<&String> = want.iter().collect();
        for b in &self.blocks {
            for id in tx_ids(b) {
                missing.remove(&id);
            }
        }
        while !missing.is_empty() {
            let b = tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{} tx ids not delivered in time; stats {:?}",
                        missing.len(),
                        self.stats.snapshot()
                    )
                })
                .expect("the follower is running");
            for id in tx_ids(&b) {
                missing.remove(&id);
            }
            self.blocks.push(b);
        }
    }

    /// Stops following; `follow` must return `Ok`.
    async fn stop(self) -> (Vec<Block>, DeliverCounts) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("follow stops in time")
            .expect("follow task")
            .expect("follow ends cleanly");
        (self.blocks, self.stats.snapshot())
    }
}

/// Checks that `blocks` are numbered `first, first + 1, …` and hold every id of `want`
/// exactly once and nothing else.
fn assert_chain(blocks: &[Block], first: u64, want: &[String]) {
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(block::number(b), first + i as u64, "no gap, no duplicate");
    }
    let mut seen: Vec<String> = blocks.iter().flat_map(tx_ids).collect();
    assert_eq!(
        seen.len(),
        want.len(),
        "every envelope delivered exactly once"
    );
    seen.sort();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(seen, want);
}

/// A verifier that has checked the genesis block the peer joined with: how a peer that
/// joined a channel starts (its ledger holds block 0; it asks for block 1 on).
fn joined(genesis: &Block) -> ChainVerifier {
    let mut v = ChainVerifier::new();
    v.check(genesis, ordo_proto::now_ms() / 1000)
        .expect("genesis verifies");
    v
}

fn envelopes(
    org: &Org,
    channel_id: &str,
    tags: std::ops::Range<u64>,
) -> (Vec<Envelope>, Vec<String>) {
    tags.map(|t| org.envelope(channel_id, t)).unzip()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// From genesis (no configuration yet: the endpoint is a static one) through twenty
/// envelopes: every block once, in order, all verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_channel_from_genesis() {
    let org = Org::new();
    let (listener, addr) = bind().await;
    let (_, genesis) = org.channel("follow", std::slice::from_ref(&addr));
    let orderer = start_orderer(&org, listener, org.dir.path().join("o1")).await;
    orderer.join(&org, &genesis).await;

    let mut opts = FollowOptions::new("follow", org.peer.clone(), ChainVerifier::new());
    opts.static_endpoints = vec![addr.clone()];
    opts.config = quick();
    let mut f = start_follow(opts, 0);

    let (envs, ids) = envelopes(&org, "follow", 0..20);
    orderer.broadcast(envs).await;
    f.until_seen(&ids).await;
    let (blocks, counts) = f.stop().await;

    assert_eq!(blocks.first().map(block::hash), Some(block::hash(&genesis)));
    assert_chain(&blocks[1..], 1, &ids);
    let last = block::number(blocks.last().expect("blocks"));
    let on_orderer = orderer.blocks(&org, "follow", last).await;
    assert_eq!(
        blocks.iter().map(block::hash).collect::<Vec<_>>(),
        on_orderer.iter().map(block::hash).collect::<Vec<_>>(),
        "the sink holds the orderer's chain"
    );
    let n = blocks.len() as u64;
    assert_eq!(
        counts,
        DeliverCounts {
            blocks_received: n,
            blocks_verified: n,
            verification_failures: 0,
            reconnects: 0,
        }
    );
    orderer.stop().await;
}

/// The channel names three endpoints: a dead one, orderer A, and B (bound but not yet
/// serving). The client skips the dead one and follows A; A stops; the same node comes
/// back on B's address and the client follows it there, with no gap or duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_across_the_channel_endpoints() {
    let org = Org::new();
    let dead = dead_address();
    let (listener_a, addr_a) = bind().await;
    let (listener_b, addr_b) = bind().await;
    let (_, genesis) = org.channel("failover", &[dead.clone(), addr_a, addr_b]);
    let data = org.dir.path().join("node");
    let a = start_orderer(&org, listener_a, data.clone()).await;
    a.join(&org, &genesis).await;

    let mut opts = FollowOptions::new("failover", org.peer.clone(), joined(&genesis));
    opts.config = quick();
    let mut f = start_follow(opts, 1);

    let (envs, mut ids) = envelopes(&org, "failover", 0..10);
    a.broadcast(envs).await;
    f.until_seen(&ids).await;
    assert!(
        f.stats.snapshot().reconnects >= 1,
        "the dead endpoint came first"
    );

    a.stop().await;
    let b = start_orderer(&org, listener_b, data).await;
    let (envs, more) = envelopes(&org, "failover", 10..20);
    b.broadcast(envs).await;
    ids.extend(more);
    f.until_seen(&ids).await;
    let (blocks, counts) = f.stop().await;

    assert_chain(&blocks, 1, &ids);
    assert_eq!(counts.verification_failures, 0);
    assert_eq!(counts.blocks_verified, blocks.len() as u64);
    assert!(counts.reconnects >= 2, "{counts:?}");
    b.stop().await;
}

/// Each way of tampering with a block, by an orderer listed before the honest one: the
/// client refuses the block once, avoids the tamperer and delivers the honest chain from
/// the real orderer, with no gap or duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampering_orderer_is_refused_and_avoided() {
    let org = Org::new();
    let (listener, real) = bind().await;
    let orderer = start_orderer(&org, listener, org.dir.path().join("o1")).await;
    let relay = Source::Relay {
        upstream: real.clone(),
        transport: Transport::Plain,
    };

    for (i, (at, how)) in [
        (2, Tamper::Data),
        (3, Tamper::Signature),
        (2, Tamper::PreviousHash),
    ]
    .into_iter()
    .enumerate()
    {
        let fault = DeliverFault::Tamper(Which::At(at), how);
        let channel_id = format!("tamper{i}");
        let fake = FakeOrderer::start(relay.clone(), Faults::deliver(fault), None)
            .await
            .expect("fake orderer starts");
        let (_, genesis) = org.channel(&channel_id, &[fake.endpoint(), real.clone()]);
        orderer.join(&org, &genesis).await;
        let (envs, ids) = envelopes(&org, &channel_id, 0..10);
        orderer.broadcast(envs).await;

        let mut opts = FollowOptions::new(channel_id.clone(), org.peer.clone(), joined(&genesis));
        opts.config = quick();
        let mut f = start_follow(opts, 1);
        f.until_seen(&ids).await;
        let (blocks, counts) = f.stop().await;

        assert_chain(&blocks, 1, &ids);
        let last = block::number(blocks.last().expect("blocks"));
        let honest: Vec<Hash> = orderer
            .blocks(&org, &channel_id, last)
            .await
            .iter()
            .skip(1)
            .map(block::hash)
            .collect();
        assert_eq!(
            blocks.iter().map(block::hash).collect::<Vec<_>>(),
            honest,
            "{fault:?}: the sink holds the honest chain"
        );
        assert_eq!(counts.verification_failures, 1, "{fault:?}: {counts:?}");
        assert_eq!(counts.reconnects, 1, "{fault:?}: {counts:?}");
        assert_eq!(fake.tampered(), 1, "{fault:?}: the fake changed one block");
        assert_eq!(counts.blocks_verified, blocks.len() as u64);
        assert_eq!(counts.blocks_received, blocks.len() as u64 + 1);
    }
    orderer.stop().await;
}

/// Endpoints that accept connections but never answer, and that open a stream but send
/// nothing, are given up after the connect and idle timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_endpoints_are_abandoned() {
    let org = Org::new();
    let (listener, real) = bind().await;
    let orderer = start_orderer(&org, listener, org.dir.path().join("o1")).await;
    // Accepts TCP connections (the kernel does) and never speaks HTTP/2.
    let (_black_hole, black_hole) = bind().await;
    let relay = Source::Relay {
        upstream: real.clone(),
        transport: Transport::Plain,
    };
    let silent = FakeOrderer::start(relay, Faults::deliver(DeliverFault::Silent), None)
        .await
        .expect("fake orderer starts");
    let (_, genesis) = org.channel("stall", &[black_hole, silent.endpoint(), real]);
    orderer.join(&org, &genesis).await;
    let (envs, ids) = envelopes(&org, "stall", 0..6);
    orderer.broadcast(envs).await;

    let mut opts = FollowOptions::new("stall", org.peer.clone(), joined(&genesis));
    opts.config = DeliverConfig {
        connect_timeout_ms: 1_000,
        idle_timeout_ms: 1_000,
        ..quick()
    };
    let mut f = start_follow(opts, 1);
    f.until_seen(&ids).await;
    let (blocks, counts) = f.stop().await;

    assert_chain(&blocks, 1, &ids);
    assert_eq!(counts.reconnects, 2, "{counts:?}");
    assert_eq!(counts.verification_failures, 0);
    orderer.stop().await;
}

/// A sink at block k resumes with `ChainVerifier::resume` and gets k, k + 1, … only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_the_sinks_height() {
    let org = Org::new();
    let (listener, addr) = bind().await;
    let (cfg, genesis) = org.channel("resume", &[addr]);
    let orderer = start_orderer(&org, listener, org.dir.path().join("o1")).await;
    orderer.join(&org, &genesis).await;

    let mut opts = FollowOptions::new("resume", org.peer.clone(), joined(&genesis));
    opts.config = quick();
    let mut f = start_follow(opts, 1);
    let (envs, first_ids) = envelopes(&org, "resume", 0..10);
    orderer.broadcast(envs).await;
    f.until_seen(&first_ids).await;
    let (first, _) = f.stop().await;
    assert!(first.len() >= 5, "ten envelopes, at most two a block");

    // The peer restarts having committed blocks 0..k.
    let k = 3u64;
    let prev = block::hash(&first[(k - 2) as usize]);
    let verifier = ChainVerifier::resume(k, prev, cfg, 0).expect("resume");
    let mut opts = FollowOptions::new("resume", org.peer.clone(), verifier);
    opts.config = quick();
    let mut f = start_follow(opts, k);
    let (envs, more) = envelopes(&org, "resume", 10..16);
    orderer.broadcast(envs).await;
    let want: Vec<String> = first[(k - 1) as usize..]
        .iter()
        .flat_map(tx_ids)
        .chain(more)
        .collect();
    f.until_seen(&want).await;
    let (resumed, counts) = f.stop().await;

    assert_chain(&resumed, k, &want);
    for (a, b) in first[(k - 1) as usize..].iter().zip(&resumed) {
        assert_eq!(block::hash(a), block::hash(b), "the same chain");
    }
    assert_eq!(counts.blocks_verified, resumed.len() as u64);
    assert_eq!(counts.verification_failures, 0);
    orderer.stop().await;
}

/// A sink that is not where the verifier is, or no endpoint at all: `follow` refuses to
/// start rather than deliver a wrong block or spin.
#[tokio::test]
async fn refuses_to_start_out_of_step_or_without_endpoints() {
    let org = Org::new();
    let (_, genesis) = org.channel("nothing", &[]);
    let (tx, _rx) = mpsc::channel(1);
    let opts = FollowOptions::new("nothing", org.peer.clone(), joined(&genesis));
    let r = follow(
        opts,
        TestSink {
            next: 5,
            out: tx.clone(),
        },
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(
            r,
            Err(DeliverError::Pull(PullError::SinkOutOfStep {
                sink: 5,
                verifier: 1
            }))
        ),
        "{r:?}"
    );
    let opts = FollowOptions::new("nothing", org.peer.clone(), joined(&genesis));
    let r = follow(
        opts,
        TestSink { next: 1, out: tx },
        CancellationToken::new(),
    )
    .await;
    assert!(matches!(r, Err(DeliverError::NoEndpoints { .. })), "{r:?}");
}
