//! Pruning with archiving over real processes: a raft channel of three orderers and three
//! peers, every node keeping only its newest blocks (`[ledger] retain_blocks`) and archiving
//! the rest, under sustained load. Every node prunes; the ledgers stay bounded; a read of a
//! pruned block answers NOT_FOUND naming the lowest block held (orderer Deliver and peer
//! Query); an orderer and a peer killed with SIGKILL come back with pruning on and catch
//! up; the peers agree; and each node's archive verifies as a chain that its ledger
//! continues (`ordo block verify --archive`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::raft::{agreed_leader, at};
use common::*;
use ordo_proto::identity::Identity;
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_proto::pb::query::{query_request, GetBlock};

const CHANNEL: &str = "pruned";
const ORGS: [&str; 3] = ["BankA", "BankB", "BankC"];
/// Blocks each node keeps.
const RETAIN: u64 = 30;

fn ledger_toml() -> String {
    format!("[ledger]\nretain_blocks = {RETAIN}\narchive_dir = \"archive\"\n")
}

/// (first block, height) of every node.
async fn shapes(nodes: &[(String, Identity)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (addr, admin) in nodes {
        let info = channel_info(addr, admin, CHANNEL).await;
        out.push((info.first_block, info.height));
    }
    out
}

/// Waits until every node's first block is at least `first`.
async fn wait_pruned_past(nodes: &[(String, Identity)], first: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let seen = shapes(nodes).await;
        if seen.iter().all(|(f, _)| *f >= first) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every node pruned past block {first}: (first, height) {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `ordo block verify --archive` of a stopped node's archive; checks its ledger starts
/// right after it, linked by hash.
fn archive_continues_ledger(node_dir: &Path) {
    let archive = node_dir.join("archive").join(CHANNEL);
    let out = run_ok(&["block", "verify", "--archive", &path_arg(&archive)]);
    assert!(out.contains("OK: archive"), "{out}");
    let last: u64 = out
        .split("holds blocks 0..=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an archive from block 0: {out}"));
    let hash = out
        .rsplit("the last block's hash is ")
        .next()
        .map(str::trim)
        .expect("the last hash printed");
    let store =
        ordo_ledger::BlockStore::open(&node_dir.join("data").join("channels").join(CHANNEL))
            .expect("the stopped node's ledger opens");
    let base = store
        .base()
        .expect("base")
        .expect("a pruned ledger has a base");
    assert_eq!(base.first_block, last + 1, "{}", node_dir.display());
    assert_eq!(hex::encode(base.prev_hash), hash, "{}", node_dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "new in session 24 and not yet seen passing (its first run found the scrub race fixed in the same commit); run with --ignored"]
async fn a_raft_channel_and_three_peers_prune_and_archive_under_load_and_survive_kills() {
    let c = Consortium::new(&ORGS.join(","));
    let admins: Vec<Identity> = ORGS.iter().map(|o| c.identity(o, "admin")).collect();
    let mut orderers: Vec<OrdererProcess> = ORGS
        .iter()
        .enumerate()
        .map(|(i, org)| OrdererProcess::start_with(&c, &format!("orderer{i}"), org, &ledger_toml()))
        .collect();
    for (o, a) in orderers.iter_mut().zip(&admins) {
        o.wait_ready(a).await;
    }
    let endpoints: Vec<String> = orderers.iter().map(|o| o.addr.clone()).collect();
    let genesis = genesis_with_bank(
        &c,
        CHANNEL,
        "BankA",
        &[
            "--consensus",
            "raft",
            "--orderer-endpoints",
            &endpoints.join(","),
            // Raft snapshots often, so the raft ceiling moves with the window.
            "--raft-snapshot-bytes",
            "1048576",
            "--batch-timeout-ms",
            "20",
            "--max-message-count",
            "10",
            "--ack-mode",
            "committed",
        ],
    );
    for (o, a) in orderers.iter().zip(&admins) {
        join(&o.addr, a, &genesis).await;
    }
    let endpoint_refs: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let mut peers: Vec<PeerProcess> = ORGS
        .iter()
        .enumerate()
        .map(|(i, org)| {
            PeerProcess::start_peer_at(
                &c,
                &format!("peer{i}"),
                org,
                &endpoint_refs,
                None,
                &ledger_toml(),
            )
        })
        .collect();
    for (p, a) in peers.iter_mut().zip(&admins) {
        p.wait_ready(a).await;
        join(&p.addr, a, &genesis).await;
    }
    let all: Vec<(String, Identity)> = orderers
        .iter()
        .chain(peers.iter())
        .zip(admins.iter().chain(admins.iter()))
        .map(|(n, a)| (n.addr.clone(), a.clone()))
        .collect();

    let orderer_refs: Vec<(&str, &Identity)> =
        all[..3].iter().map(|(a, i)| (a.as_str(), i)).collect();
    agreed_leader(CHANNEL, &orderer_refs).await;

    // Sustained load: blocks of ten 4 KiB writes, so the raft log passes its snapshot
    // interval every ~25 blocks.
    let load = BankLoad::start(
        &orderers[0].addr,
        c.identity("BankA", "client"),
        c.identity("BankA", "peer"),
        CHANNEL,
        bytes::Bytes::from(vec![b'7'; 4096]),
    );
    wait_pruned_past(&all, 2 * RETAIN).await;

    // A pruned block: NOT_FOUND with the lowest height, from an orderer and from a peer.
    let client = c.identity("BankA", "client");
    let d = deliver(
        &orderers[1].addr,
        &client,
        CHANNEL,
        at(0),
        Some(at(0)),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::NotFound, "{}", d.info);
    assert!(d.info.contains("the lowest block held is"), "{}", d.info);
    assert!(d.blocks.is_empty());
    let q = try_peer_query(
        &peers[2].addr,
        &admins[2],
        CHANNEL,
        query_request::Query::Block(GetBlock { number: 1 }),
    )
    .await
    .expect_err("block 1 was pruned");
    assert_eq!(q.code(), tonic::Code::NotFound, "{q:?}");
    assert!(q.message().contains("the lowest block held is"), "{q:?}");

    // SIGKILL an orderer and a peer while they prune under load; they come back with
    // pruning on, catch up, and keep pruning.
    let before = shapes(&all).await;
    orderers[1].kill();
    peers[1].kill();
    // Not synchronisation: the nodes stay down while the others move on (and prune past
    // what the killed ones hold), whatever the exact time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    orderers[1].restart(&admins[1]).await;
    peers[1].restart(&admins[1]).await;
    let moved_on = before.iter().map(|(_, h)| *h).max().unwrap_or(0);
    wait_pruned_past(&all, moved_on.saturating_sub(RETAIN) + 10).await;
    load.stop().await;

    // The peers agree, and every ledger settles within its window (plus what raft's last
    // snapshot still holds on an orderer: at most one snapshot interval of blocks).
    let peer_refs: Vec<(String, Identity)> = all[3..].to_vec();
    wait_peers_agree(&peer_refs, CHANNEL).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = shapes(&all).await;
        if seen.iter().all(|(f, h)| h - f <= 2 * RETAIN) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ledgers above their window: (first, height) {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, metrics) = http_get(&orderers[1].ops, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains(&format!(
            "ordo_orderer_ledger_first_block{{channel=\"{CHANNEL}\"}}"
        )),
        "{metrics}"
    );

    // Each node's archive verifies, and its ledger continues it.
    for n in orderers.iter_mut().chain(peers.iter_mut()) {
        n.stop();
        archive_continues_ledger(n.config.parent().expect("node dir"));
    }
}
