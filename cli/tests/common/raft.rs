//! Raft helpers shared by the multi-process raft tests: whole chains over Deliver, the
//! agreed leader, submitting with resubmission, and convergence checks.

use std::collections::HashSet;
use std::time::Duration;

use ordo_proto::identity::Identity;
use ordo_proto::pb::common::Status as Code;
use ordo_proto::pb::orderer::{seek_position, SeekBehavior, SeekNewest, SeekPosition};

use super::*;

pub fn at(n: u64) -> SeekPosition {
    SeekPosition {
        r#type: Some(seek_position::Type::Specified(n)),
    }
}

/// Every block `addr`'s ledger holds: from block 0, or — for a node that joined after a
/// config block, or pruned — from the first block it holds.
pub async fn chain(
    channel: &str,
    addr: &str,
    reader: &Identity,
) -> Vec<ordo_proto::pb::common::Block> {
    let newest = deliver(
        addr,
        reader,
        channel,
        SeekPosition {
            r#type: Some(seek_position::Type::Newest(SeekNewest {})),
        },
        Some(SeekPosition {
            r#type: Some(seek_position::Type::Newest(SeekNewest {})),
        }),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    let top = newest
        .blocks
        .last()
        .and_then(|b| b.header.as_ref())
        .map(|h| h.number)
        .unwrap_or(0);
    deliver(
        addr,
        reader,
        channel,
        SeekPosition {
            r#type: Some(seek_position::Type::Oldest(Default::default())),
        },
        Some(at(top)),
        SeekBehavior::FailIfNotReady,
    )
    .await
    .blocks
}

/// The leader every listed node agrees on (by name), waiting up to 20 s.
pub async fn agreed_leader(channel: &str, nodes: &[(&str, &Identity)]) -> String {
    for _ in 0..200 {
        let mut leaders = HashSet::new();
        let mut roles = Vec::new();
        for (addr, admin) in nodes {
            let info = channel_info(addr, admin, channel).await;
            leaders.insert(info.leader.clone());
            roles.push(info.role);
        }
        if leaders.len() == 1 && roles.iter().filter(|r| *r == "leader").count() == 1 {
            if let Some(l) = leaders.into_iter().next().filter(|l| !l.is_empty()) {
                return l;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no agreed raft leader");
}

/// Broadcasts `count` envelopes through `addr` one stream at a time, resubmitting those
/// answered SERVICE_UNAVAILABLE (no leader right now); returns the acknowledged tx ids.
pub async fn submit_all(
    channel: &str,
    addr: &str,
    client: &Identity,
    first_tag: u64,
    count: u64,
) -> Vec<String> {
    submit_sized(channel, addr, client, first_tag, count, 200).await
}

/// [`submit_all`] with envelopes of about `payload` bytes.
pub async fn submit_sized(
    channel: &str,
    addr: &str,
    client: &Identity,
    first_tag: u64,
    count: u64,
    payload: usize,
) -> Vec<String> {
    let mut acked = Vec::new();
    let mut pending: Vec<u64> = (first_tag..first_tag + count).collect();
    for _ in 0..100 {
        if pending.is_empty() {
            return acked;
        }
        let batch: Vec<_> = pending
            .iter()
            .map(|t| message(client, channel, payload, *t))
            .collect();
        let (envs, ids): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        // In committed mode an answer may wait for a new leader, never forever.
        let responses = tokio::time::timeout(Duration::from_secs(60), broadcast(addr, envs))
            .await
            .expect("every envelope answered (none silently dropped)");
        let mut retry = Vec::new();
        for ((r, id), tag) in responses.iter().zip(ids).zip(pending.iter()) {
            match Code::try_from(r.status) {
                Ok(Code::Success) => acked.push(id),
                Ok(Code::ServiceUnavailable) => retry.push(*tag),
                other => panic!("unexpected status {other:?}: {}", r.info),
            }
        }
        pending = retry;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    panic!("{} envelopes never accepted", pending.len());
}

/// Waits until every node that holds its chain from block 0 holds `acked` exactly once,
/// every node is at the same height, and every block any node holds has the same hash as
/// that block on the others (a node that joined after a config block holds only the
/// chain from there on, compared block by block); returns the common height.
pub async fn converged(channel: &str, nodes: &[(&str, &Identity)], acked: &[String]) -> usize {
    let want: HashSet<&String> = acked.iter().collect();
    let first =
        |c: &[ordo_proto::pb::common::Block]| c.first().map_or(0, ordo_proto::block::number);
    for _ in 0..150 {
        let mut chains = Vec::new();
        for (addr, reader) in nodes {
            chains.push(chain(channel, addr, reader).await);
        }
        let heights: Vec<u64> = chains
            .iter()
            .map(|c| c.last().map_or(0, |b| ordo_proto::block::number(b) + 1))
            .collect();
        let whole: Vec<&Vec<_>> = chains.iter().filter(|c| first(c) == 0).collect();
        assert!(!whole.is_empty(), "no node holds the chain from block 0");
        for c in &chains {
            let ids: Vec<String> = c.iter().flat_map(block_tx_ids).collect();
            let unique: HashSet<&String> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "a tx id is in the chain twice");
        }
        let complete = whole.iter().all(|c| {
            let ids: HashSet<String> = c.iter().flat_map(block_tx_ids).collect();
            want.iter().all(|w| ids.contains(*w))
        });
        if complete && heights.iter().all(|h| *h == heights[0]) {
            let reference = whole[0];
            for c in &chains {
                for b in c {
                    let n = usize::try_from(ordo_proto::block::number(b)).expect("small");
                    assert_eq!(
                        ordo_proto::block::hash(b),
                        ordo_proto::block::hash(&reference[n]),
                        "ledgers diverge"
                    );
                }
            }
            return usize::try_from(heights[0]).expect("small");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("ledgers did not converge");
}
