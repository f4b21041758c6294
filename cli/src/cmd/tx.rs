//! `ordo tx invoke|query`: run a chaincode function through a peer's Gateway, as a client
//! of an org in the network file.
//!
//! `invoke` endorses across orgs, orders and waits for the commit; `query` evaluates on
//! one peer and orders nothing. Arguments are positional strings.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use ordo_sdk::gateway::{Contract, GatewayError, RetryPolicy};
use ordo_sdk::network::Network;

/// `ordo tx ...`
#[derive(Subcommand)]
pub enum TxCommand {
    /// Endorse, order and commit a chaincode transaction; prints its result.
    Invoke(TxArgs),
    /// Evaluate a chaincode function on one peer (nothing is ordered); prints its result.
    Query(TxArgs),
}

/// Arguments of `ordo tx invoke|query`.
#[derive(Args)]
pub struct TxArgs {
    /// The network file written by `ordo up`.
    #[arg(long, env = "ORDO_NETWORK", default_value = ".ordo/network.json")]
    pub network: PathBuf,
    /// Channel (default: the network's first).
    #[arg(long)]
    pub channel: Option<String>,
    /// Org whose client identity signs and whose peer is the gateway (default: the
    /// first org with a peer).
    #[arg(long)]
    pub org: Option<String>,
    /// The chaincode, as defined on the channel (e.g. bank, kv).
    #[arg(long)]
    pub chaincode: String,
    /// The function to run.
    #[arg(long = "fn")]
    pub function: String,
    /// Its arguments, as strings.
    #[arg(long, num_args = 0..)]
    pub args: Vec<String>,
    /// Print the result, tx id, validation code and block as JSON.
    #[arg(long)]
    pub json: bool,
    /// Submit again (fresh proposal) on an MVCC conflict or an unavailable node, up to
    /// this many attempts in all, after jittered, growing waits.
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
    /// Transient data for the chaincode, KEY=VALUE (repeatable): the endorsers see it,
    /// the ledger never records it.
    #[arg(long = "transient", value_name = "KEY=VALUE", value_parser = parse_transient)]
    pub transient: Vec<(String, String)>,
    /// Exactly these orgs endorse (the gateway's own among them), comma-separated;
    /// default: the fewest the endorsement policy needs.
    #[arg(long, value_delimiter = ',')]
    pub endorsing_orgs: Vec<String>,
}

fn parse_transient(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Runs a tx command.
pub async fn run(cmd: TxCommand) -> anyhow::Result<()> {
    let (args, invoke) = match cmd {
        TxCommand::Invoke(a) => (a, true),
        TxCommand::Query(a) => (a, false),
    };
    let net = Network::load(&args.network)
        .with_context(|| format!("loading {}", args.network.display()))?;
    let channel = net.channel(args.channel.as_deref())?.name.clone();
    let peer = net
        .nodes_with_role("peer")
        .find(|p| args.org.as_deref().is_none_or(|o| p.org == o))
        .with_context(|| match &args.org {
            Some(o) => format!("the network has no peer of org {o}"),
            None => "the network has no peer to act as gateway".to_string(),
        })?;
    let member = net.member(Some(&peer.org), "client")?;
    let contract = Contract::connect(
        &peer.grpc_addr,
        &member.transport,
        member.identity,
        &channel,
        &args.chaincode,
    )
    .await?
    .with_retry_policy(RetryPolicy::with_attempts(args.attempts));
    let mut call = contract
        .call(&args.function)
        .args(&args.args)
        .endorsing_orgs(&args.endorsing_orgs);
    for (key, value) in &args.transient {
        call = call.transient(key, value);
    }
    if !invoke {
        let result = call.evaluate().await?;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"result": String::from_utf8_lossy(&result), "peer": peer.name})
            );
        } else {
            println!("{}", String::from_utf8_lossy(&result));
        }
        return Ok(());
    }
    match call.submit_with_retry().await {
        Ok(done) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "result": String::from_utf8_lossy(&done.result),
                        "tx_id": done.tx_id,
                        "code": "VALID",
                        "block": done.block,
                        "orderer": done.orderer,
                        "attempts": done.attempts,
                    })
                );
            } else {
                println!("{}", String::from_utf8_lossy(&done.result));
                eprintln!(
                    "committed: tx {} in block {} (VALID)",
                    done.tx_id, done.block
                );
            }
            Ok(())
        }
        Err(e) if args.json && e.validation_code().is_some() => {
            if let GatewayError::NotValid { tx_id, code, block } = e.root() {
                println!(
                    "{}",
                    serde_json::json!({
                        "tx_id": tx_id,
                        "code": code.as_str_name(),
                        "block": block,
                        "attempts": e.attempts(),
                    })
                );
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}
