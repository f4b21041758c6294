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

mod nodes;
use nodes::*;
pub(crate) use nodes::{check_ports_free, spawn, stop, tail, wait_ready};

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
    // Each org's peer is its anchor: the peers find each other through the channel
    // configuration (discovery), so no peer's config lists the others.
    let anchor_peers: Vec<String> = manifest
        .orgs
        .iter()
        .zip(&peer_addrs)
        .map(|(org, (grpc, _))| format!("{}={grpc}", org.name))
        .collect();

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
                let block = channel::genesis(
                    &crypto_dir,
                    name,
                    args.consensus,
                    &grpc_endpoints,
                    &anchor_peers,
                    &batch,
                )?;
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
                let started = start_peer(
                    &dir,
                    org,
                    &peer_addrs[i],
                    &grpc_endpoints,
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
            // Ready means usable: every gateway has found every org's endorsers.
            for c in &channel_entries {
                wait_discovered(&network, c, Duration::from_secs(args.ready_timeout_s)).await?;
            }
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
