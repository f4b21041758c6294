//! Observers: a Deliver reader following each orderer through its crashes and restarts,
//! pollers of the peers' (height, commit hash), and the final read of every chain.

use std::time::Duration;

use prost::Message;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, Envelope, Payload};
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_sdk::transport::Transport;

use crate::history::{BlockSource, BlockSummary, Event, History};
use crate::net::CHANNEL;

/// How often peers are polled.
const PEER_POLL: Duration = Duration::from_millis(200);

/// What a recorded block keeps of `b`.
pub fn summarize(b: &Block) -> BlockSummary {
    let header = b.header.clone().unwrap_or_default();
    BlockSummary {
        number: header.number,
        hash: hex::encode(ordo_proto::block::hash(b)),
        previous: hex::encode(&header.previous_hash),
        txs: b
            .data
            .iter()
            .flat_map(|d| d.data.iter())
            .map(|e| tx_id_of(e).unwrap_or_default())
            .collect(),
        data_digest: {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            for e in b.data.iter().flat_map(|d| d.data.iter()) {
                h.update((e.len() as u64).to_be_bytes());
                h.update(e);
            }
            hex::encode(h.finalize())
        },
        config_update_by: config_update_by(b),
    }
}

/// The hex SHA-256 of a certificate (how the history names a signer).
pub fn cert_digest(cert: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(cert))
}

/// Who signed the CONFIG_UPDATE a config block was made from (`None` for other blocks and
/// for the genesis block, which carries no update).
fn config_update_by(b: &Block) -> Option<String> {
    let data = b.data.as_ref()?;
    let [only] = data.data.as_slice() else {
        return None;
    };
    if !ordo_proto::config::is_config_envelope(only) {
        return None;
    }
    let env = Envelope::decode(only.as_ref()).ok()?;
    let payload = Payload::decode(env.payload.as_ref()).ok()?;
    let config = ordo_proto::pb::common::ConfigEnvelope::decode(payload.data.as_ref()).ok()?;
    if config.last_update.is_empty() {
        return None;
    }
    let update = Envelope::decode(config.last_update.as_ref()).ok()?;
    let update_payload = Payload::decode(update.payload.as_ref()).ok()?;
    Some(cert_digest(&update_payload.header?.creator))
}

fn tx_id_of(envelope: &[u8]) -> Option<String> {
    let env = Envelope::decode(envelope).ok()?;
    let payload = Payload::decode(env.payload.as_ref()).ok()?;
    Some(payload.header?.tx_id)
}

/// Follows `addr` (named `node`) from block 0, reconnecting (over `transport`) after every
/// failure and resuming at the next block, until `stop`.
pub fn follow(
    node: String,
    addr: String,
    reader: Identity,
    transport: Transport,
    history: History,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut next = 0u64;
        while !stop.is_cancelled() {
            let session = async {
                let conn = ordo_sdk::orderer::connect(&addr, &transport).await.ok()?;
                let mut client = ordo_sdk::orderer::broadcast_client(conn);
                let req = ordo_sdk::orderer::seek_request(
                    &reader,
                    CHANNEL,
                    ordo_sdk::orderer::position(Some(next)),
                    None,
                    SeekBehavior::BlockUntilReady,
                );
                let mut stream = client.deliver(req).await.ok()?.into_inner();
                while let Some(Ok(resp)) = stream.next().await {
                    let Some(b) = resp.block else { break };
                    let summary = summarize(&b);
                    next = summary.number + 1;
                    history.record(Event::Block {
                        node: node.clone(),
                        source: BlockSource::Stream,
                        block: summary,
                    });
                }
                Some(())
            };
            tokio::select! {
                _ = session => {}
                _ = stop.cancelled() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.cancelled() => break,
            }
        }
    })
}

/// Reads `addr`'s whole chain (blocks 0 up to its height now).
pub async fn read_chain(
    addr: &str,
    reader: &Identity,
    transport: &Transport,
) -> Result<Vec<Block>, String> {
    let conn = ordo_sdk::orderer::connect(addr, transport)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = ordo_sdk::orderer::broadcast_client(conn);
    let req = ordo_sdk::orderer::seek_request(
        reader,
        CHANNEL,
        ordo_sdk::orderer::oldest(),
        Some(ordo_sdk::orderer::position(None)),
        SeekBehavior::FailIfNotReady,
    );
    let mut stream = client
        .deliver(req)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut blocks = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(resp) => match resp.block {
                Some(b) => blocks.push(b),
                None => break,
            },
            // A refusal before any block is the answer; one after blocks ends the read
            // with what it got.
            Err(e) if blocks.is_empty() => return Err(e.to_string()),
            Err(_) => break,
        }
    }
    Ok(blocks)
}

/// The blocks of the node's archive (its data directory `data_dir`, when it archives)
/// below `first`: read after the ledger, so they reach at least the block before the first
/// one read. An archive that does not verify gives none (the scenario reports it).
fn archived_below(data_dir: Option<&std::path::Path>, first: u64) -> Vec<Block> {
    data_dir
        .and_then(|d| crate::scenario::pruning::final_archive(d).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|b| ordo_proto::block::number(b) < first)
        .collect()
}

/// Records `addr`'s whole chain as [`BlockSource::Final`] blocks of `node` — with, for a
/// node that prunes into an archive (`archive_of`: its data directory), the archive's
/// blocks before those its ledger holds; returns its height.
pub async fn record_final_chain(
    node: &str,
    addr: &str,
    reader: &Identity,
    transport: &Transport,
    history: &History,
    archive_of: Option<&std::path::Path>,
) -> Result<u64, String> {
    let held = read_chain(addr, reader, transport).await?;
    let first = held.first().map_or(u64::MAX, ordo_proto::block::number);
    let mut blocks = archived_below(archive_of, first);
    blocks.extend(held);
    for b in &blocks {
        history.record(Event::Block {
            node: node.to_string(),
            source: BlockSource::Final,
            block: summarize(b),
        });
    }
    Ok(blocks.len() as u64)
}

/// Records a peer's blocks `0..height` (read with its Query service) as its final chain.
/// A block the peer cannot serve ends the read: the gaps checker then reports it.
pub async fn record_peer_chain(
    peer: &str,
    addr: &str,
    reader: &Identity,
    transport: &Transport,
    height: u64,
    history: &History,
    archive_of: Option<&std::path::Path>,
) {
    use ordo_proto::pb::query::{query_client::QueryClient, query_request, GetBlock, QueryRequest};
    let Ok(conn) = ordo_sdk::orderer::connect(addr, transport).await else {
        return;
    };
    let mut client =
        QueryClient::new(conn).max_decoding_message_size(ordo_sdk::orderer::MAX_GRPC_MESSAGE_BYTES);
    let mut held = Vec::new();
    for number in 0..height {
        let req = QueryRequest {
            query: Some(query_request::Query::Block(GetBlock { number })),
        };
        let env = ordo_proto::envelope::create_signed(
            reader,
            CHANNEL,
            ordo_proto::pb::common::HeaderType::Message,
            req.encode_to_vec().into(),
            ordo_proto::now_ms(),
        )
        .0;
        let resp = match client.query(env).await {
            Ok(resp) => resp,
            // A peer joined from a snapshot, or pruned, holds no block below its first.
            Err(status) if status.code() == tonic::Code::NotFound && held.is_empty() => {
                continue;
            }
            Err(_) => break,
        };
        let Some(block) = resp.into_inner().block else {
            break;
        };
        held.push(block);
    }
    let first = held.first().map_or(height, ordo_proto::block::number);
    let mut blocks = archived_below(archive_of, first);
    blocks.extend(held);
    if let Some(base) = blocks
        .first()
        .map(ordo_proto::block::number)
        .filter(|n| *n > 0)
    {
        history.record(Event::ChainBase {
            node: peer.to_string(),
            first: base,
        });
    }
    for block in &blocks {
        history.record(Event::Block {
            node: peer.to_string(),
            source: BlockSource::Final,
            block: summarize(block),
        });
    }
}

/// Polls a peer's channel info and records each new (height, commit hash), until `stop`.
pub fn poll_peer<F, Fut>(
    peer: String,
    info: F,
    history: History,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<(u64, Vec<u8>)>> + Send,
{
    tokio::spawn(async move {
        let mut last = 0u64;
        while !stop.is_cancelled() {
            if let Some((height, hash)) = info().await {
                if height != last {
                    last = height;
                    history.record(Event::PeerState {
                        peer: peer.clone(),
                        height,
                        commit_hash: hex::encode(hash),
                    });
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(PEER_POLL) => {}
                _ = stop.cancelled() => break,
            }
        }
    })
}
