//! The pruning scenario's faults: every node keeps only its newest blocks
//! ([`ORDERER_RETAIN_BLOCKS`], [`PEER_RETAIN_BLOCKS`]) and archives the rest, and nodes are killed -9 in the middle of a pruning step —
//! while the archive segment is being written (its `.partial` file exists), or just after
//! it was renamed into place, before the ledger's delete — and at random moments.
//!
//! What must hold is checked by the common checkers over each node's final chain, which
//! for this scenario is its archive followed by the blocks its ledger still holds
//! ([`final_archive`]): a step that loses, repeats or misorders a block, an archive that
//! does not verify or does not end where the ledger starts, shows as a gap, a fork or a
//! lost acknowledged transaction.

use std::path::{Path, PathBuf};

use ordo_proto::pb::common::Block;

use super::*;
use crate::net::CHANNEL;

/// Blocks each orderer keeps: enough for a peer or a raft follower that was killed to
/// catch up from it after its restart (a few seconds of blocks at this load). A node that
/// falls further behind than every orderer's window cannot catch up by pulling blocks.
pub const ORDERER_RETAIN_BLOCKS: u64 = 60;
/// Blocks each peer keeps (nobody pulls blocks from a peer).
pub const PEER_RETAIN_BLOCKS: u64 = 15;

/// The environment that turns pruning with archiving on for a node, keeping `retain`
/// blocks (`ORDO_` overrides of `[ledger]`; the archive lands in the node's own directory).
pub fn pruning_env(retain: u64) -> Vec<(String, String)> {
    vec![
        ("ORDO_LEDGER_RETAIN_BLOCKS".to_string(), retain.to_string()),
        (
            "ORDO_LEDGER_ARCHIVE_DIR".to_string(),
            "\"archive\"".to_string(),
        ),
    ]
}

/// The channel's archive directory of the node whose data directory is `data_dir`.
pub fn archive_dir(data_dir: &Path) -> PathBuf {
    data_dir
        .parent()
        .unwrap_or(data_dir)
        .join("archive")
        .join(CHANNEL)
}

/// The verified blocks of a node's archive, oldest first (none when it has no archive);
/// an archive that does not verify is an `Err` naming why.
pub fn final_archive(data_dir: &Path) -> Result<Vec<Block>, String> {
    let dir = archive_dir(data_dir);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut blocks = Vec::new();
    ordo_ledger::archive::verify(&dir, ordo_proto::now_ms() / 1000, |b| {
        blocks.push(b.clone())
    })
    .map_err(|e| e.to_string())?;
    Ok(blocks)
}

/// What an archive directory shows of a step under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// A segment is being written.
    Archiving,
    /// A new segment was just renamed into place.
    Archived,
}

fn segments_and_partial(dir: &Path) -> (usize, bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, false);
    };
    let mut segments = 0;
    let mut partial = false;
    for name in entries.flatten().map(|e| e.file_name()) {
        let name = name.to_string_lossy();
        if name.ends_with(ordo_ledger::archive::SEGMENT_SUFFIX) {
            segments += 1;
        } else if name.ends_with(".partial") {
            partial = true;
        }
    }
    (segments, partial)
}

/// Watches `dir` for up to `limit` and returns when `moment` is seen.
async fn wait_for(dir: &Path, moment: Moment, limit: Duration) -> bool {
    let (start_segments, _) = segments_and_partial(dir);
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let (segments, partial) = segments_and_partial(dir);
        let seen = match moment {
            Moment::Archiving => partial,
            Moment::Archived => segments > start_segments,
        };
        if seen {
            return true;
        }
        // Polling, not synchronisation: the kill lands wherever the step is when seen.
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    false
}

/// Kills random nodes (orderers and peers) in the middle of pruning steps, again and
/// again, restarting each after a pause.
pub(super) async fn kill_while_pruning(
    n: &mut Nemesis<'_>,
    rng: &mut StdRng,
    end: tokio::time::Instant,
) -> Vec<Violation> {
    let nodes: Vec<NodeRef> = (0..n.net.orderers.len())
        .map(NodeRef::Orderer)
        .chain((0..n.net.peers.len()).map(NodeRef::Peer))
        .collect();
    let (mut archiving, mut archived, mut random) = (0u32, 0u32, 0u32);
    while tokio::time::Instant::now() < end && !nodes.is_empty() {
        let victim = nodes[rng.gen_range(0..nodes.len())];
        let data_dir = match victim {
            NodeRef::Orderer(i) => n.net.orderers[i].data_dir.clone(),
            NodeRef::Peer(i) => n.net.peers[i].data_dir.clone(),
        };
        let dir = archive_dir(&data_dir);
        let moment = if rng.gen_bool(0.5) {
            Moment::Archiving
        } else {
            Moment::Archived
        };
        if wait_for(&dir, moment, Duration::from_secs(3)).await {
            match moment {
                Moment::Archiving => archiving += 1,
                Moment::Archived => archived += 1,
            }
        } else {
            random += 1;
        }
        n.kill(victim);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..800))).await;
        n.start(victim);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..1500))).await;
    }
    n.note_fact(format!(
        "kills: {archiving} while a segment was written, {archived} right after one was renamed into place (before the delete), {random} at other moments"
    ));
    Vec::new()
}
