//! `ordo channel consenter add|remove|update`: change a raft channel's consenters with one
//! config update, signed by the admins of every org in a crypto directory, or written to a
//! file (`--out-update`) whose signatures each org adds on its own machine (see
//! [`crate::cmd::update`]).
//!
//! Raft changes membership one node at a time, so each command changes one consenter;
//! the orderer refuses a change that would leave the channel without a live majority.
//! After `add`, the new node joins from the config block that added it (saved with
//! `--out-block`): its ledger starts right after that block, checked against the other
//! consenters' copy, without the blocks below it.
//!
//! The new consenter's certificates come from a crypto directory holding its org
//! (`--crypto`, `--org`, `--member`) or from its org's bundle (`--org-bundle`), which is
//! how another org's orderer joins: the org exports its bundle, and an admin of the
//! channel proposes the change from it.
//!
//! `update` records a consenter's renewed certificates: renew the node's TLS certificate
//! (`ordo crypto renew --tls-only`; the node picks the new files up by itself), then run
//! `update` for it. The others accept a renewal of the pinned certificate (same subject,
//! same CA) at once, so the channel keeps its quorum throughout; a certificate with a new
//! subject or CA, or a new endpoint, is accepted only once the config block commits, so
//! the orderer refuses an update unless the other consenters alone are a live majority.
//! Rotate one node at a time.

use std::path::PathBuf;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};

use ordo_proto::pb::common::{ChannelConfig, Consenter};

use crate::cmd::bundle::{self, VerifiedBundle};
use crate::cmd::crypto::Manifest;
pub use crate::cmd::update::UpdateArgs;

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
    /// `ordo crypto renew`, or from a re-exported org bundle) or move its endpoint. One
    /// consenter at a time: refused unless the other consenters alone are a live majority
    /// (waits up to 30 s for them).
    Update(UpdateConsenterArgs),
}

/// `ordo channel consenter add`
#[derive(Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub update: UpdateArgs,
    /// The new consenter's name, unique in the channel (e.g. orderer3; with
    /// --org-bundle, default `<member>.<org>`).
    #[arg(long)]
    pub id: Option<String>,
    /// The new node's gRPC endpoint (host:port), as the other orderers reach it (default
    /// with --org-bundle: the bundle's).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The org whose orderer identity the new node runs with (in --crypto).
    #[arg(long, required_unless_present = "org_bundle")]
    pub org: Option<String>,
    /// The org bundle of the new node's org (`ordo crypto export`), instead of --crypto
    /// and --org, for the node's certificates.
    #[arg(long, conflicts_with = "org")]
    pub org_bundle: Option<PathBuf>,
    /// The member name of that identity in the crypto directory or the bundle (default:
    /// the id with --crypto; the bundle's only orderer, or `orderer`, with --org-bundle).
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
    /// The org whose orderer identity the node runs with (in --crypto).
    #[arg(long, required_unless_present = "org_bundle")]
    pub org: Option<String>,
    /// The org bundle holding the node's renewed certificates, instead of --crypto and
    /// --org.
    #[arg(long, conflicts_with = "org")]
    pub org_bundle: Option<PathBuf>,
    /// The member name of that identity in the crypto directory or the bundle (default:
    /// the id with --crypto; the bundle's only orderer, or `orderer`, with --org-bundle).
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

/// Where a consenter's certificates come from.
enum Source {
    Crypto {
        manifest: Manifest,
        org: String,
        member: Option<String>,
    },
    Bundle {
        bundle: Box<VerifiedBundle>,
        member: Option<String>,
    },
}

impl Source {
    fn new(
        update: &UpdateArgs,
        org: &Option<String>,
        org_bundle: &Option<PathBuf>,
        member: &Option<String>,
    ) -> anyhow::Result<Self> {
        match (org_bundle, org) {
            (Some(path), _) => Ok(Source::Bundle {
                bundle: Box::new(bundle::load(path)?),
                member: member.clone(),
            }),
            (None, Some(org)) => Ok(Source::Crypto {
                manifest: update.manifest()?.with_context(|| {
                    format!(
                        "--org {org} names an org of a crypto directory: give --crypto DIR, or \
                         the org's bundle with --org-bundle"
                    )
                })?,
                org: org.clone(),
                member: member.clone(),
            }),
            (None, None) => bail!("say whose certificates: --org (with --crypto) or --org-bundle"),
        }
    }

    /// The default consenter id (bundles only; a crypto directory's orderers need --id).
    fn default_id(&self) -> anyhow::Result<String> {
        match self {
            Source::Bundle { bundle, member } => {
                Ok(bundle.consenter_id(bundle.orderer(member.as_deref())?))
            }
            Source::Crypto { .. } => bail!("--id is required with --crypto"),
        }
    }

    /// The default endpoint (the bundle's).
    fn default_endpoint(&self) -> Option<String> {
        match self {
            Source::Bundle { bundle, member } => bundle
                .orderer(member.as_deref())
                .ok()
                .and_then(|o| o.endpoint.clone()),
            Source::Crypto { .. } => None,
        }
    }

    /// The consenter `id` at `endpoint`.
    fn consenter(&self, id: &str, endpoint: &str) -> anyhow::Result<Consenter> {
        match self {
            Source::Bundle { bundle, member } => {
                let node = bundle.orderer(member.as_deref())?;
                Ok(bundle.consenter(node, id, endpoint))
            }
            Source::Crypto {
                manifest,
                org,
                member,
            } => consenter_from_files(manifest, org, member.as_deref().unwrap_or(id), id, endpoint),
        }
    }
}

/// The raft consenters of a proposed config, or why it has none to change.
fn raft_consenters<'a>(
    cfg: &'a mut ChannelConfig,
    channel: &str,
) -> anyhow::Result<&'a mut Vec<Consenter>> {
    let orderer = cfg
        .orderer
        .as_mut()
        .context("the channel config has no orderer section")?;
    if orderer.consensus_type != "raft" {
        bail!(
            "channel {channel} runs {}; only raft channels have consenters to change",
            orderer.consensus_type
        );
    }
    Ok(&mut orderer.consenters)
}

/// Runs a consenter command.
pub async fn run(cmd: ConsenterCommand) -> anyhow::Result<()> {
    match cmd {
        ConsenterCommand::Add(a) => {
            let source = Source::new(&a.update, &a.org, &a.org_bundle, &a.member)?;
            let id = match &a.id {
                Some(id) => id.clone(),
                None => source.default_id()?,
            };
            let endpoint = a
                .endpoint
                .clone()
                .or_else(|| source.default_endpoint())
                .context("--endpoint HOST:PORT is required (the bundle gives none)")?;
            let consenter = source.consenter(&id, &endpoint)?;
            let channel = a.update.channel.clone();
            let block = crate::cmd::update::propose(&a.update, |cfg| {
                let consenters = raft_consenters(cfg, &channel)?;
                if consenters.iter().any(|c| c.id == consenter.id) {
                    bail!("{:?} is already a consenter", consenter.id);
                }
                if consenters
                    .iter()
                    .any(|c| c.certificate == consenter.certificate)
                {
                    bail!(
                        "the certificate of {:?} already belongs to another consenter",
                        consenter.id
                    );
                }
                consenters.push(consenter.clone());
                Ok(())
            })
            .await?;
            if let Some(block) = block {
                println!(
                    "added consenter {id} ({endpoint}) to channel {channel} in config block {}",
                    ordo_proto::block::number(&block)
                );
                if let Some(path) = &a.update.out_block {
                    println!(
                        "join it with: ordo channel join --orderer {endpoint} --genesis {} --key ... --cert ...",
                        path.display()
                    );
                }
            }
            Ok(())
        }
        ConsenterCommand::Update(a) => {
            let source = Source::new(&a.update, &a.org, &a.org_bundle, &a.member)?;
            let channel = a.update.channel.clone();
            let block = crate::cmd::update::propose(&a.update, |cfg| {
                let consenters = raft_consenters(cfg, &channel)?;
                let current = consenters
                    .iter_mut()
                    .find(|c| c.id == a.id)
                    .with_context(|| format!("{:?} is not a consenter", a.id))?;
                let endpoint = a.endpoint.clone().unwrap_or_else(|| current.endpoint.clone());
                let renewed = source.consenter(&a.id, &endpoint)?;
                if renewed == *current {
                    bail!(
                        "consenter {:?} already has these certificates and endpoint; renew them first (`ordo crypto renew --org ORG --name MEMBER --tls-only`)",
                        a.id,
                    );
                }
                *current = renewed;
                Ok(())
            })
            .await?;
            if let Some(block) = block {
                println!(
                    "updated consenter {} on channel {channel} in config block {}",
                    a.id,
                    ordo_proto::block::number(&block)
                );
            }
            Ok(())
        }
        ConsenterCommand::Remove(a) => {
            let channel = a.update.channel.clone();
            let block = crate::cmd::update::propose(&a.update, |cfg| {
                let consenters = raft_consenters(cfg, &channel)?;
                let before = consenters.len();
                consenters.retain(|c| c.id != a.id);
                if consenters.len() == before {
                    bail!("{:?} is not a consenter", a.id);
                }
                Ok(())
            })
            .await?;
            if let Some(block) = block {
                println!(
                    "removed consenter {} from channel {channel} in config block {}",
                    a.id,
                    ordo_proto::block::number(&block)
                );
            }
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
