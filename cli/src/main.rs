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
mod memory;
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
    /// Write a node's config file and key directory for the host it runs on (listening on
    /// every interface, its own keys only, mutual TLS).
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Fetch and verify blocks.
    #[command(subcommand)]
    Block(cmd::block::BlockCommand),
    /// Check a stopped node's ledgers on disk.
    #[command(subcommand)]
    Ledger(cmd::ledger::LedgerCommand),
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
    // Before the runtime and any large allocation: see the module's docs.
    memory::apply();
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
            Command::Config(c) => cmd::config::run(c),
            Command::Block(c) => cmd::block::run(c).await,
            Command::Ledger(c) => cmd::ledger::run(c),
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
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, as `{:#}` prints them, except that a cause whose
/// text an outer error already includes (a wrapper that prints its source, like
/// `identity: {0}`) is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
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

    #[test]
    fn a_cause_already_printed_by_its_wrapper_is_not_repeated() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "identity: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Wrapper(std::io::Error::other("k.key: bad")))
            .context("loading node.toml");
        assert_eq!(error_text(&e), "loading node.toml: identity: k.key: bad");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&plain), "outer: inner");
    }

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
