//! `ordo peer snapshot`: a peer writes a signed snapshot of one channel (world state, tx
//! index, commit hash, config block) at its committed height, while it keeps committing.
//! Another peer joins the channel from it with `ordo channel join --snapshot DIR`
//! instead of replaying every block; see [`ordo_ledger::snapshot`] for the files and
//! `ordo_peer::snapshot` for what a joining peer checks.
//!
//! Like a backup, the snapshot is written on the peer's own filesystem
//! (`<data_dir>/snapshots/<channel>-<height>/`); the request carries only the channel.
//! Copy the directory to the joining peer's host.

use anyhow::Context;
use clap::Args;

use ordo_proto::pb::admin::{admin_command, TakeSnapshot};

use crate::client::{admin, ClientArgs};

/// `ordo peer snapshot`
#[derive(Args)]
pub struct SnapshotArgs {
    /// The channel to snapshot.
    #[arg(long)]
    pub channel: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The peer (`--peer ADDR`, or `--network` with `--node`) and the admin who signs
    /// (`--key/--cert`, or `--org` of the network file).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs `ordo peer snapshot`.
pub async fn run(a: SnapshotArgs) -> anyhow::Result<()> {
    let addr = a.client.orderer_addr()?;
    let id = a.client.member("admin")?;
    let resp = admin(
        &addr,
        &id,
        &a.channel,
        admin_command::Command::Snapshot(TakeSnapshot {
            channel_id: a.channel.clone(),
        }),
    )
    .await?;
    let s = resp
        .snapshot
        .context("the peer answered SUCCESS without describing the snapshot")?;
    if a.json {
        let out = serde_json::json!({
            "channel": s.channel_id,
            "node": addr,
            "height": s.height,
            "last_block_hash": hex::encode(&s.last_block_hash),
            "commit_hash": hex::encode(&s.commit_hash),
            "path": s.path,
            "state_records": s.state_records,
            "txid_records": s.txid_records,
            "bytes": s.bytes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "snapshot of channel {} at height {} written by {addr} to {} (on the peer)",
        s.channel_id, s.height, s.path
    );
    println!(
        "  {} state keys, {} tx ids, {} bytes; last block {}; commit hash {}",
        s.state_records,
        s.txid_records,
        s.bytes,
        hex::encode(&s.last_block_hash),
        hex::encode(&s.commit_hash)
    );
    println!(
        "  join another peer from it: copy the directory to that peer's host, then \
         `ordo channel join --snapshot <dir> --peer <that peer>`"
    );
    Ok(())
}
