//! An orderer in this process for the orderer's service tests: `ordo_orderer::run` on
//! 127.0.0.1 listeners ([`start`]) or on in-process pipes ([`start_in_process`], for tests
//! under a paused clock) with its ledgers in a temporary directory, one org's identities,
//! and the Admin and Deliver calls the tests make.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use ordo_node::{GrpcListener, MemoryConnector};
use ordo_orderer::OrdererConfig;
use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::admin_client::AdminClient;
use ordo_proto::pb::admin::AdminResponse;
use ordo_proto::pb::common::{AckMode, Block, Envelope, Role};
use ordo_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo_proto::policy::build as policy;
use ordo_testkit::answer::Answer;
use ordo_testkit::org::consenter_entry;
use ordo_testkit::{ChannelBuilder, TestOrg};

/// Bound on any single wait of a test.
pub const WAIT: Duration = Duration::from_secs(60);

/// One org (CA "A") with an orderer, an admin and a client, a solo channel's genesis
/// block, and a directory for the node's files.
pub struct Org {
    pub dir: tempfile::TempDir,
    pub orderer: Identity,
    pub admin: Identity,
    pub client: Identity,
    pub genesis: Block,
    /// More TOML for the node's config (e.g. a `[limits]` section).
    pub extra_toml: String,
}

impl Org {
    /// A solo channel `channel` with `enqueued` acks.
    pub fn new(channel: &str) -> Self {
        Self::with_channel(channel, |b| b)
    }

    /// A solo channel `channel` with `enqueued` acks, as `configure` changes it.
    pub fn with_channel(
        channel: &str,
        configure: impl FnOnce(ChannelBuilder) -> ChannelBuilder,
    ) -> Self {
        let org = TestOrg::new("A");
        let orderer = org.member(Role::Orderer, "orderer");
        let builder = ChannelBuilder::new(channel)
            .org(&org)
            .consenters(vec![consenter_entry(&orderer, "orderer0", "127.0.0.1:1")])
            .ack(AckMode::Enqueued)
            .admins(policy::any_member(&[], &[Role::Admin]));
        let genesis = configure(builder).genesis(ordo_proto::now_ms());
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            admin: org.member(Role::Admin, "admin"),
            client: org.member(Role::Client, "client"),
            orderer,
            genesis,
            extra_toml: String::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// An orderer node running in this process.
pub struct Node {
    /// Its gRPC address (`in-process` for a node on pipes).
    pub addr: String,
    /// The ops server (metrics, health).
    pub ops: String,
    /// Opens connections to a node on pipes.
    pipes: Option<MemoryConnector>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ordo_orderer::OrdererError>>,
}

pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// Starts the org's orderer with its data in the org's directory (a restart finds the
/// ledgers of the previous run).
pub async fn start(org: &Org) -> Node {
    let grpc = bind().await;
    let addr = grpc.local_addr().expect("local addr").to_string();
    launch(org, grpc.into(), &addr, None).await
}

/// Starts the org's orderer serving gRPC over in-process pipes: every byte a test and the
/// node exchange moves inside the runtime, so a test can run under `tokio::time::pause`
/// (on the current-thread runtime, where the node's blocking writes hold the clock) and
/// assert the virtual time at which the node answers.
pub async fn start_in_process(org: &Org) -> Node {
    let (connector, listener) = ordo_node::memory_listener();
    // The config names an address; the node serves the pipes instead.
    launch(org, listener.into(), "127.0.0.1:1", Some(connector)).await
}

async fn launch(
    org: &Org,
    grpc: GrpcListener,
    listen_addr: &str,
    pipes: Option<MemoryConnector>,
) -> Node {
    let ops = bind().await;
    let (key_file, cert_file) = (
        org.dir.path().join("orderer.key"),
        org.dir.path().join("orderer.cert"),
    );
    org.orderer
        .save(&key_file, &cert_file)
        .expect("identity saved");
    let ops_addr = ops.local_addr().expect("ops addr");
    let text = format!(
        "[node]\nlisten_addr = \"{listen_addr}\"\nops_listen_addr = \"{}\"\ndata_dir = \"{}\"\n\
         [identity]\nkey_file = \"{}\"\ncert_file = \"{}\"\n{}\n",
        ops_addr,
        org.data_dir().display(),
        key_file.display(),
        cert_file.display(),
        org.extra_toml,
    );
    let config =
        OrdererConfig::parse(&text, &[], org.dir.path(), "test config").expect("config parses");
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(ordo_orderer::run(config, grpc, ops, async move {
        token.cancelled().await
    }));
    let node = Node {
        addr: if pipes.is_some() {
            "in-process".into()
        } else {
            listen_addr.to_string()
        },
        ops: ops_addr.to_string(),
        pipes,
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
    pub async fn channel(&self) -> Channel {
        if let Some(pipes) = &self.pipes {
            return tokio::time::timeout(WAIT, pipes.channel())
                .await
                .expect("connect in time")
                .expect("connect");
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr)).expect("endpoint");
        tokio::time::timeout(WAIT, endpoint.connect())
            .await
            .expect("connect in time")
            .expect("connect")
    }

    /// Sends one Admin request as it is (the same bytes every time).
    pub async fn admin(&self, request: &Envelope) -> Answer<AdminResponse> {
        let mut client = AdminClient::new(self.channel().await);
        Answer::of(
            tokio::time::timeout(WAIT, client.execute(request.clone()))
                .await
                .expect("admin answers in time"),
        )
    }

    /// The channels the node serves, asked by `admin`.
    pub async fn channels(&self, admin: &Identity) -> Vec<String> {
        let r = self.admin(&admin_request(admin, list())).await;
        r.expect_ok("list")
            .list
            .expect("a list")
            .channels
            .into_iter()
            .map(|c| c.channel_id)
            .collect()
    }

    /// Sends one Deliver request; the blocks and the stream's gRPC code with its message.
    pub async fn deliver(&self, request: &Envelope) -> (Vec<Block>, tonic::Code, String) {
        let mut client = AtomicBroadcastClient::new(self.channel().await);
        let mut stream = match tokio::time::timeout(WAIT, client.deliver(request.clone()))
            .await
            .expect("deliver opens in time")
        {
            Ok(stream) => stream.into_inner(),
            Err(s) => return (Vec::new(), s.code(), s.message().to_string()),
        };
        let mut blocks = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT, stream.message())
                .await
                .expect("deliver answers in time");
            match next {
                Ok(Some(resp)) => blocks.push(resp.block.expect("a block")),
                Ok(None) => return (blocks, tonic::Code::Ok, String::new()),
                Err(s) => return (blocks, s.code(), s.message().to_string()),
            }
        }
    }

    /// The value of the sample `series` (name and labels, as the exposition writes it) on
    /// the node's `/metrics`; `None` when there is no such sample.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(&self.ops))
            .await
            .expect("ops connects in time")
            .expect("ops connects");
        conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .expect("request sent");
        let mut text = String::new();
        tokio::time::timeout(WAIT, conn.read_to_string(&mut text))
            .await
            .expect("metrics in time")
            .expect("metrics read");
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("orderer stops in time")
            .expect("orderer task")
            .expect("orderer stops cleanly");
    }
}

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use ordo_testkit::admin::{
    join, list, request as admin_request, request_at as admin_request_at,
};
