//! `ordo peer --config FILE`: run a peer node until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;

use ordo_peer::node::config::PeerConfig;

/// `ordo peer`
#[derive(Args)]
pub struct PeerArgs {
    /// Peer configuration file (TOML): [node] name, listen_addr, ops_listen_addr, data_dir;
    /// [identity] key_file, cert_file; [deliver] orderer_endpoints and timings; [log].
    #[arg(long)]
    pub config: PathBuf,
}

/// Runs the peer.
pub async fn run(args: PeerArgs) -> anyhow::Result<()> {
    let config = PeerConfig::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    crate::logging::init(&config.log.filter, &config.log.format);
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
