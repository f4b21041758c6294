//! Raft membership and catch-up over real `ordo orderer` processes: a channel grows from 3
//! to 5 consenters and loses one while clients keep submitting; a node killed while the
//! others compacted their logs comes back through a snapshot and block pulls; a node
//! whose data directory was wiped rejoins through a config remove + add; a fourth orderer
//! joins a channel every orderer has pruned, after its latest config block, without the
//! blocks below it. All changes go
//! through the `ordo channel consenter` CLI, as an operator would make them. Every link
//! is mutual TLS, and the Cluster service pins each consenter's TLS certificate.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::raft::*;
use common::*;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::Status as Code;

const CHANNEL: &str = "members";
const ORGS: [&str; 3] = ["BankA", "BankB", "BankC"];

/// Three raft orderers (one per org, over mutual TLS, `node_toml` added to their
/// configs) on a committed-mode channel, joined and ready.
async fn three_orderers(
    c: &Consortium,
    extra: &[&str],
    node_toml: &str,
) -> (Vec<OrdererProcess>, Vec<Identity>) {
    let mut nodes: Vec<OrdererProcess> = ORGS
        .iter()
        .enumerate()
        .map(|(i, org)| {
            OrdererProcess::start_tls(c, &format!("orderer{i}"), org, "orderer", node_toml)
        })
        .collect();
    let admins: Vec<Identity> = ORGS.iter().map(|o| c.identity(o, "admin")).collect();
    for (n, a) in nodes.iter_mut().zip(&admins) {
        n.wait_ready(a).await;
    }
    let endpoints: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let endpoints = endpoints.join(",");
    let mut args = vec![
        "--consensus",
        "raft",
        "--orderer-endpoints",
        &endpoints,
        "--ack-mode",
        "committed",
        "--batch-timeout-ms",
        "50",
        "--raft-tick-ms",
        "50",
    ];
    args.extend_from_slice(extra);
    let genesis = c.genesis(CHANNEL, &args);
    for (n, a) in nodes.iter().zip(&admins) {
        join(&n.addr, a, &genesis).await;
    }
    (nodes, admins)
}

/// `ordo channel consenter add` through `via`, saving the config block; returns its path.
fn add_consenter(c: &Consortium, via: &str, id: &str, endpoint: &str, org: &str) -> String {
    let block = c.dir.path().join(format!("add-{id}.block"));
    let block = block.to_str().expect("utf8").to_string();
    let crypto = c.crypto();
    run_ok(&[
        "channel",
        "consenter",
        "add",
        "--crypto",
        crypto.to_str().expect("utf8"),
        "--orderer",
        via,
        "--channel",
        CHANNEL,
        "--id",
        id,
        "--endpoint",
        endpoint,
        "--org",
        org,
        "--member",
        id,
        "--out-block",
        &block,
    ]);
    block
}

fn remove_consenter(c: &Consortium, via: &str, id: &str) {
    let crypto = c.crypto();
    run_ok(&[
        "channel",
        "consenter",
        "remove",
        "--crypto",
        crypto.to_str().expect("utf8"),
        "--orderer",
        via,
        "--channel",
        CHANNEL,
        "--id",
        id,
    ]);
}

/// Keeps submitting through `addr` until `stop` is set; returns every acknowledged tx id.
fn background_load(
    addr: String,
    client: Identity,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut tag = 1_000_000;
        while !stop.load(Ordering::Relaxed) {
            acked.extend(submit_all(CHANNEL, &addr, &client, tag, 20).await);
            tag += 20;
        }
        acked
    })
}

fn pairs<'a>(
    nodes: &'a [&'a OrdererProcess],
    admins: &'a [&'a Identity],
) -> Vec<(&'a str, &'a Identity)> {
    nodes
        .iter()
        .zip(admins)
        .map(|(n, a)| (n.addr.as_str(), *a))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_grows_from_three_to_five_consenters_and_loses_one_under_load() {
    let c = Consortium::new(&ORGS.join(","));
    let (nodes, admins) = three_orderers(&c, &[], "").await;
    // Two more orderers, each with an orderer identity of its own.
    for (name, org) in [("orderer3", "BankA"), ("orderer4", "BankB")] {
        issue_orderer(&c, org, name);
    }
    let mut extra = Vec::new();
    for (name, org) in [("orderer3", "BankA"), ("orderer4", "BankB")] {
        let mut n = OrdererProcess::start_tls(&c, name, org, name, "");
        n.wait_ready(&c.identity(org, "admin")).await;
        extra.push(n);
    }
    let client = c.identity("BankC", "client");
    let first: Vec<(&str, &Identity)> = nodes
        .iter()
        .zip(&admins)
        .map(|(n, a)| (n.addr.as_str(), a))
        .collect();
    agreed_leader(CHANNEL, &first).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = background_load(nodes[0].addr.clone(), client.clone(), stop.clone());

    // Grow to 4, then 5: each new node joins from the block that added it.
    for (i, (name, org)) in [("orderer3", "BankA"), ("orderer4", "BankB")]
        .iter()
        .enumerate()
    {
        let block = add_consenter(&c, &nodes[0].addr, name, &extra[i].addr, org);
        if i == 0 {
            // Bad joins are refused and leave nothing behind: a node the block does not
            // name, and a block that holds no config.
            let bytes = std::fs::read(&block).expect("block file");
            let (status, info) =
                join_block(&extra[1].addr, &c.identity("BankB", "admin"), bytes).await;
            assert_eq!(status, tonic::Code::InvalidArgument, "{info}");
            assert!(info.contains("does not name this orderer"), "{info}");
            let data_block = chain(CHANNEL, &nodes[0].addr, &admins[0])
                .await
                .into_iter()
                .find(|b| {
                    ordo_proto::block::number(b) > 0
                        && ordo_proto::config::config_from_block(b).is_err()
                })
                .expect("a data block");
            let (status, info) = join_block(
                &extra[0].addr,
                &c.identity(org, "admin"),
                prost::Message::encode_to_vec(&data_block),
            )
            .await;
            assert_eq!(status, tonic::Code::InvalidArgument, "{info}");
            assert!(info.contains("not a config block"), "{info}");
        }
        join(
            &extra[i].addr,
            &c.identity(org, "admin"),
            std::path::Path::new(&block),
        )
        .await;
    }
    let mut acked = submit_all(CHANNEL, &extra[1].addr, &client, 0, 40).await;

    // Shrink: orderer1 leaves; it stops ordering and says why.
    remove_consenter(&c, &nodes[0].addr, "orderer1");
    let mut refused = None;
    let mut last = None;
    for _ in 0..100 {
        let (env, _) = message(&client, CHANNEL, 100, 99_999);
        let r = broadcast(&nodes[1].addr, vec![env]).await;
        if r[0].status == Code::ServiceUnavailable as i32 && r[0].info.contains("removed") {
            refused = Some(r[0].info.clone());
            break;
        }
        last = Some(r[0].clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused.is_some(),
        "the removed node still takes envelopes: last answer {last:?}\n{}",
        nodes[1].log_text()
    );
    acked.extend(submit_all(CHANNEL, &extra[0].addr, &client, 100, 40).await);
    stop.store(true, Ordering::Relaxed);
    acked.extend(load.await.expect("load task"));
    assert!(acked.len() > 80, "the load kept being acknowledged");

    let members: Vec<&OrdererProcess> = vec![&nodes[0], &nodes[2], &extra[0], &extra[1]];
    let member_admins = vec![&admins[0], &admins[2], &admins[0], &admins[1]];
    let all = pairs(&members, &member_admins);
    let leader = agreed_leader(CHANNEL, &all).await;
    assert_ne!(leader, "orderer1");
    converged(CHANNEL, &all, &acked).await;
    // The removed node's ledger is a prefix of the others'.
    let removed = chain(CHANNEL, &nodes[1].addr, &admins[1]).await;
    let kept = chain(CHANNEL, &nodes[0].addr, &admins[0]).await;
    assert!(removed.len() <= kept.len());
    for (a, b) in removed.iter().zip(&kept) {
        assert_eq!(ordo_proto::block::hash(a), ordo_proto::block::hash(b));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_catches_up_by_snapshot_and_a_wiped_node_rejoins() {
    let c = Consortium::new(&ORGS.join(","));
    // Snapshots every MiB of log: about a thousand 1 KiB envelopes.
    let (mut nodes, admins) = three_orderers(&c, &["--raft-snapshot-bytes", "1048576"], "").await;
    let client = c.identity("BankA", "client");
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let all: Vec<(&str, &Identity)> = addrs
        .iter()
        .map(String::as_str)
        .zip(admins.iter())
        .collect();
    let leader = agreed_leader(CHANNEL, &all).await;
    let leader_ix: usize = leader
        .trim_start_matches("orderer")
        .parse()
        .expect("orderer<i>");
    let down = (leader_ix + 1) % 3;
    let up = (leader_ix + 2) % 3;

    // One follower is killed; the others order well past a snapshot.
    nodes[down].kill();
    let mut acked = Vec::new();
    for round in 0..6 {
        acked
            .extend(submit_sized(CHANNEL, &nodes[up].addr, &client, round * 500, 500, 1_000).await);
    }
    let snapshot_index = |ops: &str| -> u64 {
        let (_, text) = http_get(ops, "/metrics");
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "ordo_orderer_raft_snapshot_index{{channel=\"{CHANNEL}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut compacted = 0;
    for _ in 0..100 {
        compacted = snapshot_index(&nodes[leader_ix].ops);
        if compacted > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(compacted > 0, "the leader never compacted its log");

    // The killed node's log ends before the leader's: it installs the snapshot and pulls
    // the blocks it lacks from the others.
    nodes[down].restart(&admins[down]).await;
    converged(CHANNEL, &all, &acked).await;
    assert!(
        nodes[down]
            .log_text()
            .contains("installing a raft snapshot"),
        "the node caught up through a snapshot:\n{}",
        nodes[down].log_text()
    );
    assert!(snapshot_index(&nodes[down].ops) >= compacted);

    // Wipe a node: it leaves the consenters, comes back empty, and is added again.
    let wiped = down;
    let wiped_name = format!("orderer{wiped}");
    nodes[wiped].kill();
    std::fs::remove_dir_all(nodes[wiped].data_dir()).expect("wipe");
    remove_consenter(&c, &nodes[leader_ix].addr, &wiped_name);
    acked.extend(submit_all(CHANNEL, &nodes[up].addr, &client, 10_000, 30).await);
    nodes[wiped].restart(&admins[wiped]).await;
    let block = c.dir.path().join("readd.block");
    let crypto = c.crypto();
    let cert_member = "orderer";
    run_ok(&[
        "channel",
        "consenter",
        "add",
        "--crypto",
        crypto.to_str().expect("utf8"),
        "--orderer",
        &nodes[leader_ix].addr,
        "--channel",
        CHANNEL,
        "--id",
        &wiped_name,
        "--endpoint",
        &nodes[wiped].addr,
        "--org",
        ORGS[wiped],
        "--member",
        cert_member,
        "--out-block",
        block.to_str().expect("utf8"),
    ]);
    join(&nodes[wiped].addr, &admins[wiped], &block).await;
    acked.extend(submit_all(CHANNEL, &nodes[wiped].addr, &client, 20_000, 30).await);
    converged(CHANNEL, &all, &acked).await;
    for n in nodes.iter_mut() {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderer_joins_a_pruned_channel_after_its_config_block_without_the_history() {
    let c = Consortium::new(&ORGS.join(","));
    // Every orderer keeps 20 blocks and snapshots its raft log every MiB, so the chain's
    // start is gone everywhere: a join that pulled the history could not finish.
    let (nodes, admins) = three_orderers(
        &c,
        &["--raft-snapshot-bytes", "1048576"],
        "[ledger]\nretain_blocks = 20\n",
    )
    .await;
    let client = c.identity("BankB", "client");
    let all: Vec<(&str, &Identity)> = nodes
        .iter()
        .zip(&admins)
        .map(|(n, a)| (n.addr.as_str(), a))
        .collect();
    agreed_leader(CHANNEL, &all).await;
    let mut acked = Vec::new();
    for round in 0..4 {
        acked.extend(submit_sized(CHANNEL, &nodes[0].addr, &client, round * 300, 300, 1_000).await);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while first_blocks(&all).await.contains(&0) {
        assert!(
            std::time::Instant::now() < deadline,
            "not every orderer pruned: {:?}",
            first_blocks(&all).await
        );
        acked.extend(
            submit_all(
                CHANNEL,
                &nodes[1].addr,
                &client,
                9_000 + acked.len() as u64,
                20,
            )
            .await,
        );
    }

    // A fourth orderer made a consenter; it joins after the config block that added it.
    issue_orderer(&c, "BankA", "orderer3");
    let admin = c.identity("BankA", "admin");
    let mut fourth = OrdererProcess::start_tls(&c, "orderer3", "BankA", "orderer3", "");
    fourth.wait_ready(&admin).await;
    let block = add_consenter(&c, &nodes[0].addr, "orderer3", &fourth.addr, "BankA");
    let h = ordo_proto::block::number(
        &<ordo_proto::pb::common::Block as prost::Message>::decode(
            std::fs::read(&block).expect("block file").as_slice(),
        )
        .expect("a block"),
    );
    assert!(
        first_blocks(&all).await.iter().all(|f| *f > 0),
        "block 0 is gone everywhere"
    );
    join(&fourth.addr, &admin, std::path::Path::new(&block)).await;
    assert_eq!(
        channel_info(&fourth.addr, &admin, CHANNEL)
            .await
            .first_block,
        h + 1
    );

    // It orders with the others and holds their blocks from h + 1 on.
    acked.extend(submit_all(CHANNEL, &fourth.addr, &client, 50_000, 60).await);
    let held = chain(CHANNEL, &fourth.addr, &admin).await;
    assert_eq!(held.first().map(ordo_proto::block::number), Some(h + 1));
    let theirs = chain(CHANNEL, &nodes[0].addr, &admins[0]).await;
    let mut compared = 0;
    for b in &held {
        let n = ordo_proto::block::number(b);
        if let Some(t) = theirs.iter().find(|t| ordo_proto::block::number(t) == n) {
            assert_eq!(
                ordo_proto::block::hash(b),
                ordo_proto::block::hash(t),
                "block {n}"
            );
            compared += 1;
        }
    }
    assert!(compared > 0, "the two ledgers share blocks to compare");
    let height = |addr: &str| {
        let addr = addr.to_string();
        let admin = admin.clone();
        async move { channel_info(&addr, &admin, CHANNEL).await.height }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let target = height(&nodes[0].addr).await;
        if height(&fourth.addr).await >= target {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the joined orderer does not keep up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        acked.len() >= 1_260,
        "every round was acknowledged: {}",
        acked.len()
    );
}

/// The first block each node holds (`ordo channel info`'s `first_block`).
async fn first_blocks(nodes: &[(&str, &Identity)]) -> Vec<u64> {
    let mut firsts = Vec::new();
    for (addr, admin) in nodes {
        firsts.push(channel_info(addr, admin, CHANNEL).await.first_block);
    }
    firsts
}
