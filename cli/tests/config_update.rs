//! Channel configuration changes through Broadcast: a CONFIG_UPDATE needs the Admins
//! policy, lands alone in its block, is in force from the next block, survives a restart
//! and keeps `ordo block verify` happy.

mod common;

use bytes::Bytes;
use common::*;
use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{
    Block, ChannelConfig, ConfigSignature, ConfigUpdate, HeaderType, Status as Code,
};
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_sdk::orderer::{oldest, position};
use prost::Message;

fn update(
    config: &ChannelConfig,
    signers: &[&Identity],
    submitter: &Identity,
) -> ordo_proto::pb::common::Envelope {
    let bytes = config.encode_to_vec();
    let signatures = signers
        .iter()
        .map(|s| ConfigSignature {
            signer: s.cert_bytes().clone(),
            signature: Bytes::from(s.sign(&bytes).to_vec()),
        })
        .collect();
    let u = ConfigUpdate {
        config: bytes.into(),
        signatures,
    };
    envelope::create_signed(
        submitter,
        &config.channel_id,
        HeaderType::ConfigUpdate,
        u.encode_to_vec().into(),
        ordo_proto::now_ms(),
    )
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_update_needs_admins_and_takes_effect() {
    let c = Consortium::new("BankA,BankB,BankC");
    let admin_a = c.identity("BankA", "admin");
    let admin_b = c.identity("BankB", "admin");
    let client = c.identity("BankC", "client");
    let genesis_path = c.genesis(
        "cfg",
        &["--max-message-count", "100", "--batch-timeout-ms", "20"],
    );
    let genesis =
        Block::decode(std::fs::read(&genesis_path).expect("read").as_slice()).expect("block");
    let current = config::config_from_block(&genesis).expect("config");
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin_a).await;
    join(&o.addr, &admin_a, &genesis_path).await;

    let mut next = current.clone();
    next.sequence = 1;
    if let Some(bs) = next.orderer.as_mut().and_then(|o| o.batch_size.as_mut()) {
        bs.max_message_count = 2;
    }
    let mut wrong_seq = next.clone();
    wrong_seq.sequence = 5;
    let mut bad = next.clone();
    if let Some(bs) = bad.orderer.as_mut().and_then(|o| o.batch_size.as_mut()) {
        bs.preferred_max_bytes = bs.absolute_max_bytes + 1;
    }
    let responses = broadcast(
        &o.addr,
        vec![
            update(&next, &[&admin_a], &admin_a), // 1 of 3 orgs: no majority
            update(&next, &[&admin_a, &c.identity("BankB", "client")], &admin_a), // a client is no admin
            update(&wrong_seq, &[&admin_a, &admin_b], &admin_a),
            update(&bad, &[&admin_a, &admin_b], &admin_a),
            update(&next, &[&admin_a, &admin_b], &admin_a), // accepted
        ],
    )
    .await;
    let codes: Vec<i32> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        codes,
        vec![
            Code::Forbidden as i32,
            Code::Forbidden as i32,
            Code::BadRequest as i32,
            Code::BadRequest as i32,
            Code::Success as i32
        ],
        "{responses:?}"
    );
    assert!(
        responses[0].info.contains("Admins"),
        "{}",
        responses[0].info
    );

    let resps = broadcast(
        &o.addr,
        (0..7).map(|i| message(&client, "cfg", 32, i).0).collect(),
    )
    .await;
    assert!(resps.iter().all(|r| r.status == Code::Success as i32));
    // Genesis, the config block, then 7 envelopes in blocks of at most 2.
    let d = deliver(
        &o.addr,
        &client,
        "cfg",
        oldest(),
        Some(position(Some(5))),
        SeekBehavior::BlockUntilReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::Ok, "{}", d.info);
    let cfg_block = &d.blocks[1];
    assert_eq!(
        config::config_from_block(cfg_block)
            .expect("config block")
            .sequence,
        1
    );
    for b in &d.blocks[2..] {
        assert!(block_tx_ids(b).len() <= 2, "the new batch size is in force");
        assert_eq!(b.metadata.as_ref().map(|m| m.last_config), Some(1));
    }

    o.stop();
    o.restart(&admin_a).await;
    let crypto = c.crypto();
    let out = run_ok(&[
        "block",
        "verify",
        "--orderer",
        &o.addr,
        "--channel",
        "cfg",
        "--key",
        crypto.join("BankC/client.key").to_str().expect("utf8"),
        "--cert",
        crypto.join("BankC/client.cert").to_str().expect("utf8"),
    ]);
    assert!(out.starts_with("OK"), "{out}");
    // The same update again is stale now.
    let again = broadcast(
        &o.addr,
        vec![update(&next, &[&admin_a, &admin_b], &admin_b)],
    )
    .await;
    assert_eq!(
        again[0].status,
        Code::BadRequest as i32,
        "{}",
        again[0].info
    );
    o.stop();
}
