//! A network under test: a consortium's keys, one channel, orderer processes (solo, raft
//! behind fault proxies, or kafka on librdkafka's mock cluster in this process) and,
//! when asked, peer processes that follow the orderers.
//!
//! Every link runs over mutual TLS, as a production network does: each node's config has a
//! `[tls]` section with its own member's TLS key pair and every org's TLS CA, and every
//! client of the harness (load, observers, admin calls, the lying orderer) connects with a
//! TLS transport presenting a certificate of its org. The fault proxies work on TCP, so the
//! TLS records pass through them untouched. Certificates are issued for [`TLS_HOSTS`]:
//! every address anything dials here — a node's listener, a proxy, the lying orderer — is
//! on 127.0.0.1; the 127.0.0.x addresses the raft consenters' connections leave from
//! ([`source_ip`]) are client-side addresses, which no certificate needs to name.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use thiserror::Error;

use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::{admin_command, AdminResponse, GetChannelInfo, JoinChannel};
use ordo_sdk::tls::{ClientTls, TlsFiles};
use ordo_sdk::transport::Transport;

use crate::proc::{free_ports, run_ordo, NodeProc, ProcError};
use crate::proxy::{Links, Proxy};

mod ops;

/// The organisations of every test network; orderer `i` and peer `i` belong to org `i`.
pub const ORGS: [&str; 3] = ["BankA", "BankB", "BankC"];
/// The channel every scenario runs on.
pub const CHANNEL: &str = "chaos";
/// The subject alternative names of every TLS certificate of a test network: every
/// listener and proxy is on 127.0.0.1, and a client checks the name it dialled.
pub const TLS_HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];
/// The member whose TLS key pair the lying orderer ([`crate::evil`]) presents: a valid
/// certificate of BankA's TLS CA that is no consenter's, as a compromised or misconfigured
/// endpoint of a consortium member would have.
pub const LIAR_MEMBER: &str = "liar";

/// Why a network could not be built or driven.
#[derive(Debug, Error)]
pub enum NetError {
    /// A process problem.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// File system.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// An identity file.
    #[error("identity: {0}")]
    Identity(#[from] ordo_proto::identity::IdentityError),
    /// A TLS file.
    #[error("tls: {0}")]
    Tls(#[from] ordo_sdk::tls::TlsError),
    /// The Kafka mock cluster.
    #[error("kafka mock cluster: {0}")]
    Kafka(String),
    /// A node did not become ready or refused a command.
    #[error("{node}: {reason}")]
    Node {
        /// The node.
        node: String,
        /// What went wrong (with its log's tail).
        reason: String,
    },
}

/// The consensus backend of the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Backend {
    /// One orderer.
    Solo,
    /// Three orderers, one raft group, each behind a fault proxy.
    Raft,
    /// Three orderers on a three-broker mock Kafka cluster.
    Kafka,
}

impl Backend {
    /// The `--consensus` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Solo => "solo",
            Self::Raft => "raft",
            Self::Kafka => "kafka",
        }
    }

    /// Orderers in its network.
    pub fn orderers(self) -> usize {
        match self {
            Self::Solo => 1,
            Self::Raft | Self::Kafka => 3,
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct NetSpec {
    /// The backend.
    pub backend: Backend,
    /// Peers (0..=3), one per org.
    pub peers: usize,
    /// `committed` acks (otherwise `enqueued`).
    pub committed: bool,
    /// Batch timeout.
    pub batch_timeout_ms: u64,
    /// Most envelopes per block.
    pub max_message_count: u32,
    /// Raft snapshot interval (0: default).
    pub raft_snapshot_bytes: u64,
    /// Extra environment for every orderer process.
    pub orderer_env: Vec<(String, String)>,
    /// Extra environment for every peer process.
    pub peer_env: Vec<(String, String)>,
    /// Size of a tmpfs mounted on each orderer's data directory, so a scenario can fill
    /// the disk (None: the data lives in the temporary directory).
    pub orderer_disk_mb: Option<u64>,
    /// Give peer 0 a lying orderer ([`crate::evil`]) as its only endpoint besides the
    /// channel's (the proxies): when the proxies hold the peers' connections, it has
    /// nobody else to ask.
    pub lying_orderer: bool,
}

impl NetSpec {
    /// Defaults for `backend`: committed acks, small fast blocks, no peers.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            peers: 0,
            committed: true,
            batch_timeout_ms: 50,
            max_message_count: 50,
            raft_snapshot_bytes: 0,
            orderer_env: Vec::new(),
            peer_env: Vec::new(),
            orderer_disk_mb: None,
            lying_orderer: false,
        }
    }
}

/// A node of the network and how to reach it.
#[derive(Debug)]
pub struct Node {
    /// The process.
    pub proc: NodeProc,
    /// gRPC address (direct, not through a proxy).
    pub addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its org.
    pub org: &'static str,
    /// An admin of its org.
    pub admin: Identity,
    /// How that admin connects: mutual TLS with the admin's own TLS certificate.
    pub admin_transport: Transport,
}

/// A running network. Dropping it kills every process and unmounts what it mounted.
pub struct Net {
    /// What was built.
    pub spec: NetSpec,
    /// The orderers.
    pub orderers: Vec<Node>,
    /// The peers.
    pub peers: Vec<Node>,
    /// Link rules of the proxies in front of the orderers.
    pub links: Option<Links>,
    /// The mock Kafka cluster (kafka only).
    pub kafka: Option<MockCluster<'static, DefaultProducerContext>>,
    /// The client identity the load uses (BankA's client).
    pub client: Identity,
    /// How the load and the observers connect: mutual TLS as BankA's client. Its key pair
    /// can be reloaded after the client's certificate is renewed (see
    /// [`ClientTls::key_pair`]); every clone shares it.
    pub transport: Transport,
    /// Peer identities that endorse (one per org).
    pub endorsers: Vec<Identity>,
    /// The lying orderer peer 0 asks first, when the spec wants one.
    pub liar: Option<ordo_testkit::fake_orderer::FakeOrderer>,
    /// Held for the network's lifetime: dropping a proxy stops it.
    _proxies: Vec<Proxy>,
    mounts: Vec<PathBuf>,
    crypto: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in self.orderers.iter_mut().chain(self.peers.iter_mut()) {
            n.proc.kill();
        }
        for m in &self.mounts {
            let _ = std::process::Command::new("umount").arg(m).status();
        }
    }
}

/// The TLS files of `org`'s `member` in the crypto directory `crypto` (as `ordo crypto
/// init|issue|renew` write them), trusting every org's TLS CA: every node of a test network
/// must accept clients and nodes of every org.
pub fn tls_files(crypto: &Path, org: &str, member: &str) -> TlsFiles {
    let dir = crypto.join(org);
    TlsFiles {
        cert: dir.join(format!("{member}.tls.crt")),
        key: dir.join(format!("{member}.tls.key")),
        ca: ORGS
            .iter()
            .map(|o| crypto.join(o).join("tls").join("ca.crt"))
            .collect(),
    }
}

/// The `[tls]` section of a node config running as `org`'s `member`.
fn tls_section(crypto: &Path, org: &str, member: &str) -> String {
    ordo_testkit::node_config::tls_section(&tls_files(crypto, org, member))
}

/// A mutual-TLS client transport as `org`'s `member`.
pub fn tls_transport(crypto: &Path, org: &str, member: &str) -> Result<Transport, NetError> {
    Ok(Transport::Tls(ClientTls::from_files(&tls_files(
        crypto, org, member,
    ))?))
}

/// The loopback address node `i`'s cluster connections leave from.
pub fn source_ip(i: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, 10 + u8::try_from(i).unwrap_or(0)])
}

impl Net {
    /// Builds and starts the network, joins every node to the channel and waits until the
    /// channel is ready to order.
    pub async fn start(spec: NetSpec) -> Result<Self, NetError> {
        let dir = tempfile::tempdir()?;
        let crypto = dir.path().join("crypto");
        run_ordo(&[
            "crypto",
            "init",
            "--orgs",
            &ORGS.join(","),
            "--out",
            path_str(&crypto),
            "--hosts",
            &TLS_HOSTS.join(","),
        ])?;
        let load_id = |org: &str, member: &str| -> Result<Identity, NetError> {
            let d = crypto.join(org);
            Ok(Identity::load(
                &d.join(format!("{member}.key")),
                &d.join(format!("{member}.cert")),
            )?)
        };
        let n = spec.backend.orderers();
        let base = free_ports(u16::try_from(4 * n + 2 * spec.peers).unwrap_or(16));
        let port = |k: usize| base + u16::try_from(k).unwrap_or(0);
        let addrs: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", port(i))).collect();

        // Each orderer's endpoint in the channel config is its proxy: raft consenters
        // reach each other through them, peers reach every orderer through them.
        let mut proxies = Vec::new();
        let mut endpoints = Vec::new();
        let l = Links::new(&(0..n).map(source_ip).collect::<Vec<_>>());
        {
            for (i, addr) in addrs.iter().enumerate() {
                let listen: SocketAddr = format!("127.0.0.1:{}", port(2 * n + i))
                    .parse()
                    .map_err(|e| NetError::Kafka(format!("{e}")))?;
                let target: SocketAddr =
                    addr.parse().map_err(|e| NetError::Kafka(format!("{e}")))?;
                let p = Proxy::start(i, listen, target, l.clone()).await?;
                endpoints.push(p.listen.to_string());
                proxies.push(p);
            }
        }
        let links = Some(l);

        let mut kafka = None;
        let mut extra: Vec<String> = Vec::new();
        if spec.backend == Backend::Kafka {
            let mock: MockCluster<'static, DefaultProducerContext> =
                MockCluster::new(3).map_err(|e| NetError::Kafka(e.to_string()))?;
            mock.create_topic(CHANNEL, 1, 3)
                .map_err(|e| NetError::Kafka(e.to_string()))?;
            extra.push("--kafka-brokers".into());
            extra.push(mock.bootstrap_servers());
            extra.push("--kafka-topic".into());
            extra.push(CHANNEL.into());
            kafka = Some(mock);
        }
        if spec.backend == Backend::Raft {
            extra.extend(["--raft-tick-ms", "50", "--raft-election-tick", "10"].map(String::from));
            if spec.raft_snapshot_bytes > 0 {
                extra.push("--raft-snapshot-bytes".into());
                extra.push(spec.raft_snapshot_bytes.to_string());
            }
        }
        if spec.peers > 0 {
            extra.push("--chaincode".into());
            extra.push("bank:1".into());
        }
        let genesis = dir.path().join("genesis.block");
        let mut args: Vec<String> = [
            "channel",
            "genesis",
            "--crypto",
            path_str(&crypto),
            "--channel",
            CHANNEL,
            "--consensus",
            spec.backend.name(),
            "--orderer-endpoints",
            &endpoints.join(","),
            "--ack-mode",
            if spec.committed {
                "committed"
            } else {
                "enqueued"
            },
            "--batch-timeout-ms",
            &spec.batch_timeout_ms.to_string(),
            "--max-message-count",
            &spec.max_message_count.to_string(),
            "--out",
            path_str(&genesis),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra);
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ordo(&arg_refs)?;
        let genesis_bytes = std::fs::read(&genesis)?;

        let mut net = Self {
            spec: spec.clone(),
            orderers: Vec::new(),
            peers: Vec::new(),
            links,
            kafka,
            client: load_id(ORGS[0], "client")?,
            transport: tls_transport(&crypto, ORGS[0], "client")?,
            endorsers: ORGS
                .iter()
                .map(|o| load_id(o, "peer"))
                .collect::<Result<_, _>>()?,
            liar: None,
            _proxies: proxies,
            mounts: Vec::new(),
            crypto: crypto.clone(),
            dir,
        };

        for (i, addr) in addrs.iter().enumerate() {
            let org = ORGS[i % ORGS.len()];
            let name = format!("orderer{i}");
            let node_dir = net.dir.path().join(&name);
            let data_dir = node_dir.join("data");
            std::fs::create_dir_all(&data_dir)?;
            if let Some(mb) = spec.orderer_disk_mb {
                mount_tmpfs(&data_dir, mb)?;
                net.mounts.push(data_dir.clone());
            }
            let source = if spec.backend == Backend::Raft {
                format!("cluster_source_addr = \"{}\"\n", source_ip(i))
            } else {
                String::new()
            };
            let id_dir = crypto.join(org);
            let config = node_dir.join("orderer.toml");
            std::fs::write(
                &config,
                format!(
                    "[node]\nname = \"{name}\"\nlisten_addr = \"{addr}\"\nops_listen_addr = \"127.0.0.1:{ops}\"\ndata_dir = \"data\"\n{source}[identity]\nkey_file = \"{key}\"\ncert_file = \"{cert}\"\n[log]\nfilter = \"info\"\n{tls}",
                    ops = port(n + i),
                    key = id_dir.join("orderer.key").display(),
                    cert = id_dir.join("orderer.cert").display(),
                    tls = tls_section(&crypto, org, "orderer"),
                ),
            )?;
            let mut proc = NodeProc::new(&name, "orderer", config, node_dir.join("orderer.log"));
            proc.env = spec.orderer_env.clone();
            proc.start()?;
            net.orderers.push(Node {
                proc,
                addr: addr.clone(),
                data_dir,
                org,
                admin: load_id(org, "admin")?,
                admin_transport: tls_transport(&crypto, org, "admin")?,
            });
        }
        for i in 0..n {
            net.wait_admin(NodeRef::Orderer(i)).await?;
            net.join(NodeRef::Orderer(i), &genesis_bytes).await?;
        }

        let orderer_list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        if spec.lying_orderer {
            // Issued after the genesis block: the liar is no consenter, only a member of
            // BankA with a valid TLS certificate.
            run_ordo(&[
                "crypto",
                "issue",
                "--crypto",
                path_str(&crypto),
                "--org",
                ORGS[0],
                "--name",
                LIAR_MEMBER,
                "--role",
                "orderer",
                "--hosts",
                &TLS_HOSTS.join(","),
            ])?;
            net.liar = Some(
                crate::evil::start_lying_orderer(
                    addrs[0].clone(),
                    &tls_files(&crypto, ORGS[0], LIAR_MEMBER),
                )
                .await?,
            );
        }
        for (i, org) in ORGS.iter().copied().enumerate().take(spec.peers) {
            let name = format!("peer{i}");
            let node_dir = net.dir.path().join(&name);
            std::fs::create_dir_all(&node_dir)?;
            let addr = format!("127.0.0.1:{}", port(3 * n + 2 * i));
            let id_dir = crypto.join(org);
            let config = node_dir.join("peer.toml");
            std::fs::write(
                &config,
                format!(
                    "[node]\nname = \"{name}\"\nlisten_addr = \"{addr}\"\nops_listen_addr = \"127.0.0.1:{ops}\"\ndata_dir = \"data\"\n[identity]\nkey_file = \"{key}\"\ncert_file = \"{cert}\"\n[deliver]\norderer_endpoints = [{list}]\nbackoff_max_ms = 500\navoid_ms = 1000\n[log]\nfilter = \"info\"\n{tls}",
                    ops = port(3 * n + 2 * i + 1),
                    key = id_dir.join("peer.key").display(),
                    cert = id_dir.join("peer.cert").display(),
                    tls = tls_section(&crypto, org, "peer"),
                    list = match (&net.liar, i) {
                        (Some(liar), 0) => format!("\"{}\"", liar.addr()),
                        _ => orderer_list.join(", "),
                    },
                ),
            )?;
            let mut proc = NodeProc::new(&name, "peer", config, node_dir.join("peer.log"));
            proc.env = spec.peer_env.clone();
            proc.start()?;
            net.peers.push(Node {
                proc,
                addr,
                data_dir: node_dir.join("data"),
                org,
                admin: load_id(org, "admin")?,
                admin_transport: tls_transport(&crypto, org, "admin")?,
            });
        }
        for i in 0..net.peers.len() {
            net.wait_admin(NodeRef::Peer(i)).await?;
            net.join(NodeRef::Peer(i), &genesis_bytes).await?;
        }
        net.wait_orderable(Duration::from_secs(60)).await?;
        Ok(net)
    }
}

/// A node of a [`Net`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRef {
    /// Orderer `i`.
    Orderer(usize),
    /// Peer `i`.
    Peer(usize),
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Mounts a tmpfs of `mb` MiB on `dir` (the harness runs as root, as CI does).
fn mount_tmpfs(dir: &Path, mb: u64) -> Result<(), NetError> {
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(dir)
        .status()?;
    if !status.success() {
        return Err(NetError::Node {
            node: "harness".into(),
            reason: format!("cannot mount a {mb} MiB tmpfs on {}", dir.display()),
        });
    }
    Ok(())
}
