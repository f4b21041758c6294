//! `ordo`: the one Ordo binary.
//!
//! Nodes (`ordo orderer`), the one-command local network (`ordo up`, with `ordo node` to
//! stop and start its nodes one at a time), key and genesis tooling (`ordo crypto`, `ordo
//! channel genesis`), admin and client commands (`ordo channel`, `ordo block`) and the
//! load generator (`ordo bench`). This file only parses flags and dispatches; each command
//! lives in `cmd/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: the orderer's hot path allocates small
/// buffers per envelope from several threads, where glibc's malloc showed up at ~10% of
/// the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod cmd;
mod logging;
mod pki;
mod progress;

/// Ordo: a pluggable ordering service and peer for permissioned ledgers.
#[derive(Parser)]
#[command(name = "ordo", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an orderer node.
    Orderer(cmd::orderer::OrdererArgs),
    /// Run a peer node: follow channels, validate and commit every transaction.
    Peer(cmd::peer::PeerArgs),
    /// Start a whole local network with one command (keys, genesis, nodes).
    Up(cmd::up::UpArgs),
    /// Stop, kill, start or restart one node of a running `ordo up` network; back up a
    /// running node or restore a backup.
    ///
    /// `ordo up` owns the node processes, so stop|kill|start|restart|status ask it to act,
    /// over the control socket beside the network file (DIR/control.sock); they work only
    /// while it runs. `backup` asks any node (an Admin command); `restore` is offline.
    #[command(subcommand)]
    Node(cmd::node::NodeCommand),
    /// Create keys and certificates for a consortium.
    #[command(subcommand)]
    Crypto(cmd::crypto::CryptoCommand),
    /// Create, join, list, remove and inspect channels.
    #[command(subcommand)]
    Channel(cmd::channel::ChannelCommand),
    /// Fetch and verify blocks.
    #[command(subcommand)]
    Block(cmd::block::BlockCommand),
    /// Measure throughput and latency against a running network.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Kafka tooling: an in-memory mock cluster for development and tests.
    #[command(subcommand)]
    Kafka(cmd::kafka::KafkaCommand),
    /// Invoke or query chaincode through a peer's Gateway.
    #[command(subcommand)]
    Tx(cmd::tx::TxCommand),
    /// Follow a chaincode's events through a peer, as they commit.
    Events(cmd::events::EventsArgs),
    /// Ask a node's operations endpoint whether it is alive or ready (exit 0 on 200): the
    /// container image's health check.
    Probe(cmd::probe::ProbeArgs),
    /// Print a shell completion script: `ordo completions bash > /etc/bash_completion.d/ordo`
    /// (zsh: into a directory on $fpath as `_ordo`; fish: ~/.config/fish/completions/ordo.fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run a chaincode server (chaincode as a service).
    #[command(subcommand)]
    Chaincode(cmd::chaincode::ChaincodeCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Orderer(a) => cmd::orderer::run(a).await,
            Command::Peer(a) => cmd::peer::run(a).await,
            Command::Up(a) => cmd::up::run(a).await,
            Command::Node(c) => cmd::node::run(c).await,
            Command::Crypto(c) => cmd::crypto::run(c),
            Command::Channel(c) => cmd::channel::run(c).await,
            Command::Block(c) => cmd::block::run(c).await,
            Command::Bench(c) => cmd::bench::run(c).await,
            Command::Kafka(c) => cmd::kafka::run(c).await,
            Command::Tx(c) => cmd::tx::run(c).await,
            Command::Events(a) => cmd::events::run(a).await,
            Command::Chaincode(c) => cmd::chaincode::run(c).await,
            Command::Probe(a) => cmd::probe::run(a),
            Command::Completions { shell } => print_completions(shell),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the completion script for `shell` to stdout; a reader that closes the pipe
/// early (`| head`) is not an error.
fn print_completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().write_all(&completion_script(shell)) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The completion script for `shell`, generated from the same definitions as `--help`.
fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ordo", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn completions_know_every_command() {
        let bash = String::from_utf8(completion_script(clap_complete::Shell::Bash)).expect("utf-8");
        for command in [
            "orderer",
            "peer",
            "up",
            "node",
            "channel",
            "probe",
            "completions",
        ] {
            assert!(bash.contains(command), "bash completions lack {command}");
        }
        let zsh = String::from_utf8(completion_script(clap_complete::Shell::Zsh)).expect("utf-8");
        assert!(
            zsh.starts_with("#compdef ordo"),
            "{}",
            &zsh[..40.min(zsh.len())]
        );
    }
}
