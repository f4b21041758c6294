//! `ordo block fetch|verify`: read blocks over Deliver and check them independently.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use prost::Message;
use tokio_stream::StreamExt;

use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::pb::common::{Block, Payload};
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_proto::verify::ChainVerifier;
use ordo_sdk::network::Member;

use crate::client::ClientArgs;

/// `ordo block ...`
#[derive(Subcommand)]
pub enum BlockCommand {
    /// Fetch blocks from an orderer and print (or save) them.
    Fetch(FetchArgs),
    /// Check a channel's blocks: hash chain, Merkle data hashes and orderer signatures
    /// against the channel's BlockValidation policy. Exits non-zero on the first fault.
    Verify(VerifyArgs),
}

/// Which channel and range.
#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The channel (default: the network's first channel).
    #[arg(long)]
    pub channel: Option<String>,
    /// First block.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Last block (default: the newest block at the time of the request).
    #[arg(long)]
    pub to: Option<u64>,
}

/// `ordo block fetch`
#[derive(Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// One JSON object per block instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write each block's bytes to DIR/<number>.block.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `ordo block verify`
#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// Verify the blocks saved by `ordo block fetch --out DIR` (DIR/0.block, 1.block, …)
    /// instead of fetching them from an orderer.
    #[arg(long, conflicts_with = "archive")]
    pub blocks_dir: Option<PathBuf>,
    /// Verify a channel's archive of pruned blocks (`[ledger] archive_dir` of a node,
    /// then the channel: DIR is `<archive_dir>/<channel>`): every segment whole, the
    /// segments contiguous, and the chain they hold — from the genesis block, or from the
    /// archive's base file. Prints the hash of the last block, which the first block the
    /// node still holds links to.
    #[arg(long)]
    pub archive: Option<PathBuf>,
}

impl RangeArgs {
    fn channel(&self) -> anyhow::Result<String> {
        if let Some(c) = &self.channel {
            return Ok(c.clone());
        }
        match self.client.load_network()? {
            Some(n) => Ok(n.channel(None)?.name.clone()),
            None => bail!("--channel is required without --network"),
        }
    }
}

/// Runs a block command.
pub async fn run(cmd: BlockCommand) -> anyhow::Result<()> {
    match cmd {
        BlockCommand::Fetch(a) => fetch_cmd(a).await,
        BlockCommand::Verify(a) => verify_cmd(a).await,
    }
}

/// Streams blocks `from..=to` (to: newest when `None`) and calls `each` on every one.
pub async fn fetch(
    addr: &str,
    member: &Member,
    channel: &str,
    from: u64,
    to: Option<u64>,
    mut each: impl FnMut(Block) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let identity = &member.identity;
    let ch = ordo_sdk::orderer::connect(addr, &member.transport)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut client = ordo_sdk::orderer::broadcast_client(ch);
    let req = ordo_sdk::orderer::seek_request(
        identity,
        channel,
        ordo_sdk::orderer::position(Some(from)),
        Some(ordo_sdk::orderer::position(to)),
        SeekBehavior::FailIfNotReady,
    );
    let mut stream = client
        .deliver(req)
        .await
        .context("Deliver request")?
        .into_inner();
    let mut count = 0;
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|s| {
            anyhow::anyhow!(
                "Deliver ended with {}: {}",
                ordo_proto::status::code_name(s.code()),
                s.message()
            )
        })?;
        let Some(b) = msg.block else {
            bail!("Deliver sent a response without a block");
        };
        count += 1;
        each(b)?;
    }
    Ok(count)
}

fn tx_ids(b: &Block) -> Vec<String> {
    b.data
        .iter()
        .flat_map(|d| d.data.iter())
        .map(|e| {
            envelope::decode(e)
                .ok()
                .and_then(|e| Payload::decode(e.payload.as_ref()).ok())
                .and_then(|p| p.header)
                .map(|h| h.tx_id)
                .unwrap_or_default()
        })
        .collect()
}

async fn fetch_cmd(a: FetchArgs) -> anyhow::Result<()> {
    let channel = a.range.channel()?;
    let addr = a.range.client.orderer_addr()?;
    let id = a.range.client.member("client")?;
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut progress = crate::progress::Progress::new("fetched");
    let n = fetch(&addr, &id, &channel, a.range.from, a.range.to, |b| {
        progress.block(b.data.as_ref().map(|d| d.data.len()).unwrap_or(0));
        let header = b.header.clone().unwrap_or_default();
        let md = b.metadata.clone().unwrap_or_default();
        let ids = tx_ids(&b);
        if a.json {
            let v = serde_json::json!({
                "number": header.number,
                "hash": hex::encode(block::hash(&b)),
                "previous_hash": hex::encode(&header.previous_hash),
                "data_hash": hex::encode(&header.data_hash),
                "tx_count": ids.len(),
                "tx_ids": ids,
                "last_config": md.last_config,
                "signatures": md.signatures.len(),
                "is_config": b.data.as_ref().map(|d| d.data.len() == 1 && config::is_config_envelope(&d.data[0])).unwrap_or(false),
            });
            println!("{v}");
        } else {
            println!(
                "block {:>6}  txs {:>5}  hash {}  prev {}  signatures {}",
                header.number,
                ids.len(),
                &hex::encode(block::hash(&b))[..16],
                &hex::encode(&header.previous_hash)[..16.min(header.previous_hash.len() * 2)],
                md.signatures.len()
            );
        }
        if let Some(dir) = &a.out {
            let path = dir.join(format!("{}.block", header.number));
            std::fs::write(&path, b.encode_to_vec()).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    })
    .await?;
    if !a.json {
        eprintln!("fetched {n} blocks of channel {channel} from {addr}");
    }
    Ok(())
}

async fn verify_cmd(a: VerifyArgs) -> anyhow::Result<()> {
    if let Some(dir) = &a.blocks_dir {
        return verify_dir(dir, a.range.to);
    }
    if let Some(dir) = &a.archive {
        return verify_archive(dir);
    }
    let channel = a.range.channel()?;
    let addr = a.range.client.orderer_addr()?;
    let id = a.range.client.member("client")?;
    let mut verifier = ChainVerifier::new();
    let now_secs = ordo_proto::now_ms() / 1000;
    let mut txs = 0usize;
    let mut progress = crate::progress::Progress::new("verified");
    // Verification needs the configuration in force, so it always starts at block 0;
    // --from only limits what is reported.
    let n = fetch(&addr, &id, &channel, 0, a.range.to, |b| {
        verifier.check(&b, now_secs)?;
        progress.block(b.data.as_ref().map(|d| d.data.len()).unwrap_or(0));
        if block::number(&b) >= a.range.from {
            txs += b.data.as_ref().map(|d| d.data.len()).unwrap_or(0);
        }
        Ok(())
    })
    .await?;
    let last = n.saturating_sub(1);
    println!(
        "OK: blocks {}..={last} of channel {channel} ({txs} envelopes): hash chain, Merkle data hashes, last-config metadata and orderer signatures (BlockValidation policy) all verify",
        a.range.from.min(last)
    );
    Ok(())
}

fn verify_dir(dir: &std::path::Path, to: Option<u64>) -> anyhow::Result<()> {
    let mut verifier = ChainVerifier::new();
    let now_secs = ordo_proto::now_ms() / 1000;
    let mut n = 0u64;
    let mut txs = 0usize;
    let mut progress = crate::progress::Progress::new("verified");
    loop {
        if to.is_some_and(|t| n > t) {
            break;
        }
        let path = dir.join(format!("{n}.block"));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && n > 0 => break,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let b = Block::decode(bytes.as_slice())
            .with_context(|| format!("block {n}: {} does not decode", path.display()))?;
        verifier.check(&b, now_secs)?;
        let envelopes = b.data.as_ref().map(|d| d.data.len()).unwrap_or(0);
        progress.block(envelopes);
        txs += envelopes;
        n += 1;
    }
    println!(
        "OK: blocks 0..={} in {} ({txs} envelopes): hash chain, Merkle data hashes, last-config metadata and orderer signatures (BlockValidation policy) all verify",
        n.saturating_sub(1),
        dir.display()
    );
    Ok(())
}

fn verify_archive(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut progress = crate::progress::Progress::new("verified");
    let summary = ordo_ledger::archive::verify(dir, ordo_proto::now_ms() / 1000, |b| {
        progress.block(b.data.as_ref().map(|d| d.data.len()).unwrap_or(0))
    })
    .with_context(|| format!("archive {}", dir.display()))?;
    println!(
        "OK: archive {} holds blocks {}..={} in {} files ({} envelopes): segments whole, hash chain, Merkle data hashes, last-config metadata and orderer signatures (BlockValidation policy) all verify; the last block's hash is {}",
        dir.display(),
        summary.first,
        summary.last,
        summary.files,
        summary.envelopes,
        hex::encode(summary.last_hash)
    );
    Ok(())
}
