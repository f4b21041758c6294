//! `ordo channel`: genesis blocks, channel participation, and config updates.
//!
//! A genesis block is made either from one crypto directory holding every org (one
//! machine: `--crypto`, what `ordo up` does) or from the org bundles each org exported on
//! its own machine (`--org-bundle`, repeated). Both go through [`config_from_parts`] once
//! the orgs and consenters are read.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use prost::Message;

use ordo_proto::config;
use ordo_proto::pb::admin::{
    admin_command, ChannelInfo, GetChannelInfo, JoinBySnapshot, JoinChannel, ListChannels,
    RemoveChannel,
};
use ordo_proto::pb::common::{
    AckMode, BatchSize, Block, ChaincodeDefinition, ChannelConfig, Consenter, KafkaConfig,
    OrdererConfig, Organization, RaftConfig, Role,
};
use ordo_proto::policy::build as policy;

use crate::client::{admin, ClientArgs};
use crate::cmd::bundle::VerifiedBundle;
use crate::cmd::crypto::Manifest;

mod build;
pub use build::{genesis, genesis_from_bundles};

/// `ordo channel ...`
#[derive(Subcommand)]
pub enum ChannelCommand {
    /// Write a channel's genesis block from a consortium's crypto directory, or from the
    /// org bundles of its orgs (`ordo crypto export`).
    Genesis(GenesisArgs),
    /// Join a node to a channel from its genesis block, or a peer from a snapshot another
    /// peer took (needs an admin of the node's org).
    Join(JoinArgs),
    /// List the channels a node serves.
    List(ListArgs),
    /// Make a node leave a channel and delete its ledger for it.
    Remove(RemoveArgs),
    /// Show a channel's height, last block hash, consensus type and role on a node.
    Info(InfoArgs),
    /// Add, remove or update (rotate the pinned certificates of) a raft channel's
    /// consenters, one per config update.
    Consenter {
        /// What to change.
        #[command(subcommand)]
        command: crate::cmd::consenter::ConsenterCommand,
    },
    /// Add an org to a channel (from its bundle) or remove one.
    Org {
        /// What to change.
        #[command(subcommand)]
        command: crate::cmd::org::OrgCommand,
    },
    /// Set how long a transaction stays valid after its own timestamp (the tx validity
    /// window, docs/PROTOCOL.md "Transaction expiry"): peers refuse older ones as EXPIRED
    /// and keep only about one window of tx ids. A config update signed by the admins.
    Expiry(ExpiryArgs),
    /// Config updates as files that travel between orgs: show, sign (each org's admin on
    /// its own machine), submit.
    Update {
        /// What to do with the file.
        #[command(subcommand)]
        command: crate::cmd::update::UpdateCommand,
    },
}

/// Consensus backends.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Consensus {
    /// One orderer; for development and single-org use.
    Solo,
    /// Every orderer consumes one Kafka partition.
    Kafka,
    /// Raft among the channel's consenters.
    Raft,
}

/// Broadcast acknowledgement modes.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum AckModeArg {
    /// Acknowledge once the chain accepted the envelope (Fabric's semantics).
    Enqueued,
    /// Acknowledge once the envelope's block is durable.
    Committed,
}

/// Channel settings shared by `channel genesis` and `up`: batching, ack mode, chaincodes
/// and the raft timings (raft channels only; 0 takes the default).
#[derive(Args, Debug, Clone)]
pub struct BatchArgs {
    /// Most envelopes per block.
    #[arg(long, default_value_t = 1000)]
    pub max_message_count: u32,
    /// Largest envelope and largest block data, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub absolute_max_bytes: u32,
    /// A block is cut once its data reaches this many bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub preferred_max_bytes: u32,
    /// A non-empty pending batch is cut after this long.
    #[arg(long, default_value_t = 200)]
    pub batch_timeout_ms: u64,
    /// When Broadcast answers SUCCESS.
    #[arg(long, value_enum, default_value = "enqueued")]
    pub ack_mode: AckModeArg,
    /// Chaincodes to deploy, as NAME or NAME:N — endorsed by the peers of N different orgs
    /// (default: a majority of the orgs). Repeat or separate with commas.
    #[arg(long = "chaincode", value_delimiter = ',')]
    pub chaincodes: Vec<String>,
    /// Kafka: the brokers (host:port, comma separated) every orderer produces to and
    /// consumes from. `ordo up` starts an in-memory mock cluster when none are given.
    #[arg(long = "kafka-brokers", value_delimiter = ',')]
    pub kafka_brokers: Vec<String>,
    /// Kafka: the channel's topic (default `ordo.<channel>`); one partition, created
    /// before the orderers join (see deploy/KAFKA.md for its settings).
    #[arg(long, default_value = "")]
    pub kafka_topic: String,
    /// Raft: real time of one tick, in ms (default 100).
    #[arg(long, default_value_t = 0)]
    pub raft_tick_ms: u64,
    /// Raft: ticks without a heartbeat before a follower campaigns (default 10).
    #[arg(long, default_value_t = 0)]
    pub raft_election_tick: u32,
    /// Raft: ticks between leader heartbeats (default 1).
    #[arg(long, default_value_t = 0)]
    pub raft_heartbeat_tick: u32,
    /// Raft: blocks the leader may have proposed and not yet applied (default 5).
    #[arg(long, default_value_t = 0)]
    pub raft_max_inflight_blocks: u32,
    /// Raft: log bytes after which a snapshot is taken and the log compacted (default
    /// 64 MiB, at least 1 MiB).
    #[arg(long, default_value_t = 0)]
    pub raft_snapshot_bytes: u64,
    /// How long a transaction stays valid after its own timestamp, in seconds (on the
    /// ledger's clock: the latest VALID transaction's timestamp). Peers refuse older ones
    /// as EXPIRED and forget their tx ids, which keeps the tx-id index to this window.
    /// 0: never expire (the index keeps every tx id ever committed); else at least 1500.
    #[arg(long, default_value_t = ordo_proto::config::DEFAULT_TX_VALIDITY_WINDOW_S)]
    pub tx_validity_window_s: u64,
}

/// `ordo channel expiry`
#[derive(Args)]
pub struct ExpiryArgs {
    #[command(flatten)]
    pub update: crate::cmd::update::UpdateArgs,
    /// The new window in seconds: 0 (transactions never expire; the tx-id index keeps
    /// every id) or 1500 to 31536000.
    #[arg(long)]
    pub window_s: u64,
}

/// `ordo channel genesis`
#[derive(Args)]
pub struct GenesisArgs {
    /// The directory written by `ordo crypto init`, holding every org of the channel.
    #[arg(
        long,
        required_unless_present = "org_bundles",
        conflicts_with = "org_bundles"
    )]
    pub crypto: Option<PathBuf>,
    /// An org bundle (`ordo crypto export`); repeat once per org, in the order the orgs
    /// should have. The consenters are the bundles' orderers that have an endpoint, with
    /// ids `<member>.<org>`.
    #[arg(long = "org-bundle")]
    pub org_bundles: Vec<PathBuf>,
    /// Channel id: lower-case letters, digits, '.' and '-', starting with a letter.
    #[arg(long)]
    pub channel: String,
    /// Consensus backend.
    #[arg(long, value_enum, default_value = "solo")]
    pub consensus: Consensus,
    /// With --crypto: orderer endpoints (host:port), one per consenter, taken from the
    /// orgs in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:7050",
        conflicts_with = "org_bundles"
    )]
    pub orderer_endpoints: Vec<String>,
    /// With --crypto: an anchor peer of an org, ORG=[MEMBER=]HOST:PORT (member `peer` by
    /// default; repeatable). Every peer of the channel announces itself to the anchors and finds the
    /// channel's other peers through them, so gateways need no list of endorsers. With
    /// --org-bundle, the bundles' peer endpoints are the anchors.
    #[arg(long = "anchor-peer", conflicts_with = "org_bundles")]
    pub anchor_peers: Vec<String>,
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Output file for the encoded genesis block.
    #[arg(long)]
    pub out: PathBuf,
}

/// `ordo channel join`
#[derive(Args)]
pub struct JoinArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The channel's genesis block file; for an orderer joining a running raft channel,
    /// the config block that added it as a consenter (a running kafka channel: any of its
    /// config blocks, usually the latest). Such an orderer holds the chain from that block
    /// on, without the blocks below it.
    #[arg(
        long,
        visible_alias = "block",
        required_unless_present = "snapshot",
        conflicts_with = "snapshot"
    )]
    pub genesis: Option<PathBuf>,
    /// Join a peer from a snapshot (`ordo peer snapshot`) instead of replaying the chain
    /// from genesis: the snapshot directory ON THE PEER'S HOST (an absolute path, or its
    /// name under the peer's <data_dir>/snapshots/). The peer checks the manifest's
    /// signature and files, and the snapshot's last block and config block against the
    /// orderers, then follows blocks from the snapshot's height.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// With --snapshot: the channel the snapshot must be of (refused otherwise).
    #[arg(long, requires = "snapshot")]
    pub channel: Option<String>,
}

/// `ordo channel list`
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ordo channel remove`
#[derive(Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The channel to leave.
    #[arg(long)]
    pub channel: String,
}

/// `ordo channel info`
#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The channel (default: the network's first channel).
    #[arg(long)]
    pub channel: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show what a peer's discovery sees instead: the channel's peers as they announced
    /// themselves (org, endpoint, chaincodes, height, age). Asks the peer --peer or --node
    /// names, else the network's peer of --org (default: the first org).
    #[arg(long)]
    pub peers: bool,
}

/// The snapshot path sent to the peer: a relative path that names a directory here is
/// made absolute (the usual case on one machine, `ordo up`); a bare name that does not is
/// sent as is, for the peer to find under its <data_dir>/snapshots/.
fn snapshot_path(given: &str) -> String {
    let p = Path::new(given);
    if p.is_relative() && p.is_dir() {
        if let Ok(abs) = std::fs::canonicalize(p) {
            return abs.display().to_string();
        }
    }
    given.to_string()
}

/// Runs a channel command.
pub async fn run(cmd: ChannelCommand) -> anyhow::Result<()> {
    match cmd {
        ChannelCommand::Consenter { command } => crate::cmd::consenter::run(command).await,
        ChannelCommand::Org { command } => crate::cmd::org::run(command).await,
        ChannelCommand::Update { command } => crate::cmd::update::run(command).await,
        ChannelCommand::Expiry(a) => {
            let block = crate::cmd::update::propose(&a.update, |cfg| {
                cfg.tx_validity_window_s = a.window_s;
                Ok(())
            })
            .await?;
            if let Some(block) = block {
                println!(
                    "channel {}: tx validity window {} (config block {})",
                    a.update.channel,
                    describe_window(a.window_s),
                    ordo_proto::block::number(&block)
                );
            }
            Ok(())
        }
        ChannelCommand::Genesis(a) => {
            let block = match &a.crypto {
                Some(crypto) => genesis(
                    crypto,
                    &a.channel,
                    a.consensus,
                    &a.orderer_endpoints,
                    &a.anchor_peers,
                    &a.batch,
                )?,
                None => {
                    let bundles = a
                        .org_bundles
                        .iter()
                        .map(|p| crate::cmd::bundle::load(p))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    genesis_from_bundles(&bundles, &a.channel, a.consensus, &a.batch)?
                }
            };
            write_block(&a.out, &block)?;
            println!(
                "wrote the genesis block of channel {} ({:?}, hash {}) to {}",
                a.channel,
                a.consensus,
                hex::encode(ordo_proto::block::hash(&block)),
                a.out.display()
            );
            Ok(())
        }
        ChannelCommand::Join(a) => {
            let command = match (&a.genesis, &a.snapshot) {
                (_, Some(path)) => admin_command::Command::JoinBySnapshot(JoinBySnapshot {
                    path: snapshot_path(path),
                    channel_id: a.channel.clone().unwrap_or_default(),
                }),
                (Some(genesis), None) => {
                    let bytes = std::fs::read(genesis)
                        .with_context(|| format!("reading {}", genesis.display()))?;
                    admin_command::Command::Join(JoinChannel {
                        genesis_block: bytes.into(),
                    })
                }
                (None, None) => bail!("give --genesis FILE or --snapshot DIR"),
            };
            let addr = a.client.orderer_addr()?;
            let id = a.client.member("admin")?;
            let resp = admin(&addr, &id, "", command).await?;
            let info = resp.channel.unwrap_or_default();
            println!(
                "joined channel {} on {addr} (height {})",
                info.channel_id, info.height
            );
            Ok(())
        }
        ChannelCommand::List(a) => {
            let addr = a.client.orderer_addr()?;
            let id = a.client.member("admin")?;
            let resp = admin(
                &addr,
                &id,
                "",
                admin_command::Command::List(ListChannels {}),
            )
            .await?;
            let channels = resp.list.unwrap_or_default().channels;
            if a.json {
                let v: Vec<_> = channels.iter().map(info_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if channels.is_empty() {
                println!("{addr} serves no channels");
            } else {
                for c in &channels {
                    println!(
                        "{}\theight {}\t{}",
                        c.channel_id, c.height, c.consensus_type
                    );
                }
            }
            Ok(())
        }
        ChannelCommand::Remove(a) => {
            let addr = a.client.orderer_addr()?;
            let id = a.client.member("admin")?;
            admin(
                &addr,
                &id,
                &a.channel,
                admin_command::Command::Remove(RemoveChannel {
                    channel_id: a.channel.clone(),
                }),
            )
            .await?;
            println!("removed channel {} from {addr}", a.channel);
            Ok(())
        }
        ChannelCommand::Info(a) => {
            let net = a.client.load_network()?;
            let channel = match (&a.channel, &net) {
                (Some(c), _) => c.clone(),
                (None, Some(n)) => n.channel(None)?.name.clone(),
                (None, None) => bail!("--channel is required without --network"),
            };
            if a.peers {
                return discovered_peers(&a, net.as_ref(), &channel).await;
            }
            let id = a.client.member("admin")?;
            let addr = crate::client::first_reachable(&a.client.orderer_addrs()?, &id).await?;
            let resp = admin(
                &addr,
                &id,
                &channel,
                admin_command::Command::Info(GetChannelInfo {
                    channel_id: channel.clone(),
                }),
            )
            .await?;
            let info = resp.channel.unwrap_or_default();
            if a.json {
                println!("{}", serde_json::to_string_pretty(&info_json(&info))?);
            } else {
                println!("channel:        {}", info.channel_id);
                println!("node:           {addr}");
                println!("height:         {}", info.height);
                println!("last block:     {}", hex::encode(&info.last_block_hash));
                println!("consensus:      {}", info.consensus_type);
                println!("role:           {}", info.role);
                if !info.leader.is_empty() {
                    println!("leader:         {} (term {})", info.leader, info.term);
                }
                println!("ack mode:       {}", ack_name(info.ack_mode));
                println!("config seq:     {}", info.config_sequence);
                println!(
                    "tx validity:    {}",
                    describe_window(info.tx_validity_window_s)
                );
                if info.node_role == "peer" {
                    println!("commit hash:    {}", hex::encode(&info.commit_hash));
                    if info.expiry_floor_ms > 0 {
                        println!(
                            "expiry floor:   {} ms (transactions signed earlier are EXPIRED)",
                            info.expiry_floor_ms
                        );
                    }
                }
            }
            // With a network file and more than one orderer, every orderer's view: who
            // leads, in which term, and how far each ledger is.
            if let (Some(net), None, None, false) =
                (&net, &a.client.node, &a.client.orderer, a.json)
            {
                let orderers: Vec<_> = net.nodes_with_role("orderer").collect();
                if orderers.len() > 1 {
                    println!("orderers:");
                    for n in orderers {
                        let admin = net.member(Some(&n.org), "admin")?;
                        let line = match admin_info(&n.grpc_addr, &admin, &channel).await {
                            Ok(i) => format!(
                                "{:<10} height {:<8} term {:<4} leader {}",
                                i.role,
                                i.height,
                                i.term,
                                if i.leader.is_empty() { "-" } else { &i.leader }
                            ),
                            Err(e) => format!("unreachable: {e:#}"),
                        };
                        println!("  {:<12} {:<22} {line}", n.name, n.grpc_addr);
                    }
                }
            }
            Ok(())
        }
    }
}

/// `ordo channel info --peers`: what one peer's discovery sees.
async fn discovered_peers(
    a: &InfoArgs,
    net: Option<&ordo_sdk::network::Network>,
    channel: &str,
) -> anyhow::Result<()> {
    let (name, addr, org) = match (&a.client.orderer, &a.client.node, net) {
        (Some(addr), _, _) => (addr.clone(), addr.clone(), a.client.org.clone()),
        (None, Some(node), Some(net)) => {
            let n = net.node(node)?;
            if n.role != "peer" {
                bail!("--node {node} is an {}; --peers asks a peer", n.role);
            }
            (n.name.clone(), n.grpc_addr.clone(), Some(n.org.clone()))
        }
        (None, None, Some(net)) => {
            let n = net
                .nodes_with_role("peer")
                .find(|p| a.client.org.as_deref().is_none_or(|o| p.org == o))
                .context("the network has no peer of that org")?;
            (n.name.clone(), n.grpc_addr.clone(), Some(n.org.clone()))
        }
        (None, _, None) => bail!("say which peer: --peer HOST:PORT or --network DIR/network.json"),
    };
    let client = ClientArgs {
        org: org.or_else(|| a.client.org.clone()),
        ..a.client.clone()
    };
    let member = client.member("client")?;
    let gateway =
        ordo_sdk::gateway::Gateway::connect(&addr, &member.transport, member.identity).await?;
    let peers = gateway.peers(channel).await?;
    let now = ordo_proto::now_ms();
    if a.json {
        let list: Vec<serde_json::Value> = peers
            .iter()
            .map(|p| {
                serde_json::json!({
                    "org": p.org,
                    "subject": p.subject,
                    "endpoint": p.endpoint,
                    "chaincodes": p.chaincodes,
                    "height": p.height,
                    "issued_ms": p.issued_ms,
                    "age_ms": now.saturating_sub(p.issued_ms),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "channel": channel,
                "asked": addr,
                "peers": list,
            }))?
        );
        return Ok(());
    }
    println!("peers of channel {channel} as {name} ({addr}) sees them:");
    if peers.is_empty() {
        println!(
            "  none: the channel names no anchor peers (Organization.anchor_peers), or the \
             peer has not announced itself yet"
        );
    }
    println!(
        "  {:<10} {:<22} {:<18} {:>8} {:>7}  chaincodes",
        "org", "endpoint", "name", "height", "age"
    );
    for p in &peers {
        println!(
            "  {:<10} {:<22} {:<18} {:>8} {:>6.1}s  {}",
            p.org,
            p.endpoint,
            p.subject,
            p.height,
            now.saturating_sub(p.issued_ms) as f64 / 1000.0,
            p.chaincodes.join(", ")
        );
    }
    Ok(())
}

/// A channel's info as one node sees it.
async fn admin_info(
    addr: &str,
    admin: &ordo_sdk::network::Member,
    channel: &str,
) -> anyhow::Result<ChannelInfo> {
    let resp = crate::client::admin(
        addr,
        admin,
        channel,
        admin_command::Command::Info(GetChannelInfo {
            channel_id: channel.to_string(),
        }),
    )
    .await?;
    Ok(resp.channel.unwrap_or_default())
}

fn ack_name(mode: i32) -> &'static str {
    match AckMode::try_from(mode) {
        Ok(AckMode::Committed) => "committed",
        Ok(AckMode::Enqueued) => "enqueued",
        _ => "unknown",
    }
}

fn info_json(i: &ChannelInfo) -> serde_json::Value {
    serde_json::json!({
        "channel": i.channel_id,
        "height": i.height,
        "last_block_hash": hex::encode(&i.last_block_hash),
        "consensus": i.consensus_type,
        "role": i.role,
        "leader": if i.leader.is_empty() { serde_json::Value::Null } else { i.leader.clone().into() },
        "term": i.term,
        "ack_mode": ack_name(i.ack_mode),
        "config_sequence": i.config_sequence,
        "node_role": i.node_role,
        "commit_hash": if i.commit_hash.is_empty() { serde_json::Value::Null } else { hex::encode(&i.commit_hash).into() },
        "tx_validity_window_s": i.tx_validity_window_s,
        "expiry_floor_ms": i.expiry_floor_ms,
    })
}

/// Writes an encoded block to `path`.
pub fn write_block(path: &Path, block: &Block) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    std::fs::write(path, block.encode_to_vec())
        .with_context(|| format!("writing {}", path.display()))
}

/// A tx validity window as people read it.
pub fn describe_window(seconds: u64) -> String {
    if seconds == 0 {
        "off (transactions never expire)".into()
    } else {
        format!("{seconds} s")
    }
}
