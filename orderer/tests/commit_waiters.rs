//! Broadcast's commit waiters at the orderer's edge: a `committed` ack waits for its block
//! in a bounded registry with a deadline, and both bounds answer precisely without losing
//! what was taken.
//!
//! - When the registry is full, the next envelope is refused at once with
//!   SERVICE_UNAVAILABLE ("retry later"), and is not ordered: nothing half-applied.
//! - A waiter whose block is not written within `commit_wait_s` is answered
//!   SERVICE_UNAVAILABLE ("no block held the envelope within 3s") in a quiet channel (no
//!   later traffic needed to notice), and its envelope, which the chain took, is still
//!   ordered.
//! - A timed-out waiter leaves the registry: a later envelope finds room and learns its
//!   block.
//!
//! The node is `ordo_orderer::run` in this process on real sockets. The test waits on what
//! the node reports (its `commit_waiters` gauge, its answers), never on a sleep. It runs
//! on the real clock: a paused tokio clock jumps to the next timer whenever the runtime
//! waits for a socket, and here jumped to the batch timeout before the test could send
//! its next envelope.

mod common;

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;

use ordo_proto::pb::common::{AckMode, Envelope, Status as Code};
use ordo_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo_proto::pb::orderer::{BroadcastResponse, SeekBehavior};
use ordo_sdk::orderer::{position, seek_request};
use ordo_testkit::{blocks, envelopes};

use common::{admin_request, join, start, Node, Org, WAIT};

const CHANNEL: &str = "waiters";
/// `[limits] commit_wait_s`: long enough that the test's next request (milliseconds away)
/// comes well within it.
const COMMIT_WAIT_S: u64 = 3;

/// An org whose channel acks `committed` and cuts a block at three envelopes (its batch
/// timeout, a minute, never comes in this test), and whose node holds at most two commit
/// waiters for 3 s.
fn org() -> Org {
    let mut org = Org::with_channel(CHANNEL, |b| {
        b.ack(AckMode::Committed).max_count(3).timeout_ms(60_000)
    });
    org.extra_toml = format!("[limits]\ncommit_waiters = 2\ncommit_wait_s = {COMMIT_WAIT_S}\n");
    org
}

/// Opens a Broadcast stream carrying `envs`; its responses.
async fn open_broadcast(node: &Node, envs: Vec<Envelope>) -> tonic::Streaming<BroadcastResponse> {
    let mut client = AtomicBroadcastClient::new(node.channel().await);
    tokio::time::timeout(WAIT, client.broadcast(tokio_stream::iter(envs)))
        .await
        .expect("broadcast opens in time")
        .expect("broadcast opens")
        .into_inner()
}

/// The next `n` responses of a Broadcast stream.
async fn answers(
    stream: &mut tonic::Streaming<BroadcastResponse>,
    n: usize,
) -> Vec<BroadcastResponse> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("broadcast answers in time")
            .expect("an answer for every envelope")
            .expect("broadcast response");
        out.push(r);
    }
    out
}

fn status(r: &BroadcastResponse) -> Code {
    Code::try_from(r.status).unwrap_or(Code::Unknown)
}

/// Waits until the node reports `n` commit waiters on the channel.
async fn until_waiters(node: &Node, n: f64) {
    let series = format!("ordo_orderer_commit_waiters{{channel=\"{CHANNEL}\"}}");
    let deadline = Instant::now() + WAIT;
    while node.metric(&series).await != Some(n) {
        assert!(Instant::now() < deadline, "never {n} commit waiters");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_registry_refuses_and_a_quiet_wait_times_out_without_losing_the_envelope() {
    let org = org();
    let node = start(&org).await;
    let r = node
        .admin(&admin_request(&org.admin, join(&org.genesis)))
        .await;
    assert_eq!(r.status, Code::Success as i32, "join: {}", r.info);

    // Two envelopes fill the registry (their block needs a third).
    let (envs, ids): (Vec<_>, Vec<_>) = (0..2)
        .map(|t| envelopes::message(&org.client, CHANNEL, 64, t))
        .unzip();
    let started = Instant::now();
    let mut waiting = open_broadcast(&node, envs).await;
    until_waiters(&node, 2.0).await;

    // The next is refused at once: "retry later", not taken.
    let (refused_env, refused) = envelopes::message(&org.client, CHANNEL, 64, 2);
    let mut other = open_broadcast(&node, vec![refused_env]).await;
    let no_room = answers(&mut other, 1).await;
    assert_eq!(status(&no_room[0]), Code::ServiceUnavailable, "{no_room:?}");
    assert!(
        no_room[0].info.contains("already wait for their blocks"),
        "names the full registry: {}",
        no_room[0].info
    );
    assert_eq!(no_room[0].tx_id, refused);

    // The two waited the whole commit wait in a quiet channel, then timed out.
    let timed_out = answers(&mut waiting, 2).await;
    assert!(
        started.elapsed() >= Duration::from_secs(COMMIT_WAIT_S),
        "answered after the commit wait, not before"
    );
    for (a, id) in timed_out.iter().zip(&ids) {
        assert_eq!(status(a), Code::ServiceUnavailable, "{a:?}");
        assert!(
            a.info.contains(&format!("within {COMMIT_WAIT_S}s")),
            "{}",
            a.info
        );
        assert_eq!((&a.tx_id, a.block_number), (id, None));
    }
    until_waiters(&node, 0.0).await;

    // Room again: this one completes block 1 and learns it.
    let (env, later) = envelopes::message(&org.client, CHANNEL, 64, 3);
    let mut third = open_broadcast(&node, vec![env]).await;
    let again = answers(&mut third, 1).await;
    assert_eq!(status(&again[0]), Code::Success, "{again:?}");
    assert_eq!(again[0].block_number, Some(1), "{again:?}");

    // Block 1 holds the timed-out envelopes and the later one, not the refused one.
    let seek = seek_request(
        &org.client,
        CHANNEL,
        position(Some(1)),
        Some(position(Some(1))),
        SeekBehavior::FailIfNotReady,
    );
    let (blocks, code, info) = node.deliver(&seek).await;
    assert_eq!(code, Code::Success as i32, "deliver: {info}");
    let ordered = blocks::tx_ids(&blocks[0]);
    assert_eq!(ordered, vec![ids[0].clone(), ids[1].clone(), later]);
    node.stop().await;
}
