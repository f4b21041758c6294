//! `ordo events`: follow a chaincode's events through a peer, as they commit.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use ordo_sdk::gateway::{Checkpoint, Contract, StartAt};
use ordo_sdk::network::Network;

/// `ordo events`
#[derive(Args)]
pub struct EventsArgs {
    /// The network file written by `ordo up`.
    #[arg(long, env = "ORDO_NETWORK", default_value = ".ordo/network.json")]
    pub network: PathBuf,
    /// Channel (default: the network's first).
    #[arg(long)]
    pub channel: Option<String>,
    /// Org whose client identity reads and whose peer serves the events (default: the
    /// first org with a peer).
    #[arg(long)]
    pub org: Option<String>,
    /// The chaincode whose events to follow.
    #[arg(long)]
    pub chaincode: String,
    /// First block to read events from.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Resume after this transaction of block --from (a checkpoint from an earlier run).
    #[arg(long, default_value = "")]
    pub after: String,
    /// Stop after this many events (default: follow until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// One JSON object per line (block, tx_id, chaincode, name, payload).
    #[arg(long)]
    pub json: bool,
}

/// Runs `ordo events`.
pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let net = Network::load(&args.network)
        .with_context(|| format!("loading {}", args.network.display()))?;
    let channel = net.channel(args.channel.as_deref())?.name.clone();
    let peer = net
        .nodes_with_role("peer")
        .find(|p| args.org.as_deref().is_none_or(|o| p.org == o))
        .context("the network has no peer to read events from")?;
    let member = net.member(Some(&peer.org), "client")?;
    let contract = Contract::connect(
        &peer.grpc_addr,
        &member.transport,
        member.identity,
        &channel,
        &args.chaincode,
    )
    .await?;
    let start = StartAt::After(Checkpoint {
        block: args.from,
        tx_id: args.after.clone(),
    });
    let mut stream = contract.events(start).await?;
    let mut seen = 0u64;
    while let Some(e) = stream.next().await {
        let e = e.context("event stream")?;
        let payload = String::from_utf8_lossy(&e.payload);
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "block": e.block,
                    "tx_id": e.tx_id,
                    "chaincode": e.chaincode,
                    "name": e.name,
                    "payload": payload,
                })
            );
        } else {
            println!("block {} tx {} {}: {payload}", e.block, e.tx_id, e.name);
        }
        seen += 1;
        if args.count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
    }
    Ok(())
}
