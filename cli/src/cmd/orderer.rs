//! `ordo orderer --config FILE`: run an orderer node until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;

use ordo_orderer::OrdererConfig;

/// `ordo orderer`
#[derive(Args)]
pub struct OrdererArgs {
    /// Node configuration file (TOML). `ordo orderer --print-example-config` shows every
    /// field with its default.
    #[arg(long, required_unless_present = "print_example_config")]
    pub config: Option<PathBuf>,
    /// Print a commented example configuration and exit.
    #[arg(long)]
    pub print_example_config: bool,
}

/// Runs the node.
pub async fn run(args: OrdererArgs) -> anyhow::Result<()> {
    if args.print_example_config {
        print!("{}", OrdererConfig::example());
        return Ok(());
    }
    let path = args.config.context("--config is required")?;
    let config =
        OrdererConfig::load(&path).with_context(|| format!("loading {}", path.display()))?;
    crate::logging::init(&config.log.filter, &config.log.format);
    crate::logging::starting("orderer", &path, &config.node.data_dir);
    let grpc = TcpListener::bind(config.node.listen_addr)
        .await
        .with_context(|| format!("binding gRPC address {}", config.node.listen_addr))?;
    let ops = TcpListener::bind(config.node.ops_listen_addr)
        .await
        .with_context(|| format!("binding operations address {}", config.node.ops_listen_addr))?;
    // Run the node on the runtime's worker threads, not on the thread that blocks on
    // `main`: otherwise that thread drives the gRPC server's accept loop and connections
    // as a third busy thread beside the workers.
    tokio::spawn(ordo_orderer::run(config, grpc, ops, shutdown_signal()))
        .await
        .context("the orderer task panicked")??;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
