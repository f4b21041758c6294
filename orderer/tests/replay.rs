//! Replay protection of the orderer over real gRPC: `ordo_orderer::run` in-process on
//! 127.0.0.1 listeners, with its ledgers in a temporary directory.
//!
//! - A join or remove executes at most once: a byte-for-byte copy is refused with
//!   CONFLICT, also when two copies race, and after a restart (FORBIDDEN: stamped before
//!   the node started).
//! - Every signed request, read or admin, must be stamped within the freshness window of
//!   the node's clock: 0 and `u64::MAX` are FORBIDDEN, like any authorization failure.
//! - A read replayed inside the window is answered again (reads are not remembered).
//!
//! Requests are built with the real clock (`ordo_proto::now_ms`) unless a test is about
//! the timestamp. Every wait is bounded by a timeout; nothing sleeps to synchronise.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use ordo_orderer::OrdererConfig;
use ordo_proto::config;
use ordo_proto::crypto::generate_signing_key;
use ordo_proto::envelope;
use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::admin::admin_client::AdminClient;
use ordo_proto::pb::admin::{
    admin_command, AdminCommand, AdminResponse, GetChannelInfo, JoinChannel, ListChannels,
    RemoveChannel,
};
use ordo_proto::pb::common::{
    AckMode, BatchSize, Block, ChannelConfig, Consenter, Envelope, HeaderType, Organization, Role,
    Status as Code,
};
use ordo_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo_proto::pb::orderer::{
    deliver_response, seek_position, SeekBehavior, SeekInfo, SeekPosition,
};
use ordo_proto::policy::build as policy;
use ordo_proto::replay::DEFAULT_FRESHNESS_WINDOW_MS;

/// Bound on any single wait of a test.
const WAIT: Duration = Duration::from_secs(60);
const CHANNEL: &str = "replay";

/// One org (CA "A") with an orderer, an admin and a client, a solo channel's genesis
/// block, and a directory for the node's files.
struct Org {
    dir: tempfile::TempDir,
    orderer: Identity,
    admin: Identity,
    client: Identity,
    genesis: Block,
}

impl Org {
    fn new() -> Self {
        let ca = generate_signing_key();
        let member = |role: Role, name: &str| {
            Identity::enroll(
                &ca,
                generate_signing_key(),
                &Enrollment::new("A", role, name),
            )
        };
        let orderer = member(Role::Orderer, "orderer");
        let cfg = ChannelConfig {
            channel_id: CHANNEL.into(),
            sequence: 0,
            orgs: vec![Organization {
                name: "A".into(),
                root_public_keys: vec![ca.verifying_key().to_bytes().to_vec().into()],
                ..Default::default()
            }],
            orderer: Some(ordo_proto::pb::common::OrdererConfig {
                consensus_type: "solo".into(),
                batch_size: Some(BatchSize {
                    max_message_count: 10,
                    absolute_max_bytes: 1 << 20,
                    preferred_max_bytes: 1 << 19,
                }),
                batch_timeout_ms: 50,
                consenters: vec![Consenter {
                    id: "orderer0".into(),
                    endpoint: "127.0.0.1:1".into(),
                    certificate: orderer.cert_bytes().clone(),
                    ..Default::default()
                }],
                ack_mode: AckMode::Enqueued as i32,
                ..Default::default()
            }),
            readers: Some(policy::any_member(&[], &[])),
            writers: Some(policy::any_member(&[], &[Role::Client])),
            admins: Some(policy::any_member(&[], &[Role::Admin])),
            block_validation: Some(policy::any_member(&[], &[Role::Orderer])),
            chaincodes: vec![],
        };
        let genesis = config::genesis_block(&cfg, ordo_proto::now_ms()).expect("genesis block");
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            admin: member(Role::Admin, "admin"),
            client: member(Role::Client, "client"),
            orderer,
            genesis,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// An orderer node running in this process.
struct Node {
    addr: String,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ordo_orderer::OrdererError>>,
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// Starts the org's orderer with its data in the org's directory (a restart finds the
/// ledgers of the previous run).
async fn start(org: &Org) -> Node {
    let (grpc, ops) = (bind().await, bind().await);
    let (key_file, cert_file) = (
        org.dir.path().join("orderer.key"),
        org.dir.path().join("orderer.cert"),
    );
    org.orderer
        .save(&key_file, &cert_file)
        .expect("identity saved");
    let addr = grpc.local_addr().expect("local addr");
    let text = format!(
        "[node]\nlisten_addr = \"{addr}\"\nops_listen_addr = \"{}\"\ndata_dir = \"{}\"\n\
         [identity]\nkey_file = \"{}\"\ncert_file = \"{}\"\n",
        ops.local_addr().expect("ops addr"),
        org.data_dir().display(),
        key_file.display(),
        cert_file.display(),
    );
    let config =
        OrdererConfig::parse(&text, &[], org.dir.path(), "test config").expect("config parses");
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(ordo_orderer::run(config, grpc, ops, async move {
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
    async fn admin(&self, request: &Envelope) -> AdminResponse {
        let mut client = AdminClient::new(self.channel().await);
        tokio::time::timeout(WAIT, client.execute(request.clone()))
            .await
            .expect("admin answers in time")
            .expect("admin answers")
            .into_inner()
    }

    /// The channels the node serves, asked by `admin`.
    async fn channels(&self, admin: &Identity) -> Vec<String> {
        let r = self.admin(&admin_request(admin, list())).await;
        assert_eq!(r.status, Code::Success as i32, "list: {}", r.info);
        r.list
            .expect("a list")
            .channels
            .into_iter()
            .map(|c| c.channel_id)
            .collect()
    }

    /// Sends one Deliver request; the blocks and the final status with its info.
    async fn deliver(&self, request: &Envelope) -> (Vec<Block>, i32, String) {
        let mut client = AtomicBroadcastClient::new(self.channel().await);
        let mut stream = tokio::time::timeout(WAIT, client.deliver(request.clone()))
            .await
            .expect("deliver opens in time")
            .expect("deliver opens")
            .into_inner();
        let mut blocks = Vec::new();
        loop {
            let resp = tokio::time::timeout(WAIT, stream.message())
                .await
                .expect("deliver answers in time")
                .expect("deliver stream")
                .expect("a status ends the stream");
            match resp.r#type {
                Some(deliver_response::Type::Block(b)) => blocks.push(b),
                Some(deliver_response::Type::Status(c)) => return (blocks, c, resp.info),
                None => panic!("empty deliver response"),
            }
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("orderer stops in time")
            .expect("orderer task")
            .expect("orderer stops cleanly");
    }
}

/// A signed ADMIN_COMMAND stamped `timestamp_ms`.
fn admin_request_at(
    who: &Identity,
    command: admin_command::Command,
    timestamp_ms: u64,
) -> Envelope {
    let cmd = AdminCommand {
        command: Some(command),
    };
    envelope::create_signed(
        who,
        "-",
        HeaderType::AdminCommand,
        Bytes::from(cmd.encode_to_vec()),
        timestamp_ms,
    )
    .0
}

/// A signed ADMIN_COMMAND stamped now.
fn admin_request(who: &Identity, command: admin_command::Command) -> Envelope {
    admin_request_at(who, command, ordo_proto::now_ms())
}

fn join(genesis: &Block) -> admin_command::Command {
    admin_command::Command::Join(JoinChannel {
        genesis_block: genesis.encode_to_vec().into(),
    })
}

fn remove() -> admin_command::Command {
    admin_command::Command::Remove(RemoveChannel {
        channel_id: CHANNEL.into(),
    })
}

fn list() -> admin_command::Command {
    admin_command::Command::List(ListChannels {})
}

fn specified(n: u64) -> Option<SeekPosition> {
    Some(SeekPosition {
        r#type: Some(seek_position::Type::Specified(n)),
    })
}

/// A signed Deliver request for block 0 of the channel, stamped `timestamp_ms`.
fn seek_block_0(reader: &Identity, timestamp_ms: u64) -> Envelope {
    let seek = SeekInfo {
        start: specified(0),
        stop: specified(0),
        behavior: SeekBehavior::FailIfNotReady as i32,
    };
    envelope::create_signed(
        reader,
        CHANNEL,
        HeaderType::DeliverSeekInfo,
        Bytes::from(seek.encode_to_vec()),
        timestamp_ms,
    )
    .0
}

fn assert_status(r: &AdminResponse, code: Code, what: &str) {
    assert_eq!(
        Code::try_from(r.status),
        Ok(code),
        "{what}: status {} ({})",
        r.status,
        r.info
    );
}

/// Timestamps no node may accept: the epoch, the far future, and one second outside the
/// window either way.
fn stale_timestamps() -> [u64; 4] {
    let now = ordo_proto::now_ms();
    [
        0,
        u64::MAX,
        now - DEFAULT_FRESHNESS_WINDOW_MS - 1_000,
        now + DEFAULT_FRESHNESS_WINDOW_MS + 1_000,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_admin_request_is_refused_and_executed_once() {
    let org = Org::new();
    let node = start(&org).await;

    let first_join = admin_request(&org.admin, join(&org.genesis));
    assert_status(&node.admin(&first_join).await, Code::Success, "join");
    let r = node.admin(&first_join).await;
    assert_status(&r, Code::Conflict, "the same join again");
    assert!(r.info.contains("already executed"), "{}", r.info);

    // The attack the memory exists for: a captured remove, replayed after the channel
    // was joined again, would delete the new ledger.
    let captured_remove = admin_request(&org.admin, remove());
    assert_status(&node.admin(&captured_remove).await, Code::Success, "remove");
    assert!(node.channels(&org.admin).await.is_empty());
    let rejoin = admin_request(&org.admin, join(&org.genesis));
    assert_status(&node.admin(&rejoin).await, Code::Success, "rejoin");
    let r = node.admin(&captured_remove).await;
    assert_status(&r, Code::Conflict, "the captured remove replayed");
    assert!(r.info.contains("already executed"), "{}", r.info);
    assert_eq!(node.channels(&org.admin).await, vec![CHANNEL.to_string()]);
    let (blocks, code, info) = node
        .deliver(&seek_block_0(&org.client, ordo_proto::now_ms()))
        .await;
    assert_eq!((blocks.len(), code), (1, Code::Success as i32), "{info}");

    // Reads are not remembered: the same list and info requests are answered twice.
    let list_request = admin_request(&org.admin, list());
    let info_request = admin_request(
        &org.client,
        admin_command::Command::Info(GetChannelInfo {
            channel_id: CHANNEL.into(),
        }),
    );
    for _ in 0..2 {
        assert_status(&node.admin(&list_request).await, Code::Success, "list");
        assert_status(&node.admin(&info_request).await, Code::Success, "info");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_copies_of_a_remove_exactly_one_executes() {
    let org = Org::new();
    let node = start(&org).await;
    let r = node
        .admin(&admin_request(&org.admin, join(&org.genesis)))
        .await;
    assert_status(&r, Code::Success, "join");

    let remove = admin_request(&org.admin, remove());
    let (a, b) = tokio::join!(node.admin(&remove), node.admin(&remove));
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [Code::Success as i32, Code::Conflict as i32],
        "{} / {}",
        a.info,
        b.info
    );
    let refused = if a.status == Code::Conflict as i32 {
        a
    } else {
        b
    };
    assert!(
        refused.info.contains("already executed"),
        "{}",
        refused.info
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_request_replayed_after_a_restart_is_refused() {
    let org = Org::new();
    let node = start(&org).await;
    let r = node
        .admin(&admin_request(&org.admin, join(&org.genesis)))
        .await;
    assert_status(&r, Code::Success, "join");
    let captured_remove = admin_request(&org.admin, remove());
    assert_status(&node.admin(&captured_remove).await, Code::Success, "remove");
    let r = node
        .admin(&admin_request(&org.admin, join(&org.genesis)))
        .await;
    assert_status(&r, Code::Success, "rejoin");
    node.stop().await;

    // The restarted node remembers nothing, so it refuses what was signed before it
    // started: still inside the window, but possibly executed by the previous run.
    let node = start(&org).await;
    let r = node.admin(&captured_remove).await;
    assert_status(&r, Code::Forbidden, "the captured remove after a restart");
    assert!(r.info.contains("before this node started"), "{}", r.info);
    assert_eq!(node.channels(&org.admin).await, vec![CHANNEL.to_string()]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_stamped_outside_the_window_are_forbidden() {
    let org = Org::new();
    let node = start(&org).await;
    for t in stale_timestamps() {
        let r = node
            .admin(&admin_request_at(&org.admin, join(&org.genesis), t))
            .await;
        assert_status(&r, Code::Forbidden, &format!("join stamped {t}"));
        assert!(r.info.contains("this node's clock"), "{}", r.info);
    }
    assert!(node.channels(&org.admin).await.is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_requests_stamped_outside_the_window_are_forbidden() {
    let org = Org::new();
    let node = start(&org).await;
    let r = node
        .admin(&admin_request(&org.admin, join(&org.genesis)))
        .await;
    assert_status(&r, Code::Success, "join");

    for t in stale_timestamps() {
        let (blocks, code, info) = node.deliver(&seek_block_0(&org.client, t)).await;
        assert!(blocks.is_empty(), "stamped {t}: blocks were sent");
        assert_eq!(code, Code::Forbidden as i32, "stamped {t}: {info}");
        assert!(info.contains("this node's clock"), "{info}");
    }

    // A fresh request streams, and so does its copy: reads are not remembered.
    let fresh = seek_block_0(&org.client, ordo_proto::now_ms());
    for _ in 0..2 {
        let (blocks, code, info) = node.deliver(&fresh).await;
        assert_eq!(code, Code::Success as i32, "{info}");
        assert_eq!(blocks.len(), 1);
    }
    node.stop().await;
}
