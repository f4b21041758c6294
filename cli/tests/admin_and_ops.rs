//! Channel participation, ack modes across crashes and graceful stops, and the
//! operations endpoint — over real processes.

mod common;

use std::collections::HashMap;

use common::*;
use ordo_proto::pb::admin::{
    admin_command, GetChannelInfo, JoinChannel, ListChannels, RemoveChannel,
};
use ordo_proto::pb::common::Status as Code;
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_sdk::orderer::{oldest, position};
use ordo_testkit::answer::Answer;

async fn admin_call(
    addr: &str,
    id: &ordo_proto::identity::Identity,
    cmd: admin_command::Command,
) -> Answer<ordo_proto::pb::admin::AdminResponse> {
    let ch = common::connect(addr).await.expect("connect");
    let mut client = ordo_sdk::orderer::admin_client(ch);
    Answer::of(
        client
            .execute(ordo_sdk::orderer::admin_request(id, "", cmd))
            .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn channel_participation_is_admin_only_and_all_or_nothing() {
    let c = Consortium::new("BankA,BankB");
    let admin = c.identity("BankA", "admin");
    let genesis = std::fs::read(c.genesis("part", &[])).expect("genesis");
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin).await;
    let join = |g: Vec<u8>| {
        admin_command::Command::Join(JoinChannel {
            genesis_block: g.into(),
        })
    };

    for (who, label) in [
        (c.identity("BankA", "client"), "client of the node's org"),
        (c.identity("BankB", "admin"), "admin of another org"),
    ] {
        let r = admin_call(&o.addr, &who, join(genesis.clone())).await;
        assert_eq!(r.code, tonic::Code::PermissionDenied, "{label}: {}", r.info);
    }
    let r = admin_call(&o.addr, &admin, join(b"not a block".to_vec())).await;
    assert_eq!(r.code, tonic::Code::InvalidArgument, "{}", r.info);
    let r = admin_call(
        &o.addr,
        &admin,
        admin_command::Command::List(ListChannels {}),
    )
    .await;
    assert!(
        r.expect_ok("list").list.expect("list").channels.is_empty(),
        "refused joins left nothing behind"
    );

    let r = admin_call(&o.addr, &admin, join(genesis.clone())).await;
    assert_eq!(r.code, tonic::Code::Ok, "{}", r.info);
    assert_eq!(r.expect_ok("join").channel.expect("info").height, 1);
    let r = admin_call(&o.addr, &admin, join(genesis.clone())).await;
    assert_eq!(r.code, tonic::Code::AlreadyExists, "{}", r.info);

    // Readers may ask for info; strangers may not.
    let reader = c.identity("BankB", "client");
    let r = admin_call(
        &o.addr,
        &reader,
        admin_command::Command::Info(GetChannelInfo {
            channel_id: "part".into(),
        }),
    )
    .await;
    assert_eq!(r.code, tonic::Code::Ok, "{}", r.info);
    assert_eq!(
        r.expect_ok("info").channel.expect("info").consensus_type,
        "solo"
    );

    let client = c.identity("BankA", "client");
    let resps = broadcast(&o.addr, vec![message(&client, "part", 10, 1).0]).await;
    assert_eq!(resps[0].status, Code::Success as i32);

    let r = admin_call(
        &o.addr,
        &admin,
        admin_command::Command::Remove(RemoveChannel {
            channel_id: "part".into(),
        }),
    )
    .await;
    assert_eq!(r.code, tonic::Code::Ok, "{}", r.info);
    let resps = broadcast(&o.addr, vec![message(&client, "part", 10, 2).0]).await;
    assert_eq!(resps[0].status, Code::NotFound as i32);
    let d = deliver(
        &o.addr,
        &client,
        "part",
        oldest(),
        None,
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::NotFound);
    let r = admin_call(
        &o.addr,
        &admin,
        admin_command::Command::Remove(RemoveChannel {
            channel_id: "part".into(),
        }),
    )
    .await;
    assert_eq!(r.code, tonic::Code::NotFound);

    // Rejoining starts a fresh ledger; a restart keeps it.
    let r = admin_call(&o.addr, &admin, join(genesis)).await;
    assert_eq!(r.code, tonic::Code::Ok, "{}", r.info);
    o.stop();
    o.restart(&admin).await;
    let r = admin_call(
        &o.addr,
        &admin,
        admin_command::Command::List(ListChannels {}),
    )
    .await;
    let list = r.expect_ok("list").list.expect("list").channels;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].height, 1);

    let (code, body) = http_get(&o.ops, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"status\":\"OK\""), "{body}");
    let (code, body) = http_get(&o.ops, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("ordo_orderer_ledger_height"), "{body}");
    assert!(body.contains("ordo_orderer_admin_requests"), "{body}");
    assert!(body.contains("ordo_orderer_blocks_written_total"), "{body}");
    assert!(body.contains("ordo_orderer_commit_waiters{"), "{body}");
    o.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_acks_survive_sigkill_and_enqueued_acks_survive_sigterm() {
    let c = Consortium::new("BankA");
    let admin = c.identity("BankA", "admin");
    let client = c.identity("BankA", "client");
    let committed = c.genesis(
        "durable",
        &[
            "--ack-mode",
            "committed",
            "--batch-timeout-ms",
            "30",
            "--max-message-count",
            "50",
        ],
    );
    let enqueued = c.genesis(
        "fast",
        &["--batch-timeout-ms", "2000", "--max-message-count", "10000"],
    );
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin).await;
    join(&o.addr, &admin, &committed).await;
    join(&o.addr, &admin, &enqueued).await;

    // committed: every SUCCESS names its block; a crash right after loses none of them.
    let envs: Vec<_> = (0..500)
        .map(|i| message(&client, "durable", 64, i))
        .collect();
    let ids: Vec<String> = envs.iter().map(|(_, t)| t.clone()).collect();
    let resps = broadcast(&o.addr, envs.into_iter().map(|(e, _)| e).collect()).await;
    let mut block_of = HashMap::new();
    for (id, r) in ids.iter().zip(&resps) {
        assert_eq!(r.status, Code::Success as i32, "{}", r.info);
        block_of.insert(
            id.clone(),
            r.block_number
                .expect("committed acks carry the block number"),
        );
    }
    o.kill();
    o.restart(&admin).await;
    let d = deliver(
        &o.addr,
        &client,
        "durable",
        oldest(),
        Some(position(None)),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::Ok, "{}", d.info);
    let mut found = HashMap::new();
    for b in &d.blocks {
        let n = b.header.as_ref().expect("header").number;
        for t in block_tx_ids(b) {
            found.insert(t, n);
        }
    }
    for (id, n) in &block_of {
        assert_eq!(
            found.get(id),
            Some(n),
            "acknowledged tx {id} not in block {n} after kill -9"
        );
    }

    // enqueued with a long batch timeout: acks arrive before any block is cut; a graceful
    // stop must still write them.
    let envs: Vec<_> = (0..200)
        .map(|i| message(&client, "fast", 64, 10_000 + i))
        .collect();
    let ids: Vec<String> = envs.iter().map(|(_, t)| t.clone()).collect();
    let resps = broadcast(&o.addr, envs.into_iter().map(|(e, _)| e).collect()).await;
    assert!(resps
        .iter()
        .all(|r| r.status == Code::Success as i32 && r.block_number.is_none()));
    o.stop();
    o.restart(&admin).await;
    let d = deliver(
        &o.addr,
        &client,
        "fast",
        oldest(),
        Some(position(None)),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    let txs: Vec<String> = d.blocks.iter().skip(1).flat_map(block_tx_ids).collect();
    assert_eq!(
        txs, ids,
        "graceful stop drained every enqueued envelope, in order"
    );
    o.stop();
}
