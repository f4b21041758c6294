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
/// Blocks each orderer keeps: more than this load orders while a killed node is down
/// (~50 blocks a second here), so that it can pull what it missed when it is back. A
/// node that falls further behind than every orderer's window cannot catch up by pulling
/// blocks (deploy/README.md, "Choose the window to outlast your downtime").
const ORDERER_RETAIN: u64 = 600;
/// Blocks each peer keeps (nobody pulls blocks from a peer).
const PEER_RETAIN: u64 = 30;

fn ledger_toml(retain: u64) -> String {
    format!("[ledger]\nretain_blocks = {retain}\narchive_dir = \"archive\"\n")
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

/// Waits until each node's first block is above `floor` (the same node's).
async fn wait_pruned_past(nodes: &[(String, Identity)], floor: &[u64]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let seen = shapes(nodes).await;
        if seen.iter().zip(floor).all(|((f, _), min)| f > min) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every node pruned past {floor:?}: (first, height) {seen:?}"
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
async fn a_raft_channel_and_three_peers_prune_and_archive_under_load_and_survive_kills() {
    let c = Consortium::new(&ORGS.join(","));
    let admins: Vec<Identity> = ORGS.iter().map(|o| c.identity(o, "admin")).collect();
    let mut orderers: Vec<OrdererProcess> = ORGS
        .iter()
        .enumerate()
        .map(|(i, org)| {
            OrdererProcess::start_with(
                &c,
                &format!("orderer{i}"),
                org,
                &ledger_toml(ORDERER_RETAIN),
            )
        })
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
                &ledger_toml(PEER_RETAIN),
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
    let leader = agreed_leader(CHANNEL, &orderer_refs).await;
    // The orderer killed below is a follower other than the one the load goes to: a
    // leader's failover is raft_cluster's test, and the load asserts every answer.
    let victim = (1..3)
        .find(|i| leader != format!("orderer{i}"))
        .expect("two of three orderers are followers");

    // Sustained load: blocks of ten 4 KiB writes, so the raft log passes its snapshot
    // interval every ~25 blocks.
    let load = BankLoad::start(
        &orderers[0].addr,
        c.identity("BankA", "client"),
        c.identity("BankA", "peer"),
        CHANNEL,
        bytes::Bytes::from(vec![b'7'; 4096]),
    );
    // Every node prunes at least twice (its first block passes a step's worth).
    let windows: Vec<u64> = [ORDERER_RETAIN; 3]
        .into_iter()
        .chain([PEER_RETAIN; 3])
        .collect();
    let twice: Vec<u64> = windows.iter().map(|w| w / 5).collect();
    wait_pruned_past(&all, &twice).await;

    // A pruned block: NOT_FOUND with the lowest height, from an orderer and from a peer.
    // (Block 0, the config block in force, is kept with the base and still served.)
    let client = c.identity("BankA", "client");
    let genesis = deliver(
        &orderers[1].addr,
        &client,
        CHANNEL,
        at(0),
        Some(at(0)),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(genesis.code, tonic::Code::Ok, "{}", genesis.info);
    assert_eq!(genesis.blocks.len(), 1);
    let d = deliver(
        &orderers[1].addr,
        &client,
        CHANNEL,
        at(1),
        Some(at(1)),
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

    // SIGKILL a follower orderer and a peer while they prune under load; they come back with
    // pruning on, catch up, and keep pruning.
    let before = shapes(&all).await;
    orderers[victim].kill();
    peers[1].kill();
    // Not synchronisation: the nodes stay down while the others move on (and prune past
    // what the killed ones hold), whatever the exact time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    orderers[victim].restart(&admins[victim]).await;
    peers[1].restart(&admins[1]).await;
    // Every node, the restarted ones too, prunes again after the restart.
    let firsts: Vec<u64> = before.iter().map(|(f, _)| *f).collect();
    wait_pruned_past(&all, &firsts).await;
    load.stop().await;

    // The peers agree, and every ledger settles within its window (plus what raft's last
    // snapshot still holds on an orderer: at most one snapshot interval of blocks).
    let peer_refs: Vec<(String, Identity)> = all[3..].to_vec();
    wait_peers_agree(&peer_refs, CHANNEL).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = shapes(&all).await;
        if seen.iter().zip(&windows).all(|((f, h), w)| h - f <= 2 * w) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ledgers above their window: (first, height) {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, metrics) = http_get(&orderers[victim].ops, "/metrics");
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
