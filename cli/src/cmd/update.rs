//! Channel config updates: proposing one against the config in force, collecting the
//! admins' signatures (in one directory, or as a file that travels between orgs), and
//! submitting it.
//!
//! On one machine (`ordo up`, or a crypto directory holding every org) the commands that
//! change a channel (`ordo channel consenter ...`, `ordo channel org ...`) sign with every
//! org's admin and submit at once. Across machines they write the proposed update to a
//! file instead (`--out-update FILE`), and the file travels, as with Fabric's
//! `peer channel signconfigtx`:
//!
//! ```text
//! BankA:  ordo channel org add --org-bundle BankD.org.json ... --out-update add-d.json
//! BankA:  ordo channel update sign --update add-d.json --key admin.key --cert admin.cert
//! BankB:  ordo channel update sign --update add-d.json --key admin.key --cert admin.cert
//! any:    ordo channel update submit --update add-d.json --orderer HOST:PORT ...
//! ```
//!
//! The file (JSON, [`UPDATE_FORMAT`]) holds the configuration in force when it was made,
//! the proposed configuration's exact bytes (what every admin signs, and what the
//! orderer's `ConfigUpdate.config` carries), their SHA-256, and the signatures so far.
//! `sign` and `show` print what the update changes and whether the channel's Admins policy
//! is met by the signatures, judged against the recorded configuration in force; the
//! orderer judges again against the live one. `submit` refuses a file made against a
//! configuration that is no longer in force (another update came first): make it again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;

use ordo_proto::cert::{Msp, VerifiedCert};
use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{
    Block, ChannelConfig, ConfigSignature, ConfigUpdate, HeaderType, Role, Status as Code,
};
use ordo_sdk::network::Member;
use ordo_sdk::tls::{ClientTls, TlsFiles};
use ordo_sdk::transport::Transport;

use crate::client::ClientArgs;
use crate::cmd::channel::write_block;
use crate::cmd::crypto::Manifest;

mod describe;
mod pending;
pub use describe::{describe_change, describe_config};
pub use pending::PendingUpdate;
use pending::*;

/// How long to keep resubmitting while the channel has no leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// How long to wait for the config block after the update was accepted.
const CONFIG_BLOCK_WAIT: Duration = Duration::from_secs(60);

/// The `format` of update files this build writes and reads.
pub const UPDATE_FORMAT: &str = "ordo-config-update/1";
/// Largest update file read (a config with the largest allowed certificates for dozens of
/// orgs is well below it).
pub const MAX_UPDATE_FILE_BYTES: u64 = 8 << 20;
/// Most signatures one update file may carry.
pub const MAX_SIGNATURES: usize = 256;

/// `ordo channel update ...`
#[derive(Subcommand)]
pub enum UpdateCommand {
    /// Print what an update file changes, who signed it and whether that is enough.
    Show(ShowArgs),
    /// Sign an update file as one admin (each org on its own machine); the signature is
    /// appended to the file.
    Sign(SignArgs),
    /// Submit a signed update file to an orderer and wait for its config block.
    Submit(SubmitArgs),
}

/// `ordo channel update show`
#[derive(Args)]
pub struct ShowArgs {
    /// The update file.
    #[arg(long)]
    pub update: PathBuf,
}

/// `ordo channel update sign`
#[derive(Args)]
pub struct SignArgs {
    /// The update file (signed in place unless --out is given).
    #[arg(long)]
    pub update: PathBuf,
    /// Key file of the signing admin.
    #[arg(long)]
    pub key: PathBuf,
    /// Certificate file of the signing admin.
    #[arg(long)]
    pub cert: PathBuf,
    /// Write the signed update here instead of over --update.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `ordo channel update submit`
#[derive(Args)]
pub struct SubmitArgs {
    /// Orderer, submitter identity and TLS files (the submitter can be any member of the
    /// channel; the admins' signatures are in the file).
    #[command(flatten)]
    pub client: ClientArgs,
    /// The signed update file.
    #[arg(long)]
    pub update: PathBuf,
    /// Save the config block that makes the change here.
    #[arg(long)]
    pub out_block: Option<PathBuf>,
}

/// What every command that changes a channel's config takes: where the config in force
/// is read, and whether the update is signed here and submitted, or written to a file.
#[derive(Args, Debug, Clone)]
pub struct UpdateArgs {
    /// A crypto directory: without --out-update, each of its orgs' admins signs the update
    /// (enough of them for the channel's Admins policy, so every org on one machine).
    /// Its first admin reads the channel config and submits, unless --key/--cert say
    /// otherwise.
    #[arg(long)]
    pub crypto: Option<PathBuf>,
    /// A running orderer of the channel (host:port).
    #[arg(long)]
    pub orderer: String,
    /// The channel.
    #[arg(long)]
    pub channel: String,
    /// Save the config block that makes the change here (the new node joins from it).
    #[arg(long)]
    pub out_block: Option<PathBuf>,
    /// Write the proposed update, unsigned, to this file instead of signing and
    /// submitting it; then `ordo channel update sign` (each org) and `... submit`.
    #[arg(long, conflicts_with = "out_block")]
    pub out_update: Option<PathBuf>,
    /// Key file of the identity that reads the channel config (any member; with --cert),
    /// instead of --crypto's first admin.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Certificate file of that identity (with --key).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS CA certificate (PEM) to trust for the orderer; repeat for several (with
    /// --tls-cert/--tls-key; instead of --crypto's admin TLS files).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Vec<PathBuf>,
    /// TLS client certificate (PEM).
    #[arg(long, requires = "tls_ca")]
    pub tls_cert: Option<PathBuf>,
    /// TLS client key (PEM).
    #[arg(long, requires = "tls_ca")]
    pub tls_key: Option<PathBuf>,
}

impl UpdateArgs {
    /// The crypto directory's manifest, when given.
    pub fn manifest(&self) -> anyhow::Result<Option<Manifest>> {
        self.crypto.as_deref().map(Manifest::load).transpose()
    }

    /// Who reads the config and submits: --key/--cert (with --tls-*), else the first
    /// admin of --crypto with its TLS files.
    fn reader(&self, manifest: Option<&Manifest>) -> anyhow::Result<Member> {
        let explicit_tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Transport::Tls(
                ClientTls::from_files(&TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: self.tls_ca.clone(),
                })
                .context("loading the TLS files")?,
            )),
            _ => None,
        };
        let first_admin = manifest
            .map(|m| {
                m.orgs
                    .first()
                    .and_then(|o| o.members.get("admin"))
                    .context("the crypto directory has no org with an admin")
            })
            .transpose()?;
        let identity = match (&self.key, &self.cert, first_admin) {
            (Some(key), Some(cert), _) => Identity::load(key, cert)
                .with_context(|| format!("loading identity {}", key.display()))?,
            (_, _, Some(files)) => files.load()?,
            _ => bail!("say who reads the channel config: --crypto DIR or --key FILE --cert FILE"),
        };
        // TLS: --tls-*, else the crypto directory's first admin's TLS files, else none.
        let transport = match (explicit_tls, first_admin) {
            (Some(t), _) => t,
            (None, Some(files)) => files.transport()?,
            (None, None) => Transport::Plain,
        };
        Ok(Member {
            identity,
            transport,
        })
    }
}

/// Reads the config in force through `args`, applies `edit` to a copy with the next
/// sequence, and either writes the unsigned update (`--out-update`; returns `None`) or
/// signs it with every admin of `--crypto`, submits it and returns the config block.
pub async fn propose(
    args: &UpdateArgs,
    edit: impl FnOnce(&mut ChannelConfig) -> anyhow::Result<()>,
) -> anyhow::Result<Option<Block>> {
    let manifest = args.manifest()?;
    if args.out_update.is_none() && manifest.is_none() {
        bail!(
            "say how the update gets signed: --crypto DIR (its admins sign and it is \
             submitted now) or --out-update FILE (to collect each org's signature with \
             `ordo channel update sign`)"
        );
    }
    let reader = args.reader(manifest.as_ref())?;
    let (current, _) = current_config(&args.orderer, &reader, &args.channel).await?;
    let mut proposed = current.clone();
    proposed.sequence += 1;
    edit(&mut proposed)?;
    config::validate(&proposed)?;
    let mut pending = PendingUpdate::new(&current, &proposed);
    if let Some(path) = &args.out_update {
        pending.save(path)?;
        println!(
            "wrote the unsigned config update of channel {} (config sequence {} -> {}) to {}:",
            pending.channel,
            current.sequence,
            proposed.sequence,
            path.display()
        );
        for line in pending.summary() {
            println!("  {line}");
        }
        println!(
            "next: each org's admin signs it on its own machine \
             (ordo channel update sign --update {} --key admin.key --cert admin.cert), \
             then anyone submits it (ordo channel update submit --update {} --orderer {} ...)",
            path.display(),
            path.display(),
            args.orderer
        );
        return Ok(None);
    }
    let manifest = manifest.context("--crypto")?;
    let now = ordo_proto::now_ms() / 1000;
    for o in &manifest.orgs {
        let files = o
            .members
            .get("admin")
            .with_context(|| format!("org {} has no admin identity", o.name))?;
        pending.sign(&files.load()?, now)?;
    }
    let block = submit_update(&args.orderer, &reader, &pending, args.out_block.as_deref()).await?;
    Ok(Some(block))
}

/// Runs an update command.
pub async fn run(cmd: UpdateCommand) -> anyhow::Result<()> {
    let now = ordo_proto::now_ms() / 1000;
    match cmd {
        UpdateCommand::Show(a) => {
            let pending = PendingUpdate::load(&a.update)?;
            print_status(&pending, now);
            Ok(())
        }
        UpdateCommand::Sign(a) => {
            let mut pending = PendingUpdate::load(&a.update)?;
            let id = Identity::load(&a.key, &a.cert)
                .with_context(|| format!("loading identity {}", a.key.display()))?;
            pending.sign(&id, now)?;
            let out = a.out.as_ref().unwrap_or(&a.update);
            pending.save(out)?;
            println!(
                "signed the update as {} ({} of {}); saved to {}",
                id.subject(),
                id.role().as_str_name(),
                id.org(),
                out.display()
            );
            print_status(&pending, now);
            Ok(())
        }
        UpdateCommand::Submit(a) => {
            let pending = PendingUpdate::load(&a.update)?;
            let (_, policy) = pending.policy_status(now);
            if let Err(e) = policy {
                eprintln!(
                    "warning: by the config the update was made against, its signatures do \
                     not meet the {} policy ({e}); submitting anyway, the orderer decides",
                    pending.policy_name()
                );
            }
            let addr = a.client.orderer_addr()?;
            let member = a.client.member("admin")?;
            let block = submit_update(&addr, &member, &pending, a.out_block.as_deref()).await?;
            println!(
                "config update of channel {} (sequence {}) is in force from config block {}{}",
                pending.channel,
                pending.proposed.sequence,
                ordo_proto::block::number(&block),
                a.out_block
                    .as_ref()
                    .map(|p| format!(", saved to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
    }
}

/// Prints what an update changes, who signed and whether that meets the policy it needs.
fn print_status(pending: &PendingUpdate, now_secs: u64) {
    println!(
        "channel {}: config sequence {} -> {}",
        pending.channel, pending.current.sequence, pending.proposed.sequence
    );
    println!("changes:");
    for line in pending.summary() {
        println!("  {line}");
    }
    println!("after the update:");
    for line in describe_config(&pending.proposed) {
        println!("  {line}");
    }
    let (signers, policy) = pending.policy_status(now_secs);
    if pending.signatures.is_empty() {
        println!("signed by: nobody yet");
    } else {
        println!("signed by:");
        for s in &pending.signatures {
            let line = match ordo_proto::cert::decode(&s.signer) {
                Ok((_, body)) => {
                    let counted = signers
                        .iter()
                        .any(|v| v.public_key.as_bytes().as_slice() == body.public_key.as_ref());
                    format!(
                        "{} of {} ({}){}",
                        body.subject,
                        body.org,
                        Role::try_from(body.role)
                            .map(|r| r.as_str_name())
                            .unwrap_or("?"),
                        if counted {
                            ""
                        } else {
                            " -- not valid in the channel's config, does not count"
                        }
                    )
                }
                Err(e) => format!("(undecodable certificate: {e})"),
            };
            println!("  {line}");
        }
    }
    let orgs: Vec<&str> = {
        let mut v: Vec<&str> = signers.iter().map(|s| &*s.org).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let name = pending.policy_name();
    match policy {
        Ok(()) => println!(
            "{name} policy: met (orgs signed: {}); ready to submit",
            orgs.join(", ")
        ),
        Err(e) => println!("{name} policy: not met yet: {e}"),
    }
}

/// Submits `pending` through `addr` as `submitter` once it was checked to follow from the
/// config in force there, waits for its config block, saves it to `out_block`.
pub async fn submit_update(
    addr: &str,
    submitter: &Member,
    pending: &PendingUpdate,
    out_block: Option<&Path>,
) -> anyhow::Result<Block> {
    let (live, _) = current_config(addr, submitter, &pending.channel).await?;
    if live != pending.current {
        bail!(
            "channel {} is at config sequence {}, but this update was made against sequence \
             {}{}: make the update again from the config in force and collect the signatures \
             again",
            pending.channel,
            live.sequence,
            pending.current.sequence,
            if live.sequence == pending.current.sequence {
                " with other contents"
            } else {
                ""
            }
        );
    }
    // A rekey (a consenter's certificates or endpoint change) is refused while the others
    // are not a live majority, which a busy node can miss for a moment: retried.
    let rekey =
        ordo_consensus::raft::membership::rekeyed_between(&pending.current, &pending.proposed)
            .is_ok_and(|r| r.is_some());
    let update = pending.config_update();
    let (env, tx_id) = envelope::create_signed(
        &submitter.identity,
        &pending.channel,
        HeaderType::ConfigUpdate,
        update.encode_to_vec().into(),
        ordo_proto::now_ms(),
    );
    submit(addr, &submitter.transport, env, rekey).await?;
    let deadline = tokio::time::Instant::now() + CONFIG_BLOCK_WAIT;
    loop {
        let (cfg, block) = current_config(addr, submitter, &pending.channel).await?;
        if cfg.sequence >= pending.proposed.sequence {
            if let Some(path) = out_block {
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
pub async fn current_config(
    addr: &str,
    identity: &Member,
    channel: &str,
) -> anyhow::Result<(ChannelConfig, Block)> {
    Ok(ordo_sdk::lifecycle::config_in_force_with_block(
        addr,
        &identity.transport,
        &identity.identity,
        channel,
    )
    .await?)
}

#[cfg(test)]
mod tests;
