//! `ordo bench`: load generators against a running network (see `benches/`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use ordo_sdk::network::Network;

/// `ordo bench ...`
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Broadcast freshly signed envelopes over concurrent streams while a Deliver client
    /// checks what was ordered; reports throughput, latency, losses and duplicates.
    Orderer(OrdererBenchArgs),
    /// Broadcast endorser transactions (chaincode `bank`, a chosen share conflicting on
    /// purpose) and measure how fast every peer validates and commits them; reports
    /// committed tx/s per peer, counts per validation code, and whether all peers' commit
    /// hashes agree.
    Peer(PeerBenchArgs),
}

/// `ordo bench orderer`
#[derive(Args)]
pub struct OrdererBenchArgs {
    /// The network file written by `ordo up`.
    #[arg(long, env = "ORDO_NETWORK")]
    pub network: PathBuf,
    /// Channel (default: the network's first).
    #[arg(long)]
    pub channel: Option<String>,
    /// Orderer node name (default: the first orderer).
    #[arg(long)]
    pub node: Option<String>,
    /// Envelopes to send.
    #[arg(long, default_value_t = 100_000)]
    pub txs: u64,
    /// Payload bytes per envelope.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Concurrent Broadcast streams.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Give up waiting for deliveries after this many seconds without progress.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout_s: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `ordo bench peer`
#[derive(Args)]
pub struct PeerBenchArgs {
    /// The network file written by `ordo up`.
    #[arg(long, env = "ORDO_NETWORK")]
    pub network: PathBuf,
    /// Channel (default: the network's first).
    #[arg(long)]
    pub channel: Option<String>,
    /// Orderer node name to broadcast to (default: the first orderer).
    #[arg(long)]
    pub node: Option<String>,
    /// Endorser transactions to send.
    #[arg(long, default_value_t = 20_000)]
    pub txs: u64,
    /// Percentage of the transactions built to fail MVCC on purpose (0 to 100).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub conflict_percent: u32,
    /// Concurrent Broadcast streams.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Give up after this many seconds without progress (no new delivery from the
    /// orderer, no new block on a peer).
    #[arg(long, default_value_t = 60)]
    pub drain_timeout_s: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs a bench command.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Orderer(a) => {
            let network = Network::load(&a.network)
                .with_context(|| format!("loading {}", a.network.display()))?;
            let report = ordo_bench::run_orderer_bench(ordo_bench::OrdererBenchOptions {
                network,
                channel: a.channel,
                orderer: a.node,
                txs: a.txs,
                payload_bytes: a.payload_bytes,
                clients: a.clients.max(1),
                progress: !a.json,
                drain_timeout: Duration::from_secs(a.drain_timeout_s),
            })
            .await?;
            if a.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{}", report.human());
            }
            Ok(())
        }
        BenchCommand::Peer(a) => {
            let network = Network::load(&a.network)
                .with_context(|| format!("loading {}", a.network.display()))?;
            let report = ordo_bench::run_peer_bench(ordo_bench::PeerBenchOptions {
                network,
                channel: a.channel,
                orderer: a.node,
                txs: a.txs,
                conflict_percent: a.conflict_percent,
                clients: a.clients.max(1),
                progress: !a.json,
                drain_timeout: Duration::from_secs(a.drain_timeout_s),
            })
            .await
            .context("ordo bench peer")?;
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).context("encoding the report")?
                );
            } else {
                println!("{}", report.human());
            }
            Ok(())
        }
    }
}
