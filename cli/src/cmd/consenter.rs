//! `ordo channel consenter add|remove|update`: change a raft channel's consenters with one
//! config update, signed by the admins of every org in a crypto directory.
//!
//! Raft changes membership one node at a time, so each command changes one consenter;
//! the orderer refuses a change that would leave the channel without a live majority.
//! After `add`, the new node joins from the config block that added it (saved with
//! `--out-block`): it pulls the chain up to there from the other consenters.
//!
//! `update` records a consenter's renewed certificates: renew the node's TLS certificate
//! (`ordo crypto renew --tls-only`; the node picks the new files up by itself), then run
//! `update` for it. The others accept a renewal of the pinned certificate (same subject,
//! same CA) at once, so the channel keeps its quorum throughout; a certificate with a new
//! subject or CA, or a new endpoint, is accepted only once the config block commits, so
//! the orderer refuses an update unless the other consenters alone are a live majority.
//! Rotate one node at a time.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use prost::Message;
use tokio_stream::StreamExt;

use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::pb::common::{
    Block, ChannelConfig, ConfigSignature, ConfigUpdate, Consenter, HeaderType, Status as Code,
};
use ordo_proto::pb::orderer::{deliver_response, SeekBehavior};
use ordo_sdk::network::Member;
use ordo_sdk::transport::Transport;

use crate::cmd::channel::write_block;
use crate::cmd::crypto::Manifest;

/// How long to keep resubmitting while the channel has no leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// How long to wait for the config block after the update was accepted.
const CONFIG_BLOCK_WAIT: Duration = Duration::from_secs(60);

/// `ordo channel consenter ...`
#[derive(Subcommand)]
pub enum ConsenterCommand {
    /// Add an orderer to a raft channel's consenters. Then join the new node with the
    /// config block that added it (`--out-block`).
    Add(AddArgs),
    /// Remove an orderer from a raft channel's consenters; it stops ordering for the
    /// channel.
    Remove(RemoveArgs),
    /// Pin a consenter's renewed certificates (read from the crypto directory, after
    /// `ordo crypto renew`) or move its endpoint. One consenter at a time: refused unless
    /// the other consenters alone are a live majority (waits up to 30 s for them).
    Update(UpdateConsenterArgs),
}

/// What both commands need.
#[derive(Args, Debug, Clone)]
pub struct UpdateArgs {
    /// The consortium's crypto directory (its org admins sign the update).
    #[arg(long)]
    pub crypto: PathBuf,
    /// A running orderer of the channel (host:port) to submit the update to.
    #[arg(long)]
    pub orderer: String,
    /// The channel.
    #[arg(long)]
    pub channel: String,
    /// Save the config block that makes the change here (the new node joins from it).
    #[arg(long)]
    pub out_block: Option<PathBuf>,
}

/// `ordo channel consenter add`
#[derive(Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub update: UpdateArgs,
    /// The new consenter's name, unique in the channel (e.g. orderer3).
    #[arg(long)]
    pub id: String,
    /// The new node's gRPC endpoint (host:port), as the other orderers reach it.
    #[arg(long)]
    pub endpoint: String,
    /// The org whose orderer identity the new node runs with.
    #[arg(long)]
    pub org: String,
    /// The member name of that identity in the crypto directory (default: the id; see
    /// `ordo crypto issue`).
    #[arg(long)]
    pub member: Option<String>,
}

/// `ordo channel consenter update`
#[derive(Args)]
pub struct UpdateConsenterArgs {
    #[command(flatten)]
    pub update: UpdateArgs,
    /// The consenter to update.
    #[arg(long)]
    pub id: String,
    /// The org whose orderer identity the node runs with.
    #[arg(long)]
    pub org: String,
    /// The member name of that identity in the crypto directory (default: the id).
    #[arg(long)]
    pub member: Option<String>,
    /// A new gRPC endpoint (host:port) for the node (default: unchanged).
    #[arg(long)]
    pub endpoint: Option<String>,
}

/// `ordo channel consenter remove`
#[derive(Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub update: UpdateArgs,
    /// The consenter to remove.
    #[arg(long)]
    pub id: String,
}

/// Runs a consenter command.
pub async fn run(cmd: ConsenterCommand) -> anyhow::Result<()> {
    match cmd {
        ConsenterCommand::Add(a) => {
            let manifest = Manifest::load(&a.update.crypto)?;
            let member = a.member.clone().unwrap_or_else(|| a.id.clone());
            let consenter = consenter_from_files(&manifest, &a.org, &member, &a.id, &a.endpoint)?;
            let block = change(&a.update, &manifest, false, |consenters| {
                if consenters.iter().any(|c| c.id == consenter.id) {
                    bail!("{:?} is already a consenter", consenter.id);
                }
                consenters.push(consenter.clone());
                Ok(())
            })
            .await?;
            println!(
                "added consenter {} ({}) to channel {} in config block {}",
                a.id,
                a.endpoint,
                a.update.channel,
                ordo_proto::block::number(&block)
            );
            if let Some(path) = &a.update.out_block {
                println!(
                    "join it with: ordo channel join --orderer {} --genesis {} --key ... --cert ...",
                    a.endpoint,
                    path.display()
                );
            }
            Ok(())
        }
        ConsenterCommand::Update(a) => {
            let manifest = Manifest::load(&a.update.crypto)?;
            let member = a.member.clone().unwrap_or_else(|| a.id.clone());
            let block = change(&a.update, &manifest, true, |consenters| {
                let current = consenters
                    .iter_mut()
                    .find(|c| c.id == a.id)
                    .with_context(|| format!("{:?} is not a consenter", a.id))?;
                let endpoint = a.endpoint.clone().unwrap_or_else(|| current.endpoint.clone());
                let renewed = consenter_from_files(&manifest, &a.org, &member, &a.id, &endpoint)?;
                if renewed == *current {
                    bail!(
                        "consenter {:?} already has these certificates and endpoint; renew them first (`ordo crypto renew --org {} --name {member} --tls-only`)",
                        a.id,
                        a.org
                    );
                }
                *current = renewed;
                Ok(())
            })
            .await?;
            println!(
                "updated consenter {} on channel {} in config block {}",
                a.id,
                a.update.channel,
                ordo_proto::block::number(&block)
            );
            Ok(())
        }
        ConsenterCommand::Remove(a) => {
            let manifest = Manifest::load(&a.update.crypto)?;
            let block = change(&a.update, &manifest, false, |consenters| {
                let before = consenters.len();
                consenters.retain(|c| c.id != a.id);
                if consenters.len() == before {
                    bail!("{:?} is not a consenter", a.id);
                }
                Ok(())
            })
            .await?;
            println!(
                "removed consenter {} from channel {} in config block {}",
                a.id,
                a.update.channel,
                ordo_proto::block::number(&block)
            );
            Ok(())
        }
    }
}

/// The consenter `id` at `endpoint` as `org`'s `member` in the crypto directory: its
/// identity certificate and the TLS certificate the Cluster service will pin.
fn consenter_from_files(
    manifest: &Manifest,
    org: &str,
    member: &str,
    id: &str,
    endpoint: &str,
) -> anyhow::Result<Consenter> {
    let entry = manifest
        .orgs
        .iter()
        .find(|o| o.name == org)
        .with_context(|| format!("org {org:?} is not in the crypto directory"))?;
    let files = entry.members.get(member).with_context(|| {
        format!(
            "org {org} has no member {member:?}; issue one with `ordo crypto issue --org {org} --name {member} --role orderer`"
        )
    })?;
    let cert = ordo_proto::identity::read_hex(&files.cert)?;
    Ok(Consenter {
        id: id.to_string(),
        endpoint: endpoint.to_string(),
        certificate: cert.into(),
        tls_cert: match &files.tls {
            Some(tls) => crate::pki::cert_der(&tls.cert)?.into(),
            None => Bytes::new(),
        },
    })
}

/// Fetches the config in force, applies `edit` to its consenters, submits the update
/// signed by every org's admin, and returns the config block once it is written.
async fn change(
    args: &UpdateArgs,
    manifest: &Manifest,
    retry_lost_quorum: bool,
    edit: impl FnOnce(&mut Vec<Consenter>) -> anyhow::Result<()>,
) -> anyhow::Result<Block> {
    let mut admins = Vec::new();
    let mut transport = None;
    for o in &manifest.orgs {
        let files = o
            .members
            .get("admin")
            .with_context(|| format!("org {} has no admin identity", o.name))?;
        admins.push(files.load()?);
        if transport.is_none() {
            transport = Some(files.transport()?);
        }
    }
    let first = admins.first().context("no orgs in the crypto directory")?;
    let submitter = &Member {
        identity: first.clone(),
        transport: transport.unwrap_or_default(),
    };
    let (current, _) = current_config(&args.orderer, submitter, &args.channel).await?;
    let mut proposed = current.clone();
    proposed.sequence += 1;
    let orderer = proposed
        .orderer
        .as_mut()
        .context("the channel config has no orderer section")?;
    if orderer.consensus_type != "raft" {
        bail!(
            "channel {} runs {}; only raft channels have consenters to change",
            args.channel,
            orderer.consensus_type
        );
    }
    edit(&mut orderer.consenters)?;
    config::validate(&proposed)?;
    let bytes = proposed.encode_to_vec();
    let signatures = admins
        .iter()
        .map(|a| ConfigSignature {
            signer: a.cert_bytes().clone(),
            signature: Bytes::from(a.sign(&bytes).to_vec()),
        })
        .collect();
    let update = ConfigUpdate {
        config: bytes.into(),
        signatures,
    };
    let (env, tx_id) = envelope::create_signed(
        &submitter.identity,
        &args.channel,
        HeaderType::ConfigUpdate,
        update.encode_to_vec().into(),
        ordo_proto::now_ms(),
    );
    submit(&args.orderer, &submitter.transport, env, retry_lost_quorum).await?;
    let deadline = tokio::time::Instant::now() + CONFIG_BLOCK_WAIT;
    loop {
        let (cfg, block) = current_config(&args.orderer, submitter, &args.channel).await?;
        if cfg.sequence >= proposed.sequence {
            if let Some(path) = &args.out_block {
                write_block(path, &block)?;
            }
            return Ok(block);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("config update {tx_id} was accepted but no config block appeared within {CONFIG_BLOCK_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Broadcasts the config update; while the channel has no leader (an election, a node
/// starting) it waits and resubmits, up to [`LEADER_WAIT`]. A membership change that
/// would lose quorum is not retried: it needs the operator. A rekey refused for quorum
/// (`retry_lost_quorum`) is retried within the same wait: the leader counts as live only
/// the consenters it heard from within the last election timeout, which a busy or
/// restarting node can miss for a moment.
async fn submit(
    addr: &str,
    transport: &Transport,
    env: ordo_proto::pb::common::Envelope,
    retry_lost_quorum: bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    let ch = ordo_sdk::orderer::connect(addr, transport)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut client = ordo_sdk::orderer::broadcast_client(ch);
    loop {
        let mut answers = client
            .broadcast(tokio_stream::once(env.clone()))
            .await
            .context("Broadcast")?
            .into_inner();
        let answer = answers
            .next()
            .await
            .context("Broadcast ended without an answer")?
            .context("Broadcast")?;
        if answer.status == Code::Success as i32 {
            return Ok(());
        }
        let name = Code::try_from(answer.status)
            .map(|c| c.as_str_name())
            .unwrap_or("UNKNOWN");
        let transient = answer.status == Code::ServiceUnavailable as i32
            && (retry_lost_quorum || !answer.info.contains("lose quorum"));
        if !transient || tokio::time::Instant::now() >= deadline {
            bail!(
                "the orderer refused the config update: {name}: {}",
                answer.info
            );
        }
        eprintln!(
            "waiting for the channel to accept the update ({})",
            answer.info
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The configuration in force on `channel` and the block that holds it.
async fn current_config(
    addr: &str,
    identity: &Member,
    channel: &str,
) -> anyhow::Result<(ChannelConfig, Block)> {
    let newest = one_block(addr, identity, channel, None).await?;
    let last_config = newest.metadata.as_ref().map(|m| m.last_config).unwrap_or(0);
    let block = if ordo_proto::block::number(&newest) == last_config {
        newest
    } else {
        one_block(addr, identity, channel, Some(last_config)).await?
    };
    let cfg = config::config_from_block(&block)
        .with_context(|| format!("block {last_config} holds no config"))?;
    Ok((cfg, block))
}

/// Block `number` (`None`: the newest) over Deliver.
async fn one_block(
    addr: &str,
    member: &Member,
    channel: &str,
    number: Option<u64>,
) -> anyhow::Result<Block> {
    let identity = &member.identity;
    let ch = ordo_sdk::orderer::connect(addr, &member.transport)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut client = ordo_sdk::orderer::broadcast_client(ch);
    let at = ordo_sdk::orderer::position(number);
    let req = ordo_sdk::orderer::seek_request(
        identity,
        channel,
        at,
        Some(at),
        SeekBehavior::FailIfNotReady,
    );
    let mut stream = client
        .deliver(req)
        .await
        .context("Deliver request")?
        .into_inner();
    let msg = stream
        .next()
        .await
        .context("Deliver stream ended without a block")?
        .context("Deliver stream")?;
    match msg.r#type {
        Some(deliver_response::Type::Block(b)) => Ok(b),
        Some(deliver_response::Type::Status(code)) => {
            let name = Code::try_from(code)
                .map(|c| c.as_str_name())
                .unwrap_or("UNKNOWN");
            bail!(
                "Deliver ended with {name} before sending a block: {}",
                msg.info
            )
        }
        None => bail!("Deliver sent an empty response"),
    }
}
