//! `ordo node backup|restore`: a consistent online backup of a running node's channel
//! ledgers, and its offline restore into a new node's data directory.
//!
//! `backup` is an Admin command (signed by an admin of the node's org, executed at most
//! once): the node itself writes RocksDB checkpoints of its channels into
//! `<data_dir>/backups/<name>/` on its own filesystem and answers with each channel's
//! height; the request carries only the name, never a path. Copy the directory off the
//! node (`docker cp`, a volume, rsync) to keep it. `restore` runs where the backup was
//! copied to, with the target node stopped: it copies the channels into an empty data
//! directory and verifies every block before it says done. See
//! [`ordo_ledger::backup`] for what is consistent and deploy/README.md for the steps.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use ordo_proto::pb::admin::{admin_command, Backup};

use crate::client::{admin, ClientArgs};

/// `ordo node backup`
#[derive(Args)]
pub struct BackupArgs {
    /// Name of the backup: the node writes it to `<data_dir>/backups/NAME/`. 1 to 64
    /// ASCII letters, digits, '.', '_' and '-', not starting with '.'; an existing name is
    /// refused.
    #[arg(long)]
    pub name: String,
    /// Back up only this channel (default: every channel the node serves).
    #[arg(long)]
    pub channel: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The node (`--peer`/`--orderer ADDR`, or `--network` with `--node`) and the admin
    /// who signs (`--key/--cert`, or `--org` of the network file).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `ordo node restore`
#[derive(Args)]
pub struct RestoreArgs {
    /// The backup directory (`<data_dir>/backups/NAME` as the node wrote it, or a copy).
    #[arg(long)]
    pub backup: PathBuf,
    /// The data directory of the stopped or new node to restore into: must be missing or
    /// empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ordo node backup`.
pub async fn backup(a: BackupArgs) -> anyhow::Result<()> {
    let addr = a.client.orderer_addr()?;
    let id = a.client.member("admin")?;
    let channel = a.channel.clone().unwrap_or_default();
    let resp = admin(
        &addr,
        &id,
        &channel,
        admin_command::Command::Backup(Backup {
            name: a.name.clone(),
            channel_id: channel.clone(),
        }),
    )
    .await?;
    let b = resp
        .backup
        .context("the node answered SUCCESS without describing the backup")?;
    if a.json {
        let channels: Vec<_> = b
            .channels
            .iter()
            .map(|c| {
                serde_json::json!({
                    "channel": c.channel_id,
                    "height": c.height,
                    "last_block_hash": hex::encode(&c.last_block_hash),
                    "commit_hash": if c.commit_hash.is_empty() { serde_json::Value::Null } else { hex::encode(&c.commit_hash).into() },
                    "path": c.path,
                })
            })
            .collect();
        let out = serde_json::json!({
            "name": b.name,
            "node": addr,
            "path": b.path,
            "channels": channels,
            "skipped": b.skipped,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "backup {} written by {addr} to {} (on the node)",
        b.name, b.path
    );
    for c in &b.channels {
        print!(
            "  {:<16} height {:<8} last block {}",
            c.channel_id,
            c.height,
            hex::encode(&c.last_block_hash)
        );
        if !c.commit_hash.is_empty() {
            print!("  commit hash {}", hex::encode(&c.commit_hash));
        }
        println!();
    }
    for s in &b.skipped {
        println!("  skipped {s}");
    }
    Ok(())
}

/// Runs `ordo node restore`.
pub fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let now_secs = ordo_proto::now_ms() / 1000;
    let (manifest, restored) = ordo_ledger::backup::restore(&a.backup, &a.data_dir, now_secs)
        .with_context(|| {
            format!(
                "restoring {} into {}",
                a.backup.display(),
                a.data_dir.display()
            )
        })?;
    if a.json {
        let channels: Vec<_> = restored
            .iter()
            .map(|r| {
                serde_json::json!({
                    "channel": r.channel_id,
                    "height": r.height,
                    "envelopes": r.envelopes,
                })
            })
            .collect();
        let out = serde_json::json!({
            "backup": manifest.name,
            "from_node": manifest.node,
            "node_role": manifest.node_role,
            "data_dir": a.data_dir,
            "channels": channels,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for r in &restored {
        println!(
            "  {:<16} blocks 0..{} ({} envelopes): hash chain, Merkle data hashes and orderer signatures verify",
            r.channel_id, r.height, r.envelopes
        );
    }
    println!(
        "restored backup {} of {} ({}) into {}: start the {} with this data_dir; it catches up from the others",
        manifest.name,
        manifest.node,
        manifest.node_role,
        a.data_dir.display(),
        manifest.node_role
    );
    Ok(())
}
