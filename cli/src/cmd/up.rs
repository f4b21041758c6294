//! `ordo up`: a whole local network with one command.
//!
//! First run: keys and certificates for the orgs, a genesis block per channel, a config
//! file per node; then the nodes start as their own processes, join the channels, and
//! `DIR/network.json` describes it all. Later runs reuse DIR (keys, ledgers) and only
//! start the nodes again. Ctrl-C (or SIGTERM) stops every node cleanly.
//!
//! While it runs, `ordo up` supervises the nodes (`cmd::node`): a node that exits without
//! being asked is reported, with its log and how to start it again, and the others keep
//! running (a place to try failures: kill the raft leader and watch the others elect a
//! new one); `ordo node stop|kill|start|restart NAME` acts on one node through the
//! control socket `DIR/control.sock`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use ordo_proto::pb::admin::{admin_command, GetChannelInfo, JoinChannel, ListChannels};
use ordo_sdk::network::{
    ChannelEntry, IdentityFiles, Member, Network, NodeEntry, NETWORK_FILE_VERSION,
};

use crate::cmd::channel::{self, AckModeArg, BatchArgs, Consensus};
use crate::cmd::config::{NodeFiles, NodeSpec};
use crate::cmd::crypto::{self, Manifest};
use crate::cmd::node::{self, ControlSocket, RestartPolicy};

/// `ordo up`
#[derive(Args)]
pub struct UpArgs {
    /// Network directory: keys, genesis blocks, node configs, ledgers, logs.
    #[arg(long, default_value = ".ordo")]
    pub dir: PathBuf,
    /// Orgs of the consortium (first run only).
    #[arg(long, value_delimiter = ',', default_value = "BankA,BankB,BankC")]
    pub orgs: Vec<String>,
    /// Channels to create (first run only).
    #[arg(long, value_delimiter = ',', default_value = "ordo-channel")]
    pub channels: Vec<String>,
    /// Consensus backend (first run only).
    #[arg(long, value_enum, default_value = "solo")]
    pub consensus: Consensus,
    /// Orderer nodes (first run only): 1 for solo; 3 by default for raft and kafka
    /// (with no --kafka-brokers, kafka runs on an in-memory mock cluster). Orderer i
    /// listens on --port + 10·i (operations on --ops-port + 10·i) and runs with an
    /// orderer identity of org i mod orgs.
    #[arg(long)]
    pub orderers: Option<usize>,
    /// gRPC port of the first orderer.
    #[arg(long, default_value_t = 7050)]
    pub port: u16,
    /// Operations (/healthz, /metrics) port of the first orderer.
    #[arg(long, default_value_t = 8443)]
    pub ops_port: u16,
    /// Seconds to wait for the nodes to become ready.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout_s: u64,
    /// Start only the orderer, no peers.
    #[arg(long)]
    pub no_peers: bool,
    /// Plaintext gRPC on every link instead of mutual TLS (first run only). For
    /// development on one machine; never for a network others can reach.
    #[arg(long)]
    pub insecure: bool,
    /// Start a node again when it exits without being asked, after a backoff that doubles
    /// with each crash in a row (1 s, 2 s, … at most 30 s); after 5 crashes in a row, each
    /// within 60 s of its start, leave it stopped and say so. Without this flag a crashed
    /// node stays down (the others keep running) until `ordo node start NAME`. Nodes
    /// stopped or killed with `ordo node stop|kill` are never restarted by this.
    #[arg(long)]
    pub restart_on_crash: bool,
    #[command(flatten)]
    pub batch: BatchArgs,
}

/// Runs the network until Ctrl-C or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let orderer_count = match (args.consensus, args.orderers) {
        (Consensus::Solo, None | Some(1)) => 1,
        (Consensus::Solo, Some(n)) => {
            bail!("solo runs exactly one orderer (--orderers {n}); use --consensus raft for more")
        }
        (Consensus::Raft | Consensus::Kafka, None) => 3,
        (Consensus::Raft | Consensus::Kafka, Some(n)) if (1..=9).contains(&n) => n,
        (Consensus::Raft | Consensus::Kafka, Some(n)) => {
            bail!("--orderers {n}: choose 1 to 9 orderers")
        }
    };
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    // First, so that a second `ordo up` of the same directory stops here, before it
    // touches keys, ports or ledgers; a socket left by a killed `ordo up` is removed.
    node::refuse_second_supervisor(&dir)?;
    let control = match ControlSocket::bind(&dir) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("WARNING: {e:#}; the network runs without `ordo node` (stop it with Ctrl-C)");
            None
        }
    };
    let crypto_dir = dir.join("crypto");
    let mut manifest = if crypto_dir.join("crypto.json").exists() {
        eprintln!("reusing keys and certificates in {}", crypto_dir.display());
        Manifest::load(&crypto_dir)?
    } else {
        eprintln!(
            "creating keys and certificates for {} in {}",
            args.orgs.join(", "),
            crypto_dir.display()
        );
        let hosts: Vec<String> = crate::pki::LOCAL_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect();
        crypto::init(&args.orgs, &crypto_dir, 365, &hosts)?
    };
    let network_path = dir.join("network.json");
    let previous = Network::load(&network_path).ok();
    let exe = std::env::current_exe().context("locating the ordo binary")?;
    let mock_marker = dir.join(MOCK_MARKER);
    if previous.is_some() && mock_marker.exists() {
        bail!(
            "{} ran its kafka channels on an in-memory mock cluster, which forgot every \
             message when it stopped: the orderers' ledgers cannot continue from it. Remove \
             the directory to start a fresh network, or use a real Kafka cluster with \
             --kafka-brokers",
            dir.display()
        );
    }
    // Kafka with no brokers given: a mock cluster of our own, said loudly.
    let mut kafka_mock = None;
    let mut batch_args = args.batch.clone();
    if previous.is_none()
        && args.consensus == Consensus::Kafka
        && batch_args.kafka_brokers.is_empty()
    {
        let (child, brokers) = start_kafka_mock(&dir, &args.channels, &exe).await?;
        std::fs::write(&mock_marker, format!("{brokers}\n"))?;
        eprintln!(
            "NOTE: no --kafka-brokers given, so this network runs on librdkafka's in-memory \
             MOCK Kafka cluster at {brokers} (3 brokers; log in {}). It is for development \
             only and forgets everything when it stops: this network cannot be restarted. \
             Use --kafka-brokers with a real cluster (deploy/KAFKA.md) for anything else.",
            dir.join("kafka-mock.log").display()
        );
        batch_args.kafka_brokers = vec![brokers];
        kafka_mock = Some(child);
    }
    // A later run restarts the orderers of the first one.
    let orderer_count = match &previous {
        Some(p) => p.nodes_with_role("orderer").count().max(1),
        None => orderer_count,
    };
    // Orderer i runs in org i mod orgs; past the first orderer of each org it needs an
    // identity of its own.
    let org_count = manifest.orgs.len();
    for i in org_count..orderer_count {
        let org = manifest.orgs[i % org_count].name.clone();
        let name = format!("orderer{i}");
        if !manifest.orgs[i % org_count].members.contains_key(&name) {
            let hosts: Vec<String> = crate::pki::LOCAL_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect();
            crypto::issue(
                &crypto_dir,
                &org,
                &name,
                ordo_proto::pb::common::Role::Orderer,
                365,
                &hosts,
            )?;
        }
    }
    manifest = Manifest::load(&crypto_dir)?;
    let endpoints: Vec<(String, String)> = (0..orderer_count)
        .map(|i| {
            let name = format!("orderer{i}");
            match previous.as_ref().and_then(|p| p.node(&name).ok()) {
                Some(n) => (n.grpc_addr.clone(), n.ops_addr.clone()),
                None => (
                    format!("127.0.0.1:{}", args.port + 10 * i as u16),
                    format!("127.0.0.1:{}", args.ops_port + 10 * i as u16),
                ),
            }
        })
        .collect();
    let grpc_endpoints: Vec<String> = endpoints.iter().map(|(g, _)| g.clone()).collect();

    // Channels: reuse the genesis blocks of an earlier run.
    let channel_entries: Vec<ChannelEntry> = match &previous {
        Some(p) => p.channels.clone(),
        None => {
            let mut v = Vec::new();
            for name in &args.channels {
                let path = dir.join("channels").join(format!("{name}.genesis.block"));
                let mut batch = batch_args.clone();
                if batch.chaincodes.is_empty() {
                    batch.chaincodes = vec!["bank".into(), "kv".into()];
                }
                let block =
                    channel::genesis(&crypto_dir, name, args.consensus, &grpc_endpoints, &batch)?;
                channel::write_block(&path, &block)?;
                v.push(ChannelEntry {
                    name: name.clone(),
                    consensus: match args.consensus {
                        Consensus::Solo => "solo",
                        Consensus::Raft => "raft",
                        Consensus::Kafka => "kafka",
                    }
                    .into(),
                    ack_mode: match args.batch.ack_mode {
                        AckModeArg::Enqueued => "enqueued".into(),
                        AckModeArg::Committed => "committed".into(),
                    },
                    genesis_block: path,
                });
            }
            v
        }
    };

    // TLS unless --insecure; a later run keeps what the first one chose.
    let tls = match &previous {
        Some(p) => p
            .identities
            .values()
            .flat_map(|m| m.values())
            .any(|f| f.tls.is_some()),
        None => !args.insecure,
    };
    if !tls {
        eprintln!(
            "WARNING: TLS is OFF (--insecure): every link of this network is plaintext. \
             Development only."
        );
    }
    let mut identities = std::collections::BTreeMap::new();
    for o in &manifest.orgs {
        let mut m: std::collections::BTreeMap<String, IdentityFiles> = o.members.clone();
        if !tls {
            for f in m.values_mut() {
                f.tls = None;
            }
        }
        identities.insert(o.name.clone(), m);
    }
    let mut network = Network {
        version: NETWORK_FILE_VERSION,
        dir: dir.clone(),
        crypto_dir: crypto_dir.clone(),
        channels: channel_entries.clone(),
        nodes: Vec::new(),
        identities,
    };

    // Every node's addresses are checked before any node starts, so that a port taken by
    // another program is reported with the node that wanted it, and nothing is left
    // half-started.
    let peer_addrs: Vec<(String, String)> = if args.no_peers {
        Vec::new()
    } else {
        manifest
            .orgs
            .iter()
            .enumerate()
            .map(|(i, org)| peer_addrs(&org.name, i, &args, previous.as_ref()))
            .collect()
    };
    let planned = endpoints
        .iter()
        .enumerate()
        .map(|(i, addrs)| (format!("orderer{i}"), addrs))
        .chain(
            manifest
                .orgs
                .iter()
                .zip(&peer_addrs)
                .map(|(org, addrs)| (format!("peer0.{}", org.name), addrs)),
        );
    for (name, (grpc_addr, ops_addr)) in planned {
        let hint = match previous.as_ref().and_then(|p| p.node(&name).ok()) {
            Some(earlier) => format!(
                "; this network's ports were chosen on its first run (network.json){}",
                earlier
                    .pid
                    .map(|pid| format!(
                        ", and network.json says an earlier `ordo up` ran {name} as pid \
                         {pid}: is it still running? (`kill {pid}` stops it)"
                    ))
                    .unwrap_or_default()
            ),
            None => "; choose other ports with --port and --ops-port (orderer i uses \
                     port + 10·i, the peer of org j port + 1 + j)"
                .to_string(),
        };
        check_ports_free(&name, grpc_addr, ops_addr, &hint)?;
    }

    // From here on, a failure or a Ctrl-C stops the nodes started so far, gracefully (the
    // nodes run in their own process group, so the terminal's Ctrl-C reaches only `ordo
    // up`, which must stop them).
    let shutdown = node::stop_signal();
    tokio::pin!(shutdown);
    let grpc_addr = endpoints[0].0.clone();
    let mut orderers: Vec<(String, tokio::process::Child)> = Vec::new();
    let mut peers: Vec<(String, tokio::process::Child)> = Vec::new();
    let starting = async {
        // The orderers: all started first (a raft channel needs a majority to elect a
        // leader), then each joins the channels.
        for (i, (grpc_addr, ops_addr)) in endpoints.iter().enumerate() {
            let org = &manifest.orgs[i % org_count];
            let member = if i < org_count {
                "orderer".to_string()
            } else {
                format!("orderer{i}")
            };
            let files = org
                .members
                .get(&member)
                .with_context(|| format!("org {} has no identity {member}", org.name))?;
            let node_files = node_files(org, files, tls)?;
            let (entry, child) =
                start_orderer(&dir, i, &org.name, &node_files, grpc_addr, ops_addr, &exe)?;
            network.nodes.push(entry.clone());
            orderers.push((entry.name.clone(), child));
        }
        network.save(&network_path)?;
        for (i, (name, child)) in orderers.iter_mut().enumerate() {
            let org = &manifest.orgs[i % org_count];
            let admin = network.member(Some(&org.name), "admin")?;
            let grpc_addr = &endpoints[i].0;
            let log_file = dir.join(name.as_str()).join("orderer.log");
            let joined = wait_ready(
                name,
                grpc_addr,
                &admin,
                child,
                &log_file,
                Duration::from_secs(args.ready_timeout_s),
            )
            .await;
            let joined = joined?;
            for c in &channel_entries {
                if joined.contains(&c.name) {
                    continue;
                }
                let genesis = std::fs::read(&c.genesis_block)
                    .with_context(|| format!("reading {}", c.genesis_block.display()))?;
                crate::client::admin(
                    grpc_addr,
                    &admin,
                    "",
                    admin_command::Command::Join(JoinChannel {
                        genesis_block: genesis.into(),
                    }),
                )
                .await
                .with_context(|| format!("joining {name} to channel {}", c.name))?;
            }
        }
        // The network is ready when every orderer's chain takes envelopes: a kafka chain once
        // it has reached its own Connect message on the partition, a raft chain once it knows
        // a leader (otherwise the first `ordo tx invoke` after the ready line is refused).
        let names: Vec<String> = orderers.iter().map(|(n, _)| n.clone()).collect();
        for (i, name) in names.iter().enumerate() {
            let admin = network.member(Some(&manifest.orgs[i % org_count].name), "admin")?;
            for c in channel_entries.iter().filter(|c| c.consensus != "solo") {
                let ready = wait_orderable(
                    &endpoints[i].0,
                    &admin,
                    &c.name,
                    &c.consensus,
                    Duration::from_secs(args.ready_timeout_s),
                )
                .await;
                ready.with_context(|| format!("{name} on channel {}", c.name))?;
            }
        }

        // One peer per org, following every channel.
        if !args.no_peers {
            for (i, org) in manifest.orgs.iter().enumerate() {
                // Each peer's gateway asks the other orgs' peers for endorsements.
                let others: Vec<String> = peer_addrs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (grpc, _))| grpc.clone())
                    .collect();
                let started = start_peer(
                    &dir,
                    org,
                    &peer_addrs[i],
                    &grpc_endpoints,
                    &others,
                    &args,
                    &exe,
                    &network,
                    tls,
                )
                .await;
                let (entry, child) = started?;
                network.nodes.push(entry.clone());
                peers.push((entry.name.clone(), child));
                let peer_admin = network.member(Some(&org.name), "admin")?;
                let joined = crate::client::admin(
                    &entry.grpc_addr,
                    &peer_admin,
                    "",
                    admin_command::Command::List(ListChannels {}),
                )
                .await?
                .list
                .unwrap_or_default()
                .channels
                .into_iter()
                .map(|c| c.channel_id)
                .collect::<Vec<_>>();
                for c in &channel_entries {
                    if joined.contains(&c.name) {
                        continue;
                    }
                    let genesis = std::fs::read(&c.genesis_block)
                        .with_context(|| format!("reading {}", c.genesis_block.display()))?;
                    crate::client::admin(
                        &entry.grpc_addr,
                        &peer_admin,
                        "",
                        admin_command::Command::Join(JoinChannel {
                            genesis_block: genesis.into(),
                        }),
                    )
                    .await
                    .with_context(|| format!("joining {} to channel {}", entry.name, c.name))?;
                }
            }
            network.save(&network_path)?;
        }
        Ok::<(), anyhow::Error>(())
    };
    let started = tokio::select! {
        r = starting => r,
        _ = &mut shutdown => Err(anyhow::anyhow!("interrupted while starting the network")),
    };
    if let Err(e) = started {
        if !orderers.is_empty() {
            eprintln!("stopping the nodes started so far...");
        }
        stop_all(&mut peers).await;
        stop_all(&mut orderers).await;
        for n in &mut network.nodes {
            n.pid = None;
        }
        if !network.nodes.is_empty() {
            let _ = network.save(&network_path);
        }
        return Err(e);
    }

    let consensus = channel_entries
        .first()
        .map(|c| c.consensus.clone())
        .unwrap_or_default();
    println!(
        "ordo network ready: {} orderer(s) ({consensus}) from {grpc_addr}, {} peer(s), channels: {}, orgs: {}",
        orderers.len(),
        peers.len(),
        channel_entries
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        manifest.org_names()
    );
    for n in &network.nodes {
        println!(
            "  {:<14} {:<8} {}  (ops http://{}, log {})",
            n.name,
            n.role,
            n.grpc_addr,
            n.ops_addr,
            n.log_file.display()
        );
    }
    println!("  network file: {}", network_path.display());
    println!("try:");
    println!("  ordo channel info --network {}", network_path.display());
    if let Some(p) = network.nodes.iter().find(|n| n.role == "peer") {
        println!(
            "  ordo channel info --network {} --node {}",
            network_path.display(),
            p.name
        );
    }
    if !peers.is_empty() {
        println!(
            "  ordo tx invoke --network {} --chaincode bank --fn open --args alice 100",
            network_path.display()
        );
        println!(
            "  ordo tx query  --network {} --chaincode bank --fn balance --args alice",
            network_path.display()
        );
    }
    println!(
        "  ordo bench orderer --network {} --txs 100000 --clients 4",
        network_path.display()
    );
    println!("  ordo block verify --network {}", network_path.display());
    if control.is_some() {
        // The first thing to try: kill a node (with several orderers, one of them: the raft
        // leader, say) and watch the others carry on.
        let orderer_count = network.nodes_with_role("orderer").count();
        let victim = network
            .nodes
            .iter()
            .rev()
            .find(|n| orderer_count < 2 || n.role == "orderer")
            .map(|n| n.name.clone())
            .unwrap_or_default();
        println!(
            "  ordo node kill {victim} --network {}    (a crash; the others keep running)",
            network_path.display()
        );
        println!(
            "  ordo node start {victim} --network {}   (it comes back and catches up)",
            network_path.display()
        );
        println!("  ordo node status --network {}", network_path.display());
    }
    println!("press Ctrl-C to stop");

    let supervision = node::Supervision {
        network,
        network_path,
        children: orderers
            .into_iter()
            .chain(peers)
            .map(|(_, child)| child)
            .collect(),
        control,
        restart: args.restart_on_crash.then(RestartPolicy::default),
        ready_timeout: Duration::from_secs(args.ready_timeout_s),
    };
    let supervised = node::supervise(supervision, shutdown).await;
    if let Some(mut mock) = kafka_mock {
        stop(&mut mock).await;
        supervised?;
        eprintln!(
            "stopped, with the kafka mock cluster and everything it held; remove {} to start afresh",
            dir.display()
        );
        return Ok(());
    }
    supervised?;
    eprintln!(
        "stopped; run `ordo up --dir {}` again to restart with the same ledgers",
        dir.display()
    );
    Ok(())
}

/// Polls a channel's info on an orderer until its chain takes envelopes: a kafka chain
/// is ready (role `kafka`), a raft chain knows its leader.
async fn wait_orderable(
    addr: &str,
    admin: &Member,
    channel: &str,
    consensus: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut role = String::new();
    while tokio::time::Instant::now() < deadline {
        let info = crate::client::admin(
            addr,
            admin,
            channel,
            admin_command::Command::Info(GetChannelInfo {
                channel_id: channel.to_string(),
            }),
        )
        .await;
        if let Ok(resp) = info {
            let info = resp.channel.unwrap_or_default();
            let ready = match consensus {
                "kafka" => info.role == "kafka",
                "raft" => !info.leader.is_empty(),
                _ => true,
            };
            if ready {
                return Ok(());
            }
            role = info.role;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the {consensus} chain was not ready after {timeout:?} (state: {role:?}); see the orderer's log"
    )
}

/// Marks a network directory whose kafka channels ran on the mock cluster.
const MOCK_MARKER: &str = "kafka-mock.brokers";

/// Starts `ordo kafka mock` with a topic per channel and returns it with its bootstrap
/// address (the first line it prints).
async fn start_kafka_mock(
    dir: &Path,
    channels: &[String],
    exe: &Path,
) -> anyhow::Result<(tokio::process::Child, String)> {
    use tokio::io::AsyncBufReadExt;
    let log_file = dir.join("kafka-mock.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_file)
        .with_context(|| format!("opening {}", log_file.display()))?;
    let topics: Vec<String> = channels
        .iter()
        .map(|c| ordo_consensus::kafka::default_topic(c))
        .collect();
    let mut child = tokio::process::Command::new(exe)
        .args([
            "kafka",
            "mock",
            "--brokers",
            "3",
            "--topics",
            &topics.join(","),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .context("starting the kafka mock cluster")?;
    let stdout = child.stdout.take().context("mock cluster stdout")?;
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    let brokers = line.trim().to_string();
    if !matches!(read, Ok(Ok(n)) if n > 0) || brokers.is_empty() {
        stop(&mut child).await;
        bail!(
            "the kafka mock cluster did not start; see {}",
            log_file.display()
        );
    }
    Ok((child, brokers))
}

/// Writes the config of the peer of `org` (first run), starts it, and waits until its
/// Admin service answers.
/// The gRPC and operations addresses of org `org`'s peer (index `index`): the earlier
/// run's, or the defaults after the first orderer's ports.
fn peer_addrs(
    org: &str,
    index: usize,
    args: &UpArgs,
    previous: Option<&Network>,
) -> (String, String) {
    let name = format!("peer0.{org}");
    match previous.and_then(|p| p.node(&name).ok()) {
        Some(n) => (n.grpc_addr.clone(), n.ops_addr.clone()),
        None => (
            format!("127.0.0.1:{}", args.port + 1 + index as u16),
            format!("127.0.0.1:{}", args.ops_port + 1 + index as u16),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
async fn start_peer(
    dir: &Path,
    org: &crate::cmd::crypto::OrgEntry,
    addrs: &(String, String),
    orderer_addrs: &[String],
    endorsers: &[String],
    args: &UpArgs,
    exe: &Path,
    network: &Network,
    tls: bool,
) -> anyhow::Result<(NodeEntry, tokio::process::Child)> {
    let name = format!("peer0.{}", org.name);
    let node_dir = dir.join(&name);
    std::fs::create_dir_all(&node_dir)?;
    let config_path = node_dir.join("peer.toml");
    let (grpc_addr, ops_addr) = addrs.clone();
    let files = org
        .members
        .get("peer")
        .context("org has no peer identity")?;
    if !config_path.exists() {
        let spec = NodeSpec {
            written_by: "Written by `ordo up`".into(),
            name: name.clone(),
            listen_addr: grpc_addr.clone(),
            ops_listen_addr: ops_addr.clone(),
            data_dir: node_dir.join("data"),
            files: node_files(org, files, tls)?,
        };
        let text = crate::cmd::config::peer_toml(&spec, orderer_addrs, endorsers);
        std::fs::write(&config_path, text)
            .with_context(|| format!("writing {}", config_path.display()))?;
    }
    let command = vec![
        exe.display().to_string(),
        "peer".into(),
        "--config".into(),
        config_path.display().to_string(),
    ];
    let log_file = node_dir.join("peer.log");
    let mut child = spawn(&command, &log_file)?;
    let admin = network.member(Some(&org.name), "admin")?;
    if let Err(e) = wait_ready(
        &name,
        &grpc_addr,
        &admin,
        &mut child,
        &log_file,
        Duration::from_secs(args.ready_timeout_s),
    )
    .await
    {
        stop(&mut child).await;
        return Err(e);
    }
    let entry = NodeEntry {
        name,
        role: "peer".into(),
        org: org.name.clone(),
        grpc_addr,
        ops_addr,
        pid: child.id(),
        command,
        config: config_path,
        data_dir: node_dir.join("data"),
        log_file,
    };
    Ok((entry, child))
}

/// The files a node's config names: its identity and TLS key pairs in the crypto
/// directory, trusting its own org's TLS CA (every other org's comes with the channel
/// configs); no TLS with --insecure.
fn node_files(
    org: &crate::cmd::crypto::OrgEntry,
    files: &IdentityFiles,
    tls: bool,
) -> anyhow::Result<NodeFiles> {
    let tls = if tls {
        let (Some(pair), Some(ca)) = (&files.tls, &org.tls_ca) else {
            bail!(
                "org {} has no TLS certificates (a crypto directory from before TLS); \
                 use --insecure or start a fresh network directory",
                org.name
            );
        };
        Some((pair.cert.clone(), pair.key.clone(), vec![ca.clone()]))
    } else {
        None
    };
    Ok(NodeFiles {
        key: files.key.clone(),
        cert: files.cert.clone(),
        tls,
    })
}

/// Writes orderer `index`'s config (first run) and starts it.
fn start_orderer(
    dir: &Path,
    index: usize,
    org: &str,
    node_files: &NodeFiles,
    grpc_addr: &str,
    ops_addr: &str,
    exe: &Path,
) -> anyhow::Result<(NodeEntry, tokio::process::Child)> {
    let name = format!("orderer{index}");
    let node_dir = dir.join(&name);
    std::fs::create_dir_all(&node_dir)?;
    let config_path = node_dir.join("orderer.toml");
    if !config_path.exists() {
        let spec = NodeSpec {
            written_by: "Written by `ordo up`".into(),
            name: name.clone(),
            listen_addr: grpc_addr.to_string(),
            ops_listen_addr: ops_addr.to_string(),
            data_dir: node_dir.join("data"),
            files: node_files.clone(),
        };
        std::fs::write(&config_path, crate::cmd::config::orderer_toml(&spec))
            .with_context(|| format!("writing {}", config_path.display()))?;
    }
    let command = vec![
        exe.display().to_string(),
        "orderer".to_string(),
        "--config".to_string(),
        config_path.display().to_string(),
    ];
    let log_file = node_dir.join("orderer.log");
    let child = spawn(&command, &log_file)?;
    let entry = NodeEntry {
        name,
        role: "orderer".into(),
        org: org.to_string(),
        grpc_addr: grpc_addr.to_string(),
        ops_addr: ops_addr.to_string(),
        pid: child.id(),
        command,
        config: config_path,
        data_dir: node_dir.join("data"),
        log_file,
    };
    Ok((entry, child))
}

/// Stops every node of `nodes`.
async fn stop_all(nodes: &mut [(String, tokio::process::Child)]) {
    for (_, c) in nodes.iter_mut() {
        stop(c).await;
    }
}

/// Starts a node: `command` (as recorded in `network.json`), with `ordo up`'s
/// environment, output appended to `log_file`. The one way nodes are started, by `ordo
/// up` and by `ordo node start`, so a restarted node runs exactly as the first one did.
///
/// The node gets a process group of its own: a Ctrl-C in the terminal reaches only `ordo
/// up`, which then stops the nodes in order (peers first), rather than every node at
/// once racing the supervisor (which would see them as crashed).
pub(crate) fn spawn(command: &[String], log_file: &Path) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .with_context(|| format!("opening {}", log_file.display()))?;
    let err = log.try_clone()?;
    let (prog, rest) = command.split_first().context("empty command")?;
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.spawn()
        .with_context(|| format!("starting {}", command.join(" ")))
}

/// Fails, naming the node and the address, when another process already listens on the
/// node's gRPC or operations address (the node itself would only log a bind error and
/// exit). `hint` ends the message: what the user can do about it.
pub(crate) fn check_ports_free(
    name: &str,
    grpc_addr: &str,
    ops_addr: &str,
    hint: &str,
) -> anyhow::Result<()> {
    for (what, addr) in [("gRPC", grpc_addr), ("operations", ops_addr)] {
        // std's listener sets SO_REUSEADDR, as the nodes' do: a port in TIME_WAIT after a
        // node stopped counts as free, as it is for the node.
        match std::net::TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
                "{name} cannot start: its {what} address {addr} is already in use by another \
                 process{hint}"
            ),
            // Anything else (an address that does not resolve, …) the node reports itself.
            _ => {}
        }
    }
    Ok(())
}

/// Polls the Admin service of node `name` until it answers; returns the channels it
/// serves. Fails when the process exits first (with the end of its log) or after
/// `timeout`.
pub(crate) async fn wait_ready(
    name: &str,
    addr: &str,
    admin: &Member,
    child: &mut tokio::process::Child,
    log_file: &Path,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_err = String::new();
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "{name} exited during start-up ({status}); the last lines of {}:\n{}",
                log_file.display(),
                tail(log_file, 20)
            );
        }
        match crate::client::admin(
            addr,
            admin,
            "",
            admin_command::Command::List(ListChannels {}),
        )
        .await
        {
            Ok(resp) => {
                return Ok(resp
                    .list
                    .unwrap_or_default()
                    .channels
                    .into_iter()
                    .map(|c| c.channel_id)
                    .collect());
            }
            Err(e) => last_err = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "{name} at {addr} was not ready after {timeout:?} (last error: {last_err}); see {}",
        log_file.display()
    )
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// SIGTERM, then SIGKILL after 20 s; the exit status (unknown when waiting failed).
pub(crate) async fn stop(child: &mut tokio::process::Child) -> Option<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        #[cfg(unix)]
        #[allow(unsafe_code)]
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is
        // our own child's, which we have not yet reaped, so it cannot have been reused.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    }
}
