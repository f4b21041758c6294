//! Replay protection of the peer over real gRPC: `ordo_peer::node::run` in-process on
//! 127.0.0.1 listeners, with its ledgers in a temporary directory. No orderer runs: the
//! channel's genesis block is all these tests read (the follower retries a dead address
//! in the background).
//!
//! - A join or remove executes at most once: a byte-for-byte copy is refused with
//!   CONFLICT, as on the orderer, also when two copies race.
//! - Every signed request must be stamped within the freshness window of the peer's
//!   clock, refused as each service refuses an unauthorized request: FORBIDDEN in Admin
//!   and Query responses, PERMISSION_DENIED from CommitStatus, ChaincodeEvents and
//!   BlockEvents. Evaluate keeps the proposal's wider window and its INVALID_ARGUMENT.
//! - A read replayed inside the window is answered again (reads are not remembered).
//!
//! Requests are built with the real clock (`ordo_proto::now_ms`) unless a test is about
//! the timestamp. Every wait is bounded by a timeout; nothing sleeps to synchronise.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use ordo_peer::node::config::PeerConfig;
use ordo_peer::node::endorser::MAX_PROPOSAL_CLOCK_SKEW_SECS;
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::admin_client::AdminClient;
use ordo_proto::pb::admin::{admin_command, AdminResponse, ListChannels};
use ordo_proto::pb::common::{AckMode, Block, Envelope, HeaderType, Role};
use ordo_proto::pb::gateway::events_client::EventsClient;
use ordo_proto::pb::gateway::gateway_client::GatewayClient;
use ordo_proto::pb::gateway::{
    block_events_response, BlockEventsRequest, ChaincodeEventsRequest, CommitStatusRequest,
};
use ordo_proto::pb::query::query_client::QueryClient;
use ordo_proto::pb::query::{query_request, GetBlock, QueryRequest, QueryResponse};
use ordo_proto::policy::build as policy;
use ordo_proto::replay::DEFAULT_FRESHNESS_WINDOW_MS;
use ordo_testkit::admin::{self, join, request as admin_request, request_at as admin_request_at};
use ordo_testkit::answer::Answer;
use ordo_testkit::org::consenter_entry;
use ordo_testkit::{ChannelBuilder, TestOrg};
use tonic::Code;

/// Bound on any single wait of a test.
const WAIT: Duration = Duration::from_secs(60);
const CHANNEL: &str = "replay";

/// One org (CA "A") with a peer, an admin and a client, a channel's genesis block, and a
/// directory for the node's files.
struct Org {
    dir: tempfile::TempDir,
    peer: Identity,
    admin: Identity,
    client: Identity,
    genesis: Block,
}

impl Org {
    fn new() -> Self {
        let org = TestOrg::new("A");
        let orderer = org.member(Role::Orderer, "orderer");
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("an address");
        let genesis = ChannelBuilder::new(CHANNEL)
            .org(&org)
            .consenters(vec![consenter_entry(
                &orderer,
                "orderer0",
                &dead.to_string(),
            )])
            .ack(AckMode::Enqueued)
            .admins(policy::any_member(&[], &[Role::Admin]))
            .genesis(ordo_proto::now_ms());
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            peer: org.member(Role::Peer, "peer"),
            admin: org.member(Role::Admin, "admin"),
            client: org.member(Role::Client, "client"),
            genesis,
        }
    }
}

/// A peer node running in this process.
struct Node {
    addr: String,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ordo_peer::node::PeerError>>,
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// Starts the org's peer; CommitStatus waits at most 300 ms.
async fn start(org: &Org) -> Node {
    let (grpc, ops) = (bind().await, bind().await);
    let (key_file, cert_file) = (
        org.dir.path().join("peer.key"),
        org.dir.path().join("peer.cert"),
    );
    org.peer
        .save(&key_file, &cert_file)
        .expect("identity saved");
    let addr = grpc.local_addr().expect("local addr");
    let text = format!(
        "[node]\nlisten_addr = \"{addr}\"\nops_listen_addr = \"{}\"\ndata_dir = \"{}\"\n\
         [identity]\nkey_file = \"{}\"\ncert_file = \"{}\"\n\
         [gateway]\ncommit_timeout_ms = 300\n",
        ops.local_addr().expect("ops addr"),
        org.dir.path().join("data").display(),
        key_file.display(),
        cert_file.display(),
    );
    let config = PeerConfig::parse(&text, &[], org.dir.path(), "test config").expect("config");
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(ordo_peer::node::run(config, grpc, ops, async move {
        token.cancelled().await
    }));
    let node = Node {
        addr: addr.to_string(),
        stop,
        task,
    };
    // Answers once it serves (the listener is bound, so the call waits rather than
    // fails). Requests of the tests are signed after this, as a client signs after it
    // connects: a join or remove stamped before the node started would be refused.
    node.channels(&org.admin).await;
    node
}

impl Node {
    async fn channel(&self) -> Channel {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr)).expect("endpoint");
        tokio::time::timeout(WAIT, endpoint.connect())
            .await
            .expect("connect in time")
            .expect("connect")
    }

    /// Sends one Admin request as it is (the same bytes every time).
    async fn admin(&self, request: &Envelope) -> Answer<AdminResponse> {
        let mut client = AdminClient::new(self.channel().await);
        Answer::of(
            tokio::time::timeout(WAIT, client.execute(request.clone()))
                .await
                .expect("admin answers in time"),
        )
    }

    /// The channels the peer serves, asked by `admin`.
    async fn channels(&self, admin: &Identity) -> Vec<String> {
        let list = admin_command::Command::List(ListChannels {});
        let r = self.admin(&admin_request(admin, list)).await;
        r.expect_ok("list")
            .list
            .expect("a list")
            .channels
            .into_iter()
            .map(|c| c.channel_id)
            .collect()
    }

    async fn query(&self, request: &Envelope) -> Answer<QueryResponse> {
        let mut client = QueryClient::new(self.channel().await);
        Answer::of(
            tokio::time::timeout(WAIT, client.query(request.clone()))
                .await
                .expect("query answers in time"),
        )
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("peer stops in time")
            .expect("peer task")
            .expect("peer stops cleanly");
    }
}

/// A signed envelope of `header_type` on the channel, stamped `timestamp_ms`.
fn signed(who: &Identity, header_type: HeaderType, data: Vec<u8>, timestamp_ms: u64) -> Envelope {
    envelope::create_signed(who, CHANNEL, header_type, Bytes::from(data), timestamp_ms).0
}

fn remove() -> admin_command::Command {
    admin::remove(CHANNEL)
}

/// A query for block 0, stamped `timestamp_ms`.
fn query_block_0(reader: &Identity, timestamp_ms: u64) -> Envelope {
    let q = QueryRequest {
        query: Some(query_request::Query::Block(GetBlock { number: 0 })),
    };
    signed(reader, HeaderType::Message, q.encode_to_vec(), timestamp_ms)
}

fn assert_status(r: &Answer<AdminResponse>, code: Code, what: &str) {
    r.assert_code(code, what);
}

/// Timestamps outside a window of `window_ms`: the epoch, the far future, and one second
/// beyond either edge.
fn stale_timestamps(window_ms: u64) -> [u64; 4] {
    let now = ordo_proto::now_ms();
    [
        0,
        u64::MAX,
        now - window_ms - 1_000,
        now + window_ms + 1_000,
    ]
}

/// A started peer that joined the channel.
async fn joined(org: &Org) -> Node {
    let node = start(org).await;
    let r = node
        .admin(&admin_request(&org.admin, join(&org.genesis)))
        .await;
    assert_status(&r, Code::Ok, "join");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_peer_admin_request_is_refused_and_executed_once() {
    let org = Org::new();
    let node = start(&org).await;

    let first_join = admin_request(&org.admin, join(&org.genesis));
    assert_status(&node.admin(&first_join).await, Code::Ok, "join");
    let r = node.admin(&first_join).await;
    assert_status(&r, Code::AlreadyExists, "the same join again");
    assert!(r.info.contains("already executed"), "{}", r.info);

    // A captured remove, replayed after the channel was joined again, would delete the
    // new ledger.
    let captured_remove = admin_request(&org.admin, remove());
    assert_status(&node.admin(&captured_remove).await, Code::Ok, "remove");
    assert!(node.channels(&org.admin).await.is_empty());
    let rejoin = admin_request(&org.admin, join(&org.genesis));
    assert_status(&node.admin(&rejoin).await, Code::Ok, "rejoin");
    let r = node.admin(&captured_remove).await;
    assert_status(&r, Code::AlreadyExists, "the captured remove replayed");
    assert!(r.info.contains("already executed"), "{}", r.info);
    assert_eq!(node.channels(&org.admin).await, vec![CHANNEL.to_string()]);

    // Two copies racing: exactly one executes.
    let remove_again = admin_request(&org.admin, remove());
    let (a, b) = tokio::join!(node.admin(&remove_again), node.admin(&remove_again));
    let mut codes = [a.code, b.code];
    codes.sort_unstable_by_key(|c| *c as i32);
    assert_eq!(
        codes,
        [Code::Ok, Code::AlreadyExists],
        "{} / {}",
        a.info,
        b.info
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_admin_requests_stamped_outside_the_window_are_forbidden() {
    let org = Org::new();
    let node = start(&org).await;
    for t in stale_timestamps(DEFAULT_FRESHNESS_WINDOW_MS) {
        let r = node
            .admin(&admin_request_at(&org.admin, join(&org.genesis), t))
            .await;
        assert_status(&r, Code::PermissionDenied, &format!("join stamped {t}"));
        assert!(r.info.contains("this node's clock"), "{}", r.info);
    }
    assert!(node.channels(&org.admin).await.is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_stamped_outside_the_window_are_forbidden() {
    let org = Org::new();
    let node = joined(&org).await;
    for t in stale_timestamps(DEFAULT_FRESHNESS_WINDOW_MS) {
        let r = node.query(&query_block_0(&org.client, t)).await;
        r.assert_code(Code::PermissionDenied, &format!("stamped {t}"));
        assert!(r.info.contains("this node's clock"), "{}", r.info);
    }
    // A fresh query is answered, and so is its copy: reads are not remembered.
    let fresh = query_block_0(&org.client, ordo_proto::now_ms());
    for _ in 0..2 {
        let r = node.query(&fresh).await.expect_ok("a fresh query");
        // The genesis block, as committed (its metadata gained the validation codes).
        let block = r.block.expect("block 0");
        assert_eq!(block.header, org.genesis.header);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_status_and_event_requests_stamped_outside_the_window_are_permission_denied() {
    let org = Org::new();
    let node = joined(&org).await;
    let commit_status = |t: u64| {
        let req = CommitStatusRequest {
            tx_id: "no-such-tx".into(),
        };
        signed(&org.client, HeaderType::Message, req.encode_to_vec(), t)
    };
    let block_events = |t: u64| {
        let req = BlockEventsRequest {
            start_block: 0,
            filtered: false,
        };
        signed(&org.client, HeaderType::Message, req.encode_to_vec(), t)
    };
    let chaincode_events = |t: u64| {
        let req = ChaincodeEventsRequest {
            chaincode: "basic".into(),
            start_block: 0,
            after_tx_id: String::new(),
        };
        signed(&org.client, HeaderType::Message, req.encode_to_vec(), t)
    };
    let mut gateway = GatewayClient::new(node.channel().await);
    let mut events = EventsClient::new(node.channel().await);
    for t in stale_timestamps(DEFAULT_FRESHNESS_WINDOW_MS) {
        let refusals = [
            tokio::time::timeout(WAIT, gateway.commit_status(commit_status(t)))
                .await
                .expect("in time")
                .map(|_| ())
                .expect_err("a stale CommitStatus is refused"),
            tokio::time::timeout(WAIT, events.block_events(block_events(t)))
                .await
                .expect("in time")
                .map(|_| ())
                .expect_err("a stale BlockEvents is refused"),
            tokio::time::timeout(WAIT, events.chaincode_events(chaincode_events(t)))
                .await
                .expect("in time")
                .map(|_| ())
                .expect_err("a stale ChaincodeEvents is refused"),
        ];
        for status in refusals {
            assert_eq!(
                status.code(),
                tonic::Code::PermissionDenied,
                "stamped {t}: {}",
                status.message()
            );
            assert!(
                status.message().contains("this node's clock"),
                "{}",
                status.message()
            );
        }
    }

    // Fresh ones get past the check: a block stream starts with the genesis block, and
    // CommitStatus waits for the unknown transaction until its deadline.
    let mut stream = tokio::time::timeout(
        WAIT,
        events.block_events(block_events(ordo_proto::now_ms())),
    )
    .await
    .expect("in time")
    .expect("a fresh BlockEvents opens")
    .into_inner();
    let first = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("in time")
        .expect("stream")
        .expect("a first block");
    match first.kind {
        Some(block_events_response::Kind::Block(b)) => assert_eq!(b.header, org.genesis.header),
        other => panic!("expected the genesis block, got {other:?}"),
    }
    let status = tokio::time::timeout(
        WAIT,
        gateway.commit_status(commit_status(ordo_proto::now_ms())),
    )
    .await
    .expect("in time")
    .expect_err("nothing commits");
    assert_eq!(
        status.code(),
        tonic::Code::DeadlineExceeded,
        "{}",
        status.message()
    );
    drop(stream);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_stamped_outside_the_proposal_window_is_invalid_argument() {
    let org = Org::new();
    let node = joined(&org).await;
    let mut gateway = GatewayClient::new(node.channel().await);
    let proposal = ordo_sdk::tx::Proposal::new(
        &org.client,
        CHANNEL,
        ordo_sdk::tx::invocation("basic", "get", vec![Bytes::from_static(b"k")]),
    );
    for t in stale_timestamps(MAX_PROPOSAL_CLOCK_SKEW_SECS * 1000) {
        let request = ordo_sdk::gateway::signed_proposal(&org.client, &proposal, t);
        let status = tokio::time::timeout(WAIT, gateway.evaluate(request))
            .await
            .expect("in time")
            .expect_err("a stale Evaluate is refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "stamped {t}: {}",
            status.message()
        );
        assert!(
            status.message().contains("this node's clock"),
            "{}",
            status.message()
        );
    }
    node.stop().await;
}
