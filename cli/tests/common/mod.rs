//! Test harness: real `ordo` processes on 127.0.0.1, real gRPC clients.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ordo_testkit::process::NodeProc;
use std::time::Duration;

use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::{admin_command, JoinChannel, ListChannels};
use ordo_proto::pb::common::{Block, Envelope, HeaderType};
use ordo_proto::pb::orderer::{BroadcastResponse, SeekBehavior, SeekPosition};
use ordo_sdk::transport::Transport;
use prost::Message;
use tokio_stream::StreamExt;

pub mod kafka;
pub mod raft;

/// How the harness reaches each node address: plaintext unless a TLS network registered
/// its nodes ([`start_up_with`] does, from the `network.json` it wrote). Addresses are
/// unique per test (free ports), so tests running side by side do not see each other's.
static TRANSPORTS: std::sync::Mutex<Option<std::collections::HashMap<String, Transport>>> =
    std::sync::Mutex::new(None);

/// Registers `transport` for `addr`.
pub fn set_transport(addr: &str, transport: Transport) {
    let mut map = TRANSPORTS.lock().unwrap_or_else(|p| p.into_inner());
    map.get_or_insert_with(Default::default)
        .insert(addr.to_string(), transport);
}

/// The transport registered for `addr` (plaintext when none).
pub fn transport_for(addr: &str) -> Transport {
    TRANSPORTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(addr).cloned())
        .unwrap_or_default()
}

/// Connects to `addr` the way the harness reaches it (see [`transport_for`]).
pub async fn connect(addr: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    ordo_sdk::orderer::connect(addr, &transport_for(addr)).await
}

/// Registers every node of the network in `dir` with the first org's client transport.
pub fn register_network(dir: &str) {
    let net = ordo_sdk::network::Network::load(&Path::new(dir).join("network.json"))
        .expect("network.json");
    let transport = net.transport(None, "client").expect("client transport");
    for n in &net.nodes {
        set_transport(&n.grpc_addr, transport.clone());
    }
}

/// The `ordo` binary under test.
pub fn ordo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
}

/// Runs `ordo args...`, asserting success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = ordo().args(args).output().expect("ordo runs");
    assert!(
        out.status.success(),
        "ordo {} failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ordo args...`; returns (success, stdout, stderr).
pub fn run(args: &[&str]) -> (bool, String, String) {
    let out = ordo().args(args).output().expect("ordo runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use ordo_testkit::process::{free_port, free_ports, signal};

/// A consortium's crypto material in a temporary directory.
pub struct Consortium {
    pub dir: tempfile::TempDir,
}

impl Consortium {
    pub fn new(orgs: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let crypto = dir.path().join("crypto");
        run_ok(&[
            "crypto",
            "init",
            "--orgs",
            orgs,
            "--out",
            crypto.to_str().expect("utf8"),
        ]);
        Self { dir }
    }

    pub fn crypto(&self) -> PathBuf {
        self.dir.path().join("crypto")
    }

    pub fn identity(&self, org: &str, member: &str) -> Identity {
        let d = self.crypto().join(org);
        Identity::load(
            &d.join(format!("{member}.key")),
            &d.join(format!("{member}.cert")),
        )
        .expect("identity loads")
    }

    /// The TLS files of `org`'s `member` (made by `ordo crypto init|issue`), trusting every
    /// org's TLS CA.
    pub fn tls_files(&self, org: &str, member: &str) -> ordo_sdk::tls::TlsFiles {
        let d = self.crypto().join(org);
        let mut ca: Vec<PathBuf> = std::fs::read_dir(self.crypto())
            .expect("crypto dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("tls").join("ca.crt"))
            .filter(|p| p.exists())
            .collect();
        ca.sort();
        ordo_sdk::tls::TlsFiles {
            cert: d.join(format!("{member}.tls.crt")),
            key: d.join(format!("{member}.tls.key")),
            ca,
        }
    }

    /// The `[tls]` config section of a node running as `org`'s `member`.
    pub fn tls_toml(&self, org: &str, member: &str) -> String {
        ordo_testkit::node_config::tls_section(&self.tls_files(org, member))
    }

    /// A mutual-TLS client transport as `org`'s `member`.
    pub fn tls_transport(&self, org: &str, member: &str) -> Transport {
        Transport::Tls(
            ordo_sdk::tls::ClientTls::from_files(&self.tls_files(org, member))
                .expect("client TLS files"),
        )
    }

    pub fn ca_key(&self, org: &str) -> ed25519_dalek::SigningKey {
        ordo_proto::identity::load_signing_key(&self.crypto().join(org).join("ca.key"))
            .expect("ca key")
    }

    /// Writes a genesis block with `ordo channel genesis` and returns its path.
    pub fn genesis(&self, channel: &str, extra: &[&str]) -> PathBuf {
        let out = self.dir.path().join(format!("{channel}.block"));
        let crypto = self.crypto();
        let mut args = vec![
            "channel",
            "genesis",
            "--crypto",
            crypto.to_str().expect("utf8"),
            "--channel",
            channel,
            "--out",
            out.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        run_ok(&args);
        out
    }
}

/// A running `ordo orderer` or `ordo peer` process with its config, log and addresses.
pub struct NodeProcess {
    pub addr: String,
    pub ops: String,
    pub config: PathBuf,
    pub log: PathBuf,
    /// "orderer" or "peer": the subcommand.
    kind: &'static str,
    /// The process, started and signalled by the test kit.
    proc: NodeProc,
}

/// An orderer process.
pub type OrdererProcess = NodeProcess;
/// A peer process.
pub type PeerProcess = NodeProcess;

impl NodeProcess {
    /// Writes an orderer config under the consortium dir using `org`'s orderer identity
    /// and starts the node.
    pub fn start(c: &Consortium, name: &str, org: &str) -> Self {
        Self::start_with(c, name, org, "")
    }

    /// [`NodeProcess::start`] with extra TOML sections appended to the config.
    pub fn start_with(c: &Consortium, name: &str, org: &str, extra_toml: &str) -> Self {
        Self::start_as(c, name, org, "orderer", extra_toml)
    }

    /// An orderer running with `org`'s identity `member` (e.g. one made by
    /// `ordo crypto issue`).
    pub fn start_as(c: &Consortium, name: &str, org: &str, member: &str, extra_toml: &str) -> Self {
        let id_dir = c.crypto().join(org);
        let identity = format!(
            "[identity]\nkey_file = \"{}\"\ncert_file = \"{}\"\n[log]\nfilter = \"info\"\n{extra_toml}\n",
            id_dir.join(format!("{member}.key")).display(),
            id_dir.join(format!("{member}.cert")).display()
        );
        Self::launch(c, name, "orderer", &identity)
    }

    /// An orderer running as `org`'s `member` over mutual TLS (its own TLS key pair,
    /// trusting every org's TLS CA); the harness reaches it as `org`'s admin.
    pub fn start_tls(
        c: &Consortium,
        name: &str,
        org: &str,
        member: &str,
        extra_toml: &str,
    ) -> Self {
        let sections = format!("{}{extra_toml}", c.tls_toml(org, member));
        let p = Self::start_as(c, name, org, member, &sections);
        set_transport(&p.addr, c.tls_transport(org, "admin"));
        p
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.config.parent().expect("node dir").join("data")
    }

    /// Writes a peer config using `org`'s peer identity, with the given static orderer
    /// endpoints, and starts the node.
    pub fn start_peer(c: &Consortium, name: &str, org: &str, orderers: &[&str]) -> Self {
        Self::start_peer_at(c, name, org, orderers, None, "")
    }

    /// [`NodeProcess::start_peer`] listening on `addr` (when given, so that other peers'
    /// configs can name it beforehand) with extra TOML sections.
    pub fn start_peer_at(
        c: &Consortium,
        name: &str,
        org: &str,
        orderers: &[&str],
        addr: Option<String>,
        extra_toml: &str,
    ) -> Self {
        let id_dir = c.crypto().join(org);
        let endpoints: Vec<String> = orderers.iter().map(|e| format!("\"{e}\"")).collect();
        let identity = format!(
            "[identity]\nkey_file = \"{}\"\ncert_file = \"{}\"\n[deliver]\norderer_endpoints = [{}]\nbackoff_max_ms = 500\n{extra_toml}\n",
            id_dir.join("peer.key").display(),
            id_dir.join("peer.cert").display(),
            endpoints.join(", ")
        );
        Self::launch_at(c, name, "peer", &identity, addr)
    }

    fn launch(c: &Consortium, name: &str, kind: &'static str, sections: &str) -> Self {
        Self::launch_at(c, name, kind, sections, None)
    }

    fn launch_at(
        c: &Consortium,
        name: &str,
        kind: &'static str,
        sections: &str,
        addr: Option<String>,
    ) -> Self {
        let node_dir = c.dir.path().join(name);
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let addr = addr.unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let ops = format!("127.0.0.1:{}", free_port());
        let config = node_dir.join(format!("{kind}.toml"));
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"{name}\"\nlisten_addr = \"{addr}\"\nops_listen_addr = \"{ops}\"\ndata_dir = \"data\"\n{sections}"
            ),
        )
        .expect("config written");
        let log = node_dir.join(format!("{kind}.log"));
        let mut proc = NodeProc::new(name, kind, config.clone(), log.clone());
        proc.bin = Some(PathBuf::from(env!("CARGO_BIN_EXE_ordo")));
        let mut p = Self {
            addr,
            ops,
            config,
            log,
            kind,
            proc,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        self.proc.start().expect("node starts");
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// Waits until the Admin service answers (or panics with the log).
    pub async fn wait_ready(&mut self, admin: &Identity) {
        for _ in 0..300 {
            if let Some(status) = self.proc.reap_if_exited() {
                panic!("{} exited ({status}):\n{}", self.kind, self.log_text());
            }
            if let Ok(ch) = connect(&self.addr).await {
                let mut client = ordo_sdk::orderer::admin_client(ch);
                let req = ordo_sdk::orderer::admin_request(
                    admin,
                    "",
                    admin_command::Command::List(ListChannels {}),
                );
                if client.execute(req).await.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} not ready:\n{}", self.kind, self.log_text());
    }

    /// Starts the node and waits (at most 30 s) for it to exit, as a node that refuses to
    /// start must; its exit status.
    pub async fn start_expecting_exit(&mut self) -> std::process::ExitStatus {
        self.spawn();
        for _ in 0..300 {
            if let Some(status) = self.proc.reap_if_exited() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} kept running:\n{}", self.kind, self.log_text());
    }

    /// SIGTERM and wait: a graceful stop, which must exit 0.
    pub fn stop(&mut self) {
        if let Some(status) = self.proc.stop_status() {
            assert!(
                status.success(),
                "{} exit status {status}:\n{}",
                self.kind,
                self.log_text()
            );
        }
    }

    /// SIGKILL and wait: a crash.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Starts the same node again (same config, data and log).
    pub async fn restart(&mut self, admin: &Identity) {
        self.spawn();
        self.wait_ready(admin).await;
    }
}

/// Joins `addr` to the channel of `genesis` with the Admin service.
pub async fn join(addr: &str, admin: &Identity, genesis: &Path) {
    let bytes = std::fs::read(genesis).expect("genesis file");
    let (code, info) = join_block(addr, admin, bytes).await;
    assert_eq!(code, tonic::Code::Ok, "join failed: {info}");
}

/// Issues `org` an orderer identity of its own, `name` (`ordo crypto issue`), for an
/// orderer started with [`NodeProcess::start_as`] or [`NodeProcess::start_tls`].
pub fn issue_orderer(c: &Consortium, org: &str, name: &str) {
    let crypto = c.crypto();
    run_ok(&[
        "crypto",
        "issue",
        "--crypto",
        crypto.to_str().expect("utf8"),
        "--org",
        org,
        "--name",
        name,
        "--role",
        "orderer",
    ]);
}

/// Asks `addr` to join the channel of the encoded `block`; returns the call's gRPC code
/// and message.
pub async fn join_block(addr: &str, admin: &Identity, block: Vec<u8>) -> (tonic::Code, String) {
    let ch = connect(addr).await.expect("connect");
    let mut client = ordo_sdk::orderer::admin_client(ch);
    let req = ordo_sdk::orderer::admin_request(
        admin,
        "",
        admin_command::Command::Join(JoinChannel {
            genesis_block: block.into(),
        }),
    );
    match client.execute(req).await {
        Ok(_) => (tonic::Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

#[allow(unused_imports)]
pub use ordo_testkit::envelopes::message;

/// Broadcasts `envs` over one stream; returns the responses in order.
pub async fn broadcast(addr: &str, envs: Vec<Envelope>) -> Vec<BroadcastResponse> {
    let ch = connect(addr).await.expect("connect");
    let mut client = ordo_sdk::orderer::broadcast_client(ch);
    let n = envs.len();
    let mut stream = client
        .broadcast(tokio_stream::iter(envs))
        .await
        .expect("broadcast stream opens")
        .into_inner();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match stream.next().await {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => panic!("broadcast stream error after {} responses: {e}", out.len()),
            None => panic!(
                "broadcast stream ended after {} of {n} responses",
                out.len()
            ),
        }
    }
    out
}

/// The result of a Deliver request: the blocks, and the gRPC code the stream ended with
/// (OK after the stop block) with its message.
pub struct Delivered {
    pub blocks: Vec<Block>,
    pub code: tonic::Code,
    pub info: String,
}

pub async fn deliver(
    addr: &str,
    id: &Identity,
    channel: &str,
    start: SeekPosition,
    stop: Option<SeekPosition>,
    behavior: SeekBehavior,
) -> Delivered {
    let req = ordo_sdk::orderer::seek_request(id, channel, start, stop, behavior);
    deliver_raw(addr, req).await
}

pub async fn deliver_raw(addr: &str, req: Envelope) -> Delivered {
    let ch = connect(addr).await.expect("connect");
    let mut client = ordo_sdk::orderer::broadcast_client(ch);
    let mut blocks = Vec::new();
    let mut stream = match client.deliver(req).await {
        Ok(stream) => stream.into_inner(),
        Err(s) => {
            return Delivered {
                blocks,
                code: s.code(),
                info: s.message().to_string(),
            }
        }
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(resp) => blocks.push(resp.block.expect("a deliver response holds a block")),
            Err(s) => {
                return Delivered {
                    blocks,
                    code: s.code(),
                    info: s.message().to_string(),
                }
            }
        }
    }
    Delivered {
        blocks,
        code: tonic::Code::Ok,
        info: String::new(),
    }
}

#[allow(unused_imports)]
pub use ordo_testkit::blocks::tx_ids as block_tx_ids;

/// A gateway contract for `chaincode` on `channel` through the peer of `org` in an
/// `ordo up` network, as that org's client.
pub async fn org_contract(
    net: &ordo_sdk::network::Network,
    org: &str,
    channel: &str,
    chaincode: &str,
) -> ordo_sdk::gateway::Contract {
    let peer = net
        .nodes_with_role("peer")
        .find(|p| p.org == org)
        .expect("peer of org");
    let member = net.member(Some(org), "client").expect("client");
    ordo_sdk::gateway::Contract::connect(
        &peer.grpc_addr,
        &member.transport,
        member.identity,
        channel,
        chaincode,
    )
    .await
    .expect("gateway reachable")
}

/// A signed query to a peer's Query service on `channel`; panics on a refusal.
pub async fn peer_query(
    addr: &str,
    id: &Identity,
    channel: &str,
    q: ordo_proto::pb::query::query_request::Query,
) -> ordo_proto::pb::query::QueryResponse {
    try_peer_query(addr, id, channel, q)
        .await
        .unwrap_or_else(|s| panic!("query refused: {s:?}"))
}

/// [`peer_query`], with a refusal returned as its gRPC status.
pub async fn try_peer_query(
    addr: &str,
    id: &Identity,
    channel: &str,
    q: ordo_proto::pb::query::query_request::Query,
) -> Result<ordo_proto::pb::query::QueryResponse, tonic::Status> {
    let ch = connect(addr).await.expect("connect");
    let mut client = ordo_proto::pb::query::query_client::QueryClient::new(ch);
    let req = ordo_proto::pb::query::QueryRequest { query: Some(q) };
    let env = ordo_proto::envelope::create_signed(
        id,
        channel,
        HeaderType::Message,
        req.encode_to_vec().into(),
        ordo_proto::now_ms(),
    )
    .0;
    client.query(env).await.map(tonic::Response::into_inner)
}

/// Writes the genesis block of `channel` (made by `ordo channel create` with `extra`
/// arguments) with the built-in `bank` chaincode, endorsed by any one peer of `org`;
/// returns its path.
pub fn genesis_with_bank(c: &Consortium, channel: &str, org: &str, extra: &[&str]) -> PathBuf {
    use ordo_proto::pb::common::{ChaincodeDefinition, Role};
    let path = c.genesis(channel, extra);
    let block = Block::decode(std::fs::read(&path).expect("read").as_slice()).expect("block");
    let mut cfg = ordo_proto::config::config_from_block(&block).expect("config");
    cfg.chaincodes.push(ChaincodeDefinition {
        name: "bank".into(),
        version: "1".into(),
        endorsement_policy: Some(ordo_proto::policy::build::n_out_of(1, &[(org, Role::Peer)])),
        runtime: "builtin:bank".into(),
        sequence: 1,
        retired: false,
    });
    let genesis = ordo_proto::config::genesis_block(&cfg, 0).expect("genesis");
    std::fs::write(&path, genesis.encode_to_vec()).expect("write");
    path
}

/// `ordo channel info` of a node as JSON.
pub async fn channel_info(
    addr: &str,
    id: &Identity,
    channel: &str,
) -> ordo_proto::pb::admin::ChannelInfo {
    let ch = connect(addr).await.expect("connect");
    let mut client = ordo_sdk::orderer::admin_client(ch);
    let req = ordo_sdk::orderer::admin_request(
        id,
        channel,
        admin_command::Command::Info(ordo_proto::pb::admin::GetChannelInfo {
            channel_id: channel.into(),
        }),
    );
    let resp = client
        .execute(req)
        .await
        .expect("channel info answered")
        .into_inner();
    resp.channel.expect("channel info")
}

/// A plain HTTP GET; returns (status code, whole response text).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("ops port open");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// GETs `path` until it answers `code` (readiness is re-evaluated in the background), for
/// at most 10 s; the last answer.
pub fn http_get_until(addr: &str, path: &str, code: u16) -> (u16, String) {
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = http_get(addr, path);
        if last.0 == code {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

/// Starts `ordo up` in `dir` with the given base ports and waits for its "press Ctrl-C"
/// line; returns the process and everything it printed until then.
pub fn start_up(dir: &str, port: u16, ops: u16) -> (Child, String) {
    start_up_with(dir, port, ops, &[])
}

/// A default `ordo up` network (solo, three banks) in a fresh temporary directory: the
/// directory (removed when dropped), the network file, and the running network.
pub fn up_in_temp_dir() -> (tempfile::TempDir, PathBuf, Up) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let base = free_ports(8);
    let (child, _) = start_up(dir.to_str().expect("utf8"), base, base + 4);
    (tmp, dir.join("network.json"), Up(Some(child)))
}

/// [`start_up`] with more `ordo up` arguments.
pub fn start_up_with(dir: &str, port: u16, ops: u16, extra: &[&str]) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let port = port.to_string();
    let ops = ops.to_string();
    let mut args = vec![
        "up",
        "--dir",
        dir,
        "--port",
        &port,
        "--ops-port",
        &ops,
        "--batch-timeout-ms",
        "50",
    ];
    args.extend_from_slice(extra);
    let mut child = ordo()
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ordo up starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("press Ctrl-C") {
                    register_network(dir);
                    break;
                }
            }
            _ => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let _ = child.kill();
                let _ = child.wait();
                panic!("ordo up ended before it was ready:\n{seen}\n{err}");
            }
        }
    }
    (child, seen)
}

/// A running `ordo up`, interrupted (SIGINT, like Ctrl-C) when stopped or dropped, so a
/// failed assertion does not leave the network running.
pub struct Up(pub Option<Child>);

impl Up {
    /// SIGINT and wait; the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        signal(child.id(), libc::SIGINT);
        child.wait().ok()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends each of `frames` as one gRPC message of a Broadcast stream, whatever its bytes;
/// the answers, and the error the stream ended with, if any.
pub async fn raw_broadcast(
    addr: &str,
    frames: Vec<Vec<u8>>,
) -> (Vec<BroadcastResponse>, Option<tonic::Status>) {
    let mut grpc = tonic::client::Grpc::new(connect(addr).await.expect("connect"));
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/ordo.orderer.AtomicBroadcast/Broadcast",
    );
    let outbound = tokio_stream::iter(frames.into_iter().map(bytes::Bytes::from));
    let mut answers = Vec::new();
    let codec = RawCodec::<BroadcastResponse>::default();
    let mut inbound = match grpc
        .streaming(tonic::Request::new(outbound), path, codec)
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return (answers, Some(status)),
    };
    loop {
        match inbound.message().await {
            Ok(Some(a)) => answers.push(a),
            Ok(None) => return (answers, None),
            Err(status) => return (answers, Some(status)),
        }
    }
}

/// Calls the unary method `path` (e.g. `/ordo.query.Query/Query`) of `addr` with `bytes`
/// as the request message, whatever they are; the status it answered.
pub async fn raw_unary(addr: &str, path: &'static str, bytes: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(connect(addr).await.expect("connect"));
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    // Whatever the method answers, an empty message decodes as one.
    let codec = RawCodec::<ordo_proto::pb::common::Envelope>::default();
    match grpc
        .unary(tonic::Request::new(bytes::Bytes::from(bytes)), path, codec)
        .await
    {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

/// Encodes messages as the raw bytes given; decodes `D`.
pub struct RawCodec<D>(std::marker::PhantomData<D>);

impl<D> Default for RawCodec<D> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<D: prost::Message + Default + Send + 'static> tonic::codec::Codec for RawCodec<D> {
    type Encode = bytes::Bytes;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = MessageDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder(std::marker::PhantomData)
    }
}

/// Decodes one `D` per message.
pub struct MessageDecoder<D>(std::marker::PhantomData<D>);

impl<D: prost::Message + Default> tonic::codec::Decoder for MessageDecoder<D> {
    type Item = D;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<D>, tonic::Status> {
        D::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// Writes the bytes as they are.
pub struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

/// A `bank` account's balance through `bank`'s gateway.
pub async fn bank_balance(bank: &ordo_sdk::gateway::Contract, who: &str) -> i64 {
    let raw = bank.evaluate("balance", [who]).await.expect("balance");
    String::from_utf8_lossy(&raw)
        .parse::<i64>()
        .expect("a balance is a number")
}

/// Waits (at most 20 s) until every peer of `peers` (address, an admin of its org) has
/// the same height and commit hash on `channel`.
pub async fn wait_peers_agree(peers: &[(String, Identity)], channel: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen = Vec::new();
        for (addr, admin) in peers {
            let info = channel_info(addr, admin, channel).await;
            seen.push((info.height, hex::encode(&info.commit_hash)));
        }
        if seen.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "peers disagree (height, commit hash): {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `bank` write of `value` under the fresh `key` on `channel`, endorsed by `endorser`
/// (a channel from [`genesis_with_bank`] needs one peer of its org).
pub fn bank_set_tx(
    client: &Identity,
    endorser: &Identity,
    channel: &str,
    key: &str,
    value: bytes::Bytes,
) -> Envelope {
    use ordo_sdk::tx::{self, Proposal, RwSetBuilder};
    let p = Proposal::new(
        client,
        channel,
        tx::invocation(
            "bank",
            "set",
            vec![bytes::Bytes::copy_from_slice(key.as_bytes())],
        ),
    );
    let mut rw = RwSetBuilder::new();
    rw.write("bank", key, value);
    tx::endorse_known(client, &p, "1", rw.build(), [endorser]).expect("assemble")
}

/// Waits (up to 30 s) until the node at `addr` reports at least `height` blocks of
/// `channel`; its channel info then.
pub async fn wait_for_channel_height(
    addr: &str,
    id: &Identity,
    channel: &str,
    height: u64,
) -> ordo_proto::pb::admin::ChannelInfo {
    for _ in 0..600 {
        let info = channel_info(addr, id, channel).await;
        if info.height >= height {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node at {addr} did not reach height {height} of {channel}");
}

/// Runs `ordo` off the runtime's threads; returns (success, stdout, stderr).
pub async fn ordo_async(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs)
    })
    .await
    .expect("ordo ran")
}

/// A path as a command-line argument.
pub fn path_arg(p: &Path) -> String {
    p.to_str().expect("utf8").to_string()
}

/// An orderer of `org` serving `channel` with the built-in `bank` chaincode
/// ([`genesis_with_bank`]), `committed` acks and blocks of at most 10 envelopes or 20 ms;
/// the process and the genesis block's path.
pub async fn orderer_with_bank_channel(
    c: &Consortium,
    channel: &str,
    org: &str,
) -> (OrdererProcess, PathBuf) {
    let admin = c.identity(org, "admin");
    let mut o = OrdererProcess::start(c, "orderer0", org);
    o.wait_ready(&admin).await;
    let path = genesis_with_bank(
        c,
        channel,
        org,
        &[
            "--orderer-endpoints",
            &o.addr,
            "--batch-timeout-ms",
            "20",
            "--max-message-count",
            "10",
            "--ack-mode",
            "committed",
        ],
    );
    join(&o.addr, &admin, &path).await;
    (o, path)
}

/// A peer `name` of `org` started, ready, and joined to the channel of `genesis`.
pub async fn joined_peer(c: &Consortium, name: &str, org: &str, genesis: &Path) -> PeerProcess {
    let admin = c.identity(org, "admin");
    let mut peer = PeerProcess::start_peer(c, name, org, &[]);
    peer.wait_ready(&admin).await;
    join(&peer.addr, &admin, genesis).await;
    peer
}

/// Batches of ten fresh-key `bank` writes broadcast to one orderer, one batch after the
/// other, each required to be accepted, until [`BankLoad::stop`].
pub struct BankLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl BankLoad {
    /// Starts the load on `channel` at the orderer `addr`, signed by `client` and
    /// endorsed by `endorser`, each write's value `value`.
    pub fn start(
        addr: &str,
        client: Identity,
        endorser: Identity,
        channel: &str,
        value: bytes::Bytes,
    ) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (addr, channel) = (addr.to_string(), channel.to_string());
        let task = {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let envs = (0..10)
                        .map(|i| {
                            let key = format!("k{round}-{i}");
                            bank_set_tx(&client, &endorser, &channel, &key, value.clone())
                        })
                        .collect();
                    let resps = broadcast(&addr, envs).await;
                    assert!(
                        resps
                            .iter()
                            .all(|r| r.status == ordo_proto::pb::common::Status::Success as i32),
                        "{resps:?}"
                    );
                    acked.fetch_add(10, Ordering::Relaxed);
                    round += 1;
                }
            })
        };
        Self { stop, acked, task }
    }

    /// [`BankLoad::start`] by `org`'s client, endorsed by its peer, each value `100`.
    pub fn of_org(c: &Consortium, org: &str, addr: &str, channel: &str) -> Self {
        Self::start(
            addr,
            c.identity(org, "client"),
            c.identity(org, "peer"),
            channel,
            bytes::Bytes::from_static(b"100"),
        )
    }

    /// Transactions acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the load after its current batch; panics if a batch was refused.
    pub async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("load task");
    }
}
