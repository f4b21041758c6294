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
    /// What a chaincode application sees: `bank` transfers endorsed, ordered, validated
    /// and committed through every org's Gateway by clients that each wait for their
    /// commit status; reports VALID tx/s, codes, latency per phase, whether the peers
    /// agree and whether the money is conserved.
    E2e(E2eBenchArgs),
}

/// Which network and channel a bench loads.
#[derive(Args)]
pub struct BenchTarget {
    /// The network file written by `ordo up`.
    #[arg(long, env = "ORDO_NETWORK")]
    pub network: PathBuf,
    /// Channel (default: the network's first).
    #[arg(long)]
    pub channel: Option<String>,
}

/// How a bench reports, shared by every bench.
#[derive(Args)]
pub struct BenchOutput {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also draw throughput over time and the latency distribution into this SVG file
    /// (only SVG is supported; the name must end in .svg).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// `ordo bench orderer`
#[derive(Args)]
pub struct OrdererBenchArgs {
    /// The network and channel to load.
    #[command(flatten)]
    pub target: BenchTarget,
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
    /// How to report.
    #[command(flatten)]
    pub output: BenchOutput,
}

/// `ordo bench peer`
#[derive(Args)]
pub struct PeerBenchArgs {
    /// The network and channel to load.
    #[command(flatten)]
    pub target: BenchTarget,
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
    /// How to report.
    #[command(flatten)]
    pub output: BenchOutput,
}

/// `ordo bench e2e`
#[derive(Args)]
pub struct E2eBenchArgs {
    /// The network and channel to load.
    #[command(flatten)]
    pub target: BenchTarget,
    /// Transactions to submit in all (default 10,000 when --duration is not given).
    #[arg(long, conflicts_with = "duration")]
    pub txs: Option<u64>,
    /// Keep submitting for this many seconds instead of a number of transactions.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Concurrent clients, spread over the peers' gateways; each waits for its
    /// transaction's commit status before sending the next.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Accounts the transfers move money between: few means contention (MVCC
    /// conflicts), many means almost none.
    #[arg(long, default_value_t = 10_000)]
    pub accounts: u32,
    /// Seeds the clients' choice of accounts.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Cut the run into windows of this many seconds and report VALID tx/s, p50 and p99
    /// of each (a run of at least 20 minutes also compares its first 10 with its last 10:
    /// an endurance run).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub window_s: u64,
    /// Sample the disk use of this directory every 10 s during the load (repeat it for
    /// several, e.g. each node's data directory); the report and `--plot` show it over time.
    #[arg(long, value_name = "DIR")]
    pub watch_disk: Vec<std::path::PathBuf>,
    /// How to report.
    #[command(flatten)]
    pub output: BenchOutput,
}

/// Runs a bench command.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Orderer(a) => {
            check_plot(&a.output)?;
            let report = ordo_bench::run_orderer_bench(ordo_bench::OrdererBenchOptions {
                network: load(&a.target.network)?,
                channel: a.target.channel,
                orderer: a.node,
                txs: a.txs,
                payload_bytes: a.payload_bytes,
                clients: a.clients.max(1),
                progress: !a.output.json,
                drain_timeout: Duration::from_secs(a.drain_timeout_s),
            })
            .await?;
            finish(&a.output, &report, || report.human(), || report.plot())
        }
        BenchCommand::Peer(a) => {
            check_plot(&a.output)?;
            let report = ordo_bench::run_peer_bench(ordo_bench::PeerBenchOptions {
                network: load(&a.target.network)?,
                channel: a.target.channel,
                orderer: a.node,
                txs: a.txs,
                conflict_percent: a.conflict_percent,
                clients: a.clients.max(1),
                progress: !a.output.json,
                drain_timeout: Duration::from_secs(a.drain_timeout_s),
            })
            .await
            .context("ordo bench peer")?;
            finish(&a.output, &report, || report.human(), || report.plot())
        }
        BenchCommand::E2e(a) => {
            check_plot(&a.output)?;
            let txs = match (a.txs, a.duration) {
                (None, None) => Some(10_000),
                (txs, _) => txs,
            };
            let report = ordo_bench::run_e2e_bench(ordo_bench::E2eBenchOptions {
                network: load(&a.target.network)?,
                channel: a.target.channel,
                txs,
                duration: a.duration.map(Duration::from_secs),
                clients: a.clients,
                accounts: a.accounts,
                seed: a.seed,
                progress: !a.output.json,
                window: Duration::from_secs(a.window_s),
                watch_disk: a.watch_disk,
            })
            .await
            .context("ordo bench e2e")?;
            finish(&a.output, &report, || report.human(), || report.plot())
        }
    }
}

/// The network file `ordo up` wrote.
fn load(path: &std::path::Path) -> anyhow::Result<Network> {
    Network::load(path).with_context(|| format!("loading {}", path.display()))
}

/// Refuses a `--plot` file that could not be written after the run, before the run.
fn check_plot(output: &BenchOutput) -> anyhow::Result<()> {
    match &output.plot {
        Some(path) => Ok(ordo_bench::plot::check_svg_path(path)?),
        None => Ok(()),
    }
}

/// Prints a report as one JSON object (`--json`) or as text on stdout, then draws it with
/// `--plot` (saying so on stderr, so that stdout stays one JSON object).
fn finish<'r>(
    output: &BenchOutput,
    report: &impl serde::Serialize,
    human: impl FnOnce() -> String,
    plot: impl FnOnce() -> ordo_bench::plot::Plot<'r>,
) -> anyhow::Result<()> {
    if output.json {
        println!(
            "{}",
            serde_json::to_string(report).context("encoding the report")?
        );
    } else {
        println!("{}", human());
    }
    if let Some(path) = &output.plot {
        ordo_bench::plot::write_svg(path, &plot())?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}
