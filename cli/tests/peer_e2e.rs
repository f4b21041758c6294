//! Peers over real processes: an orderer and two peers of different orgs follow a
//! channel, validate endorser transactions (endorsement policy, MVCC, duplicates) and
//! commit the same state — their commit hashes agree — across a peer restart.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use ordo_proto::config;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, ChaincodeDefinition, Role, Status as Code};
use ordo_proto::pb::peer::{TxValidationCode, Version};
use ordo_proto::pb::query::{query_request, GetState, GetTransaction, QueryResponse};
use ordo_proto::policy::build as policy;
use ordo_sdk::tx::{self, Proposal, RwSetBuilder};
use prost::Message;

const CHANNEL: &str = "ledger";

/// A `bank` transaction writing `key = value`, reading `read` at a version, endorsed by
/// the given peers.
fn bank_tx(
    creator: &Identity,
    endorsers: &[&Identity],
    key: &str,
    value: &str,
    read: Option<Option<Version>>,
) -> (ordo_proto::pb::common::Envelope, String) {
    let p = Proposal::new(
        creator,
        CHANNEL,
        tx::invocation("bank", "set", vec![Bytes::copy_from_slice(key.as_bytes())]),
    );
    let mut rw = RwSetBuilder::new();
    if let Some(v) = read {
        rw.read("bank", key, v);
    }
    rw.write("bank", key, Bytes::copy_from_slice(value.as_bytes()));
    let env = tx::endorse_known(creator, &p, "1", rw.build(), endorsers.iter().copied())
        .expect("assemble");
    let tx_id = p.tx_id().to_string();
    (env, tx_id)
}

async fn query(addr: &str, id: &Identity, q: query_request::Query) -> QueryResponse {
    peer_query(addr, id, CHANNEL, q).await
}

async fn wait_for_height(
    addr: &str,
    id: &Identity,
    height: u64,
) -> ordo_proto::pb::admin::ChannelInfo {
    for _ in 0..200 {
        let info = channel_info(addr, id, CHANNEL).await;
        if info.height >= height {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("peer at {addr} did not reach height {height}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_peers_validate_commit_and_agree() {
    let c = Consortium::new("BankA,BankB,BankC");
    let admin_a = c.identity("BankA", "admin");
    let admin_b = c.identity("BankB", "admin");
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin_a).await;
    // The channel names this orderer as its endpoint and deploys `bank` under 2 of 3 orgs.
    // Committed acks: once Broadcast answers, the orderer's height includes the blocks, so
    // waiting for a peer to reach that height waits for those transactions (with enqueued
    // acks the last block could still be on its way to the ledger).
    let path = c.genesis(
        CHANNEL,
        &[
            "--orderer-endpoints",
            &o.addr,
            "--batch-timeout-ms",
            "30",
            "--max-message-count",
            "20",
            "--ack-mode",
            "committed",
        ],
    );
    let block = Block::decode(std::fs::read(&path).expect("read").as_slice()).expect("block");
    let mut cfg = config::config_from_block(&block).expect("config");
    cfg.chaincodes.push(ChaincodeDefinition {
        name: "bank".into(),
        version: "1".into(),
        endorsement_policy: Some(policy::n_out_of(
            2,
            &[
                ("BankA", Role::Peer),
                ("BankB", Role::Peer),
                ("BankC", Role::Peer),
            ],
        )),
        runtime: "builtin:bank".into(),
        sequence: 1,
        retired: false,
    });
    std::fs::write(
        &path,
        config::genesis_block(&cfg, 0)
            .expect("genesis")
            .encode_to_vec(),
    )
    .expect("write");
    join(&o.addr, &admin_a, &path).await;

    let mut pa = PeerProcess::start_peer(&c, "peerA", "BankA", &[]);
    let mut pb = PeerProcess::start_peer(&c, "peerB", "BankB", &[]);
    pa.wait_ready(&admin_a).await;
    pb.wait_ready(&admin_b).await;
    let crypto = c.crypto();
    for (peer, org) in [(&pa, "BankA"), (&pb, "BankB")] {
        run_ok(&[
            "channel",
            "join",
            "--peer",
            &peer.addr,
            "--key",
            crypto
                .join(format!("{org}/admin.key"))
                .to_str()
                .expect("utf8"),
            "--cert",
            crypto
                .join(format!("{org}/admin.cert"))
                .to_str()
                .expect("utf8"),
            "--genesis",
            path.to_str().expect("utf8"),
        ]);
    }

    let client = c.identity("BankC", "client");
    let (peer_a, peer_b, peer_c) = (
        c.identity("BankA", "peer"),
        c.identity("BankB", "peer"),
        c.identity("BankC", "peer"),
    );
    // Round 1: 30 fresh keys, properly endorsed; one under-endorsed; one endorsed by a client.
    let mut envs = Vec::new();
    let mut ids = Vec::new();
    for i in 0..30 {
        let (e, id) = bank_tx(
            &client,
            &[&peer_a, &peer_c],
            &format!("acct{i}"),
            "100",
            Some(None),
        );
        envs.push(e);
        ids.push(id);
    }
    let (under, under_id) = bank_tx(&client, &[&peer_a], "acct-x", "1", None);
    let (by_client, by_client_id) = bank_tx(
        &client,
        &[&peer_a, &c.identity("BankB", "client")],
        "acct-y",
        "1",
        None,
    );
    envs.push(under);
    envs.push(by_client);
    let resps = broadcast(&o.addr, envs).await;
    assert!(
        resps.iter().all(|r| r.status == Code::Success as i32),
        "{resps:?}"
    );

    // Round 2: acct0 read at its committed version (valid) twice in one block — the
    // second read is stale once the first writes (MVCC) — and acct1 read as absent.
    let height = channel_info(&o.addr, &admin_a, CHANNEL).await.height;
    let a = wait_for_height(&pa.addr, &admin_a, height).await;
    let st = query(
        &pa.addr,
        &client,
        query_request::Query::State(GetState {
            namespace: "bank".into(),
            key: "acct0".into(),
        }),
    )
    .await;
    let v0 = Version {
        block: st.values[0].block,
        tx: st.values[0].tx,
    };
    let (t1, t1_id) = bank_tx(&client, &[&peer_b, &peer_c], "acct0", "90", Some(Some(v0)));
    let (t2, t2_id) = bank_tx(&client, &[&peer_b, &peer_c], "acct0", "80", Some(Some(v0)));
    let (t3, t3_id) = bank_tx(&client, &[&peer_b, &peer_c], "acct1", "5", Some(None));
    let resps = broadcast(&o.addr, vec![t1, t2, t3]).await;
    assert!(resps.iter().all(|r| r.status == Code::Success as i32));
    assert!(a.height >= 2);

    // Settled: the orderer's height holds still for 300 ms (ten batch timeouts) and both
    // peers are at it.
    let final_height = {
        let mut settled = None;
        for _ in 0..100 {
            let before = channel_info(&o.addr, &admin_a, CHANNEL).await.height;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let h = channel_info(&o.addr, &admin_a, CHANNEL).await.height;
            let ha = channel_info(&pa.addr, &admin_a, CHANNEL).await.height;
            let hb = channel_info(&pb.addr, &admin_b, CHANNEL).await.height;
            if before == h && ha == h && hb == h {
                settled = Some(h);
                break;
            }
        }
        settled.expect("the network settles")
    };
    let ia = wait_for_height(&pa.addr, &admin_a, final_height).await;
    let ib = wait_for_height(&pb.addr, &admin_b, final_height).await;
    assert_eq!(ia.height, ib.height);
    assert_eq!(
        ia.commit_hash, ib.commit_hash,
        "peers of two orgs agree on the state"
    );
    assert_eq!(ia.node_role, "peer");
    // Readiness is evaluated in the background (twice a second) and served from a cache.
    let (code, body) = http_get_until(&pa.ops, "/readyz", 200);
    assert_eq!(code, 200, "caught up, so ready: {body}");
    let (code, body) = http_get(&pa.ops, "/metrics");
    assert_eq!(code, 200);
    // Every block this peer committed since it started is counted, and timed.
    let value = |name: &str| -> u64 {
        let prefix = format!("{name}{{channel=\"ledger\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    // Block 0 came with the join; the follower committed every later one.
    let committed = value("ordo_peer_blocks_committed_total");
    assert_eq!(committed, final_height - 1, "{body}");
    assert_eq!(
        value("ordo_peer_block_validate_seconds_count"),
        committed,
        "{body}"
    );
    assert_eq!(
        value("ordo_peer_block_commit_seconds_count"),
        committed,
        "{body}"
    );
    for metric in [
        "ordo_peer_block_verify_seconds_total",
        "ordo_peer_ledger_height",
    ] {
        assert!(body.contains(metric), "{metric} in {body}");
    }
    assert!(body.contains("ordo_peer_transactions_invalid_total{channel=\"ledger\",code=\"ENDORSEMENT_POLICY_FAILURE\"} 2"), "{body}");

    let code_of = |resp: &QueryResponse| {
        resp.transaction
            .as_ref()
            .map(|t| t.code_name.clone())
            .unwrap_or_default()
    };
    for (id, want) in [
        (&ids[0], TxValidationCode::Valid),
        (&under_id, TxValidationCode::EndorsementPolicyFailure),
        (&by_client_id, TxValidationCode::EndorsementPolicyFailure),
        (&t1_id, TxValidationCode::Valid),
        (&t2_id, TxValidationCode::MvccReadConflict),
        (&t3_id, TxValidationCode::MvccReadConflict),
    ] {
        let r = query(
            &pb.addr,
            &client,
            query_request::Query::Transaction(GetTransaction { tx_id: id.clone() }),
        )
        .await;
        assert_eq!(code_of(&r), want.as_str_name(), "tx {id}: {r:?}");
    }
    let st = query(
        &pb.addr,
        &client,
        query_request::Query::State(GetState {
            namespace: "bank".into(),
            key: "acct0".into(),
        }),
    )
    .await;
    assert_eq!(st.values[0].value.as_ref(), b"90");

    // The CLI shows the commit hash beside the height.
    let out = run_ok(&[
        "channel",
        "info",
        "--peer",
        &pb.addr,
        "--channel",
        CHANNEL,
        "--json",
        "--key",
        crypto.join("BankB/admin.key").to_str().expect("utf8"),
        "--cert",
        crypto.join("BankB/admin.cert").to_str().expect("utf8"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["commit_hash"].as_str().map(str::to_string),
        Some(hex::encode(&ia.commit_hash))
    );

    // A restarted peer resumes from its height and keeps agreeing.
    pb.stop();
    let (t4, _) = bank_tx(&client, &[&peer_a, &peer_b], "acct2", "7", None);
    assert_eq!(
        broadcast(&o.addr, vec![t4]).await[0].status,
        Code::Success as i32
    );
    pb.restart(&admin_b).await;
    let mut h = final_height;
    for _ in 0..100 {
        h = channel_info(&o.addr, &admin_a, CHANNEL).await.height;
        if h > final_height {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ia = wait_for_height(&pa.addr, &admin_a, h).await;
    let ib = wait_for_height(&pb.addr, &admin_b, h).await;
    assert_eq!((ia.height, &ia.commit_hash), (ib.height, &ib.commit_hash));
    // With the ordering service gone the peer cannot know it is caught up: not ready.
    o.stop();
    let (code, body) = http_get_until(&pa.ops, "/readyz", 503);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no orderer reachable"), "{body}");
    pa.stop();
    pb.stop();
}
