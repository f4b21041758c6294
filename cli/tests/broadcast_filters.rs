//! Every Broadcast filter and Deliver refusal answers with its exact status, and the
//! orderer keeps serving other clients (and the same stream) afterwards.

mod common;

use bytes::Bytes;
use common::*;
use ordo_proto::config;
use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::common::{ChannelConfig, Envelope, Role, Status as Code};
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_proto::policy::build as policy;
use ordo_sdk::orderer::{oldest, position};
use prost::Message;

fn expired_identity(c: &Consortium, org: &str) -> Identity {
    let ca = c.ca_key(org);
    let key = ordo_proto::crypto::generate_signing_key();
    let now = ordo_proto::now_ms() / 1000;
    let enrollment = Enrollment::new(org, Role::Client, "expired")
        .serial(99)
        .valid(now - 7200, now - 60);
    Identity::enroll(&ca, key, &enrollment)
}

/// A genesis block like `ordo channel genesis` writes, but with Readers = BankA only.
fn readers_only_bank_a(c: &Consortium, channel: &str) -> std::path::PathBuf {
    let path = c.genesis(channel, &[]);
    let block =
        ordo_proto::pb::common::Block::decode(std::fs::read(&path).expect("read").as_slice())
            .expect("block");
    let mut cfg: ChannelConfig = config::config_from_block(&block).expect("config");
    cfg.readers = Some(policy::any_member(&["BankA"], &[]));
    let g = config::genesis_block(&cfg, 0).expect("genesis");
    std::fs::write(&path, g.encode_to_vec()).expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_filter_has_its_status_and_nothing_else_is_disturbed() {
    let c = Consortium::new("BankA,BankB");
    let other = Consortium::new("BankZ");
    let admin = c.identity("BankA", "admin");
    let client = c.identity("BankA", "client");
    let genesis = c.genesis(
        "filters",
        &[
            "--absolute-max-bytes",
            "65536",
            "--preferred-max-bytes",
            "32768",
            "--batch-timeout-ms",
            "20",
        ],
    );
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin).await;
    join(&o.addr, &admin, &genesis).await;

    let ok = |tag| message(&client, "filters", 100, tag).0;
    let oversize = message(&client, "filters", 70_000, 1).0;
    let garbage = Envelope {
        payload: Bytes::from_static(b"\xff\xff\xff not a payload"),
        signature: Bytes::from(vec![0u8; 64]),
    };
    let unknown_channel = message(&client, "nochannel", 100, 2).0;
    let mut bad_sig = message(&client, "filters", 100, 3).0;
    let mut sig = bad_sig.signature.to_vec();
    sig[0] ^= 0x40;
    bad_sig.signature = sig.into();
    let unknown_org = message(&other.identity("BankZ", "client"), "filters", 100, 4).0;
    let expired = message(&expired_identity(&c, "BankA"), "filters", 100, 5).0;
    let not_a_writer = message(&c.identity("BankA", "orderer"), "filters", 100, 6).0;
    let dup = ok(7);
    let backdated = ordo_proto::envelope::create_signed(
        &client,
        "filters",
        ordo_proto::pb::common::HeaderType::Message,
        Bytes::from_static(b"from an hour ago"),
        ordo_proto::now_ms() - 3_600_000,
    )
    .0;

    // A second client keeps broadcasting concurrently and must see only successes.
    let bystander = c.identity("BankB", "client");
    let addr = o.addr.clone();
    let side = tokio::spawn(async move {
        let envs: Vec<_> = (0..300)
            .map(|i| message(&bystander, "filters", 100, 10_000 + i).0)
            .collect();
        broadcast(&addr, envs).await
    });

    let cases: Vec<(Envelope, Code, &str)> = vec![
        (ok(100), Code::Success, ""),
        (oversize, Code::RequestEntityTooLarge, "exceeds"),
        (ok(101), Code::Success, ""),
        (garbage, Code::BadRequest, "malformed"),
        (unknown_channel, Code::NotFound, "nochannel"),
        (bad_sig, Code::Forbidden, "signature"),
        (unknown_org, Code::Forbidden, "unknown org"),
        (expired, Code::Forbidden, "expired"),
        (not_a_writer, Code::Forbidden, "Writers"),
        (backdated, Code::BadRequest, "timestamp"),
        (dup.clone(), Code::Success, ""),
        (dup.clone(), Code::Conflict, "duplicate"),
        (ok(102), Code::Success, ""),
    ];
    let (envs, expect): (Vec<_>, Vec<_>) = cases.into_iter().map(|(e, c, s)| (e, (c, s))).unzip();
    let responses = broadcast(&o.addr, envs).await;
    for (i, (resp, (code, needle))) in responses.iter().zip(&expect).enumerate() {
        assert_eq!(
            resp.status, *code as i32,
            "case {i}: expected {code:?}, got {} ({})",
            resp.status, resp.info
        );
        assert!(
            resp.info.contains(needle),
            "case {i}: info {:?} should mention {needle:?}",
            resp.info
        );
    }
    let side = side.await.expect("bystander task");
    assert!(
        side.iter().all(|r| r.status == Code::Success as i32),
        "the other client was disturbed"
    );

    // Bytes that are no Envelope at all, mid-stream: the envelopes before them are
    // answered, then the stream ends with INVALID_ARGUMENT (not a silent OK), and nothing
    // after them is taken.
    let frames = vec![
        ok(200).encode_to_vec(),
        b"\xff\xff\xff\xff not protobuf".to_vec(),
        ok(201).encode_to_vec(),
    ];
    let (answers, ending) = raw_broadcast(&o.addr, frames).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(
        answers[0].status,
        Code::Success as i32,
        "{}",
        answers[0].info
    );
    let ending = ending.expect("the stream ends with an error");
    assert_eq!(ending.code(), tonic::Code::InvalidArgument, "{ending}");
    assert!(
        ending.message().contains("nothing after it was read"),
        "{ending}"
    );
    // A unary request that is no message at all: INVALID_ARGUMENT (tonic's INTERNAL
    // would blame the orderer for the client's bytes).
    let status = raw_unary(
        &o.addr,
        "/ordo.admin.Admin/Execute",
        b"\xff\xff\xff\xff".to_vec(),
    )
    .await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(status.message().contains("decode"), "{status}");

    // After a restart the recent-id window is empty: the ledger's tx index still knows.
    o.stop();
    o.restart(&admin).await;
    let again = broadcast(&o.addr, vec![dup]).await;
    assert_eq!(again[0].status, Code::Conflict as i32, "{}", again[0].info);

    // Deliver refusals.
    let non_reader_chan = readers_only_bank_a(&c, "readers");
    join(&o.addr, &admin, &non_reader_chan).await;
    let b_client = c.identity("BankB", "client");
    let d = deliver(
        &o.addr,
        &b_client,
        "readers",
        oldest(),
        None,
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::PermissionDenied, "{}", d.info);
    assert!(d.info.contains("Readers"), "{}", d.info);
    assert!(d.blocks.is_empty());
    let d = deliver(
        &o.addr,
        &client,
        "readers",
        oldest(),
        Some(oldest()),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::Ok, "BankA still reads: {}", d.info);
    assert_eq!(d.blocks.len(), 1);

    let d = deliver(
        &o.addr,
        &client,
        "filters",
        position(Some(5)),
        Some(position(Some(2))),
        SeekBehavior::BlockUntilReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::InvalidArgument, "{}", d.info);
    assert!(d.info.contains("before start"), "{}", d.info);

    let d = deliver(
        &o.addr,
        &client,
        "filters",
        position(Some(1_000)),
        None,
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::NotFound, "{}", d.info);

    let d = deliver(
        &o.addr,
        &client,
        "nochannel",
        oldest(),
        None,
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::NotFound, "{}", d.info);

    let d = deliver(
        &o.addr,
        &other.identity("BankZ", "client"),
        "filters",
        oldest(),
        None,
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::PermissionDenied, "{}", d.info);

    let mut forged = ordo_sdk::orderer::seek_request(
        &client,
        "filters",
        oldest(),
        None,
        SeekBehavior::FailIfNotReady,
    );
    let mut sig = forged.signature.to_vec();
    sig[1] ^= 1;
    forged.signature = sig.into();
    let d = deliver_raw(&o.addr, forged).await;
    assert_eq!(d.code, tonic::Code::PermissionDenied, "{}", d.info);

    // One reader holds at most MAX_DELIVER_STREAMS_PER_READER streams; the next is
    // TOO_MANY_REQUESTS, and other readers are not affected.
    let waiting = |who: &Identity| {
        ordo_sdk::orderer::seek_request(
            who,
            "filters",
            position(Some(1_000_000)),
            None,
            SeekBehavior::BlockUntilReady,
        )
    };
    let mut held = Vec::new();
    for _ in 0..ordo_orderer::deliver::MAX_DELIVER_STREAMS_PER_READER {
        let mut client =
            ordo_sdk::orderer::broadcast_client(connect(&o.addr).await.expect("connect"));
        held.push(
            client
                .deliver(waiting(&b_client))
                .await
                .expect("deliver opens")
                .into_inner(),
        );
    }
    let refused = deliver_raw(&o.addr, waiting(&b_client)).await;
    assert_eq!(
        refused.code,
        tonic::Code::ResourceExhausted,
        "{}",
        refused.info
    );
    assert!(refused.info.contains("close one first"), "{}", refused.info);
    drop(held);

    // After all that, normal service: the whole channel reads back and verifies.
    let d = deliver(
        &o.addr,
        &client,
        "filters",
        oldest(),
        Some(position(None)),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::Ok, "{}", d.info);
    let txs: usize = d.blocks.iter().skip(1).map(|b| block_tx_ids(b).len()).sum();
    assert_eq!(
        txs,
        300 + 5,
        "the bystander's 300 and the 5 accepted envelopes"
    );
    o.stop();
}
