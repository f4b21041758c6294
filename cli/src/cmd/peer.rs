//! `ordo peer --config FILE`: run a peer node until SIGINT or SIGTERM;
//! `ordo peer snapshot`: have a running peer snapshot a channel.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use tokio::net::TcpListener;

use ordo_peer::node::config::PeerConfig;

/// `ordo peer`
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PeerArgs {
    /// What to do instead of running a peer.
    #[command(subcommand)]
    pub command: Option<PeerCommand>,
    /// Peer configuration file (TOML). `ordo peer --print-example-config` shows every
    /// field with its default.
    #[arg(long, required_unless_present = "print_example_config")]
    pub config: Option<PathBuf>,
    /// Print a commented example configuration and exit.
    #[arg(long)]
    pub print_example_config: bool,
}

/// `ordo peer ...` commands addressed to a running peer.
#[derive(Subcommand)]
pub enum PeerCommand {
    /// Have a running peer write a signed snapshot of a channel at its committed height
    /// (state, tx index, commit hash, config block) into <data_dir>/snapshots/ on the
    /// peer, without pausing commits; join another peer from it with
    /// `ordo channel join --snapshot`.
    Snapshot(crate::cmd::snapshot::SnapshotArgs),
}

/// Runs the peer.
pub async fn run(args: PeerArgs) -> anyhow::Result<()> {
    if let Some(PeerCommand::Snapshot(a)) = args.command {
        return crate::cmd::snapshot::run(a).await;
    }
    if args.print_example_config {
        print!("{}", PeerConfig::example());
        return Ok(());
    }
    let path = args.config.context("--config is required")?;
    let config = PeerConfig::load(&path).with_context(|| format!("loading {}", path.display()))?;
    crate::logging::init(&config.log.filter, &config.log.format);
    crate::logging::starting("peer", &path, &config.node.data_dir);
    let grpc = TcpListener::bind(config.node.listen_addr)
        .await
        .with_context(|| format!("binding gRPC address {}", config.node.listen_addr))?;
    let ops = TcpListener::bind(config.node.ops_listen_addr)
        .await
        .with_context(|| format!("binding operations address {}", config.node.ops_listen_addr))?;
    tokio::spawn(ordo_peer::node::run(
        config,
        grpc,
        ops,
        crate::cmd::orderer::shutdown_signal(),
    ))
    .await
    .context("the peer task panicked")??;
    Ok(())
}
