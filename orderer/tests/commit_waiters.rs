//! Broadcast's timers at the orderer's edge, on a paused clock: a `committed` ack waits for
//! its block in a bounded registry with a deadline, the batch timer cuts a partial block,
//! and each answers at the virtual instant its rule names, without losing what was taken.
//!
//! - When the registry is full, the next envelope is refused at once with
//!   SERVICE_UNAVAILABLE ("retry later"), and is not ordered: nothing half-applied.
//! - A waiter whose block is not written within `commit_wait_s` is answered
//!   SERVICE_UNAVAILABLE in a quiet channel between its deadline and one sweep interval (a
//!   second) later, and its envelope, which the chain took, is still ordered.
//! - A timed-out waiter leaves the registry: a later envelope finds room and learns its
//!   block.
//! - A partial batch is cut when its batch timeout has passed since its first envelope, not
//!   before; a full one at once.
//!
//! The node is `ordo_orderer::run` in this process, serving gRPC over in-process pipes, on
//! tokio's current-thread runtime with its clock paused. The clock moves only when every
//! task waits for a timer (the node's block writes run on the blocking pool, which holds
//! it), so half a minute of commit wait takes no real time and every instant asserted here is
//! exact. Over real sockets the clock would also jump while bytes were in the kernel.

mod common;

use std::time::Duration;

use tokio::time::Instant;
use tokio_stream::StreamExt;

use ordo_proto::pb::common::{AckMode, Envelope, Status as Code};
use ordo_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo_proto::pb::orderer::{BroadcastResponse, SeekBehavior};
use ordo_sdk::orderer::{position, seek_request};
use ordo_testkit::{blocks, envelopes};

use common::{admin_request, join, start_in_process, Node, Org};

const CHANNEL: &str = "waiters";
/// `[limits] commit_wait_s` of these tests: half the longest batch timeout a channel may
/// have, so that the timer never cuts the block a waiter waits for first.
const COMMIT_WAIT: Duration = Duration::from_secs(30);
/// How late the node's sweep answers an expired waiter at most (a tenth of the commit
/// wait, at most a second).
const SWEEP: Duration = Duration::from_secs(1);
/// Bound on one wait of these tests, in virtual time: longer than any timer they meet.
const BOUND: Duration = Duration::from_secs(600);

/// Opens a Broadcast stream carrying `envs`; its responses.
async fn open_broadcast(node: &Node, envs: Vec<Envelope>) -> tonic::Streaming<BroadcastResponse> {
    let mut client = AtomicBroadcastClient::new(node.channel().await);
    tokio::time::timeout(BOUND, client.broadcast(tokio_stream::iter(envs)))
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
        let r = tokio::time::timeout(BOUND, stream.next())
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

/// Lets the node do everything it can before the clock moves: under a paused clock a
/// virtual millisecond passes only once every task of the runtime waits.
async fn until_idle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Whether a timer of `timeout` fired on time: not before, and within the millisecond
/// the timer wheel rounds to.
fn on_time(elapsed: Duration, timeout: Duration) -> bool {
    elapsed >= timeout && elapsed <= timeout + Duration::from_millis(1)
}

/// Starts a node on pipes for `org` and joins it to the org's channel.
async fn joined(org: &Org) -> Node {
    let node = start_in_process(org).await;
    node.admin(&admin_request(&org.admin, join(&org.genesis)))
        .await
        .expect_ok("join");
    node
}

#[tokio::test(start_paused = true)]
async fn a_full_registry_refuses_and_a_quiet_wait_times_out_on_time_without_losing_the_envelope() {
    // Committed acks, a block at three envelopes (its batch timeout, a minute, never comes
    // here), at most two commit waiters, waiting 30 s.
    let mut org = Org::with_channel(CHANNEL, |b| {
        b.ack(AckMode::Committed).max_count(3).timeout_ms(60_000)
    });
    org.extra_toml = format!(
        "[limits]\ncommit_waiters = 2\ncommit_wait_s = {}\n",
        COMMIT_WAIT.as_secs()
    );
    let node = joined(&org).await;

    // Two envelopes fill the registry (their block needs a third).
    let (envs, ids): (Vec<_>, Vec<_>) = (0..2)
        .map(|t| envelopes::message(&org.client, CHANNEL, 64, t))
        .unzip();
    let started = Instant::now();
    let mut waiting = open_broadcast(&node, envs).await;
    until_idle().await;

    // The next is refused at once: "retry later", not taken.
    let (refused_env, refused) = envelopes::message(&org.client, CHANNEL, 64, 2);
    let asked = Instant::now();
    let mut other = open_broadcast(&node, vec![refused_env]).await;
    let no_room = answers(&mut other, 1).await;
    assert_eq!(asked.elapsed(), Duration::ZERO, "refused without waiting");
    assert_eq!(status(&no_room[0]), Code::ServiceUnavailable, "{no_room:?}");
    assert!(
        no_room[0].info.contains("already wait for their blocks"),
        "names the full registry: {}",
        no_room[0].info
    );
    assert_eq!(no_room[0].tx_id, refused);

    // The two waited the whole commit wait in a quiet channel, then timed out: not before
    // their deadline, and by the next sweep after it.
    let timed_out = answers(&mut waiting, 2).await;
    let waited = started.elapsed();
    assert!(
        waited >= COMMIT_WAIT && waited <= COMMIT_WAIT + SWEEP,
        "answered {waited:?} after the envelopes came, the commit wait being {COMMIT_WAIT:?}"
    );
    for (a, id) in timed_out.iter().zip(&ids) {
        assert_eq!(status(a), Code::ServiceUnavailable, "{a:?}");
        assert!(
            a.info
                .contains(&format!("within {}s", COMMIT_WAIT.as_secs())),
            "{}",
            a.info
        );
        assert_eq!((&a.tx_id, a.block_number), (id, None));
    }

    // Room again: this one completes block 1 and learns it, at once.
    let (env, later) = envelopes::message(&org.client, CHANNEL, 64, 3);
    let asked = Instant::now();
    let mut third = open_broadcast(&node, vec![env]).await;
    let again = answers(&mut third, 1).await;
    assert_eq!(status(&again[0]), Code::Success, "{again:?}");
    assert_eq!(again[0].block_number, Some(1), "{again:?}");
    assert_eq!(
        asked.elapsed(),
        Duration::ZERO,
        "a full batch is cut at once"
    );

    // Block 1 holds the timed-out envelopes and the later one, not the refused one.
    let seek = seek_request(
        &org.client,
        CHANNEL,
        position(Some(1)),
        Some(position(Some(1))),
        SeekBehavior::FailIfNotReady,
    );
    let (blocks, code, info) = node.deliver(&seek).await;
    assert_eq!(code, tonic::Code::Ok, "deliver: {info}");
    let ordered = blocks::tx_ids(&blocks[0]);
    assert_eq!(ordered, vec![ids[0].clone(), ids[1].clone(), later]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_is_cut_at_its_batch_timeout_and_not_before() {
    const BATCH_TIMEOUT: Duration = Duration::from_secs(2);
    let org = Org::with_channel(CHANNEL, |b| {
        b.ack(AckMode::Committed)
            .max_count(10)
            .timeout_ms(BATCH_TIMEOUT.as_millis() as u64)
    });
    let node = joined(&org).await;

    // One envelope: its block is cut by the timer, exactly the batch timeout after it came.
    let (env, id) = envelopes::message(&org.client, CHANNEL, 64, 0);
    let started = Instant::now();
    let mut stream = open_broadcast(&node, vec![env]).await;
    let first = answers(&mut stream, 1).await;
    assert_eq!(status(&first[0]), Code::Success, "{first:?}");
    assert_eq!((&first[0].tx_id, first[0].block_number), (&id, Some(1)));
    assert!(
        on_time(started.elapsed(), BATCH_TIMEOUT),
        "cut {:?} after the envelope came, the batch timeout being {BATCH_TIMEOUT:?}",
        started.elapsed()
    );

    // Ten envelopes fill a batch: cut at once, no timer involved.
    let (envs, ids): (Vec<_>, Vec<_>) = (1..=10)
        .map(|t| envelopes::message(&org.client, CHANNEL, 64, t))
        .unzip();
    let started = Instant::now();
    let mut stream = open_broadcast(&node, envs).await;
    let full = answers(&mut stream, 10).await;
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "a full batch does not wait"
    );
    for (a, id) in full.iter().zip(&ids) {
        assert_eq!(
            (status(a), &a.tx_id, a.block_number),
            (Code::Success, id, Some(2))
        );
    }

    // Three more, then nothing for a while: still pending just before the timeout, cut at
    // it.
    let (envs, ids): (Vec<_>, Vec<_>) = (11..14)
        .map(|t| envelopes::message(&org.client, CHANNEL, 64, t))
        .unzip();
    let started = Instant::now();
    let mut stream = open_broadcast(&node, envs).await;
    tokio::time::sleep(BATCH_TIMEOUT - Duration::from_millis(1)).await;
    let pending = tokio::time::timeout(Duration::ZERO, stream.next()).await;
    assert!(
        pending.is_err(),
        "answered before the batch timeout: {pending:?}"
    );
    let last = answers(&mut stream, 3).await;
    assert!(
        on_time(started.elapsed(), BATCH_TIMEOUT),
        "cut after {:?}",
        started.elapsed()
    );
    for (a, id) in last.iter().zip(&ids) {
        assert_eq!(
            (status(a), &a.tx_id, a.block_number),
            (Code::Success, id, Some(3))
        );
    }
    node.stop().await;
}
