//! Replay protection of the orderer over real gRPC: `ordo_orderer::run` in-process on
//! 127.0.0.1 listeners, with its ledgers in a temporary directory.
//!
//! - A join or remove executes at most once: a byte-for-byte copy is refused with
//!   CONFLICT, also when two copies race, and after a restart (FORBIDDEN: stamped before
//!   the node started).
//! - Every signed request, read or admin, must be stamped within the freshness window of
//!   the node's clock: 0 and `u64::MAX` are FORBIDDEN, like any authorization failure.
//! - A read replayed inside the window is answered again (reads are not remembered).
//!
//! Requests are built with the real clock (`ordo_proto::now_ms`) unless a test is about
//! the timestamp. Every wait is bounded by a timeout; nothing sleeps to synchronise.

mod common;

use bytes::Bytes;
use prost::Message;

use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::{admin_command, AdminResponse, GetChannelInfo};
use ordo_proto::pb::common::{Envelope, HeaderType};
use ordo_proto::pb::orderer::{seek_position, SeekBehavior, SeekInfo, SeekPosition};
use ordo_proto::replay::DEFAULT_FRESHNESS_WINDOW_MS;
use ordo_testkit::answer::Answer;
use tonic::Code;

use common::{admin_request, admin_request_at, join, list, start, Org};

const CHANNEL: &str = "replay";

fn remove() -> admin_command::Command {
    ordo_testkit::admin::remove(CHANNEL)
}

fn specified(n: u64) -> Option<SeekPosition> {
    Some(SeekPosition {
        r#type: Some(seek_position::Type::Specified(n)),
    })
}

/// A signed Deliver request for block 0 of the channel, stamped `timestamp_ms`.
fn seek_block_0(reader: &Identity, timestamp_ms: u64) -> Envelope {
    let seek = SeekInfo {
        start: specified(0),
        stop: specified(0),
        behavior: SeekBehavior::FailIfNotReady as i32,
    };
    envelope::create_signed(
        reader,
        CHANNEL,
        HeaderType::DeliverSeekInfo,
        Bytes::from(seek.encode_to_vec()),
        timestamp_ms,
    )
    .0
}

fn assert_status(r: &Answer<AdminResponse>, code: Code, what: &str) {
    r.assert_code(code, what);
}

/// Timestamps no node may accept: the epoch, the far future, and one second outside the
/// window either way.
fn stale_timestamps() -> [u64; 4] {
    let now = ordo_proto::now_ms();
    [
        0,
        u64::MAX,
        now - DEFAULT_FRESHNESS_WINDOW_MS - 1_000,
        now + DEFAULT_FRESHNESS_WINDOW_MS + 1_000,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_admin_request_is_refused_and_executed_once() {
    let org = Org::new(CHANNEL);
    let node = start(&org).await;

    let first_join = admin_request(&org.admin, join(&org.genesis));
    assert_status(&node.admin(&first_join).await, Code::Ok, "join");
    let r = node.admin(&first_join).await;
    assert_status(&r, Code::AlreadyExists, "the same join again");
    assert!(r.info.contains("already executed"), "{}", r.info);

    // The attack the memory exists for: a captured remove, replayed after the channel
    // was joined again, would delete the new ledger.
    let captured_remove = admin_request(&org.admin, remove());
    assert_status(&node.admin(&captured_remove).await, Code::Ok, "remove");
    assert!(node.channels(&org.admin).await.is_empty());
    let rejoin = admin_request(&org.admin, join(&org.genesis));
    assert_status(&node.admin(&rejoin).await, Code::Ok, "rejoin");
    let r = node.admin(&captured_remove).await;
    assert_status(&r, Code::AlreadyExists, "the captured remove replayed");
    assert!(r.info.contains("already executed"), "{}", r.info);
    assert_eq!(node.channels(&org.admin).await, vec![CHANNEL.to_string()]);
    let (blocks, code, info) = node
        .deliver(&seek_block_0(&org.client, ordo_proto::now_ms()))
        .await;
    assert_eq!((blocks.len(), code), (1, Code::Ok), "{info}");

    // Reads are not remembered: the same list and info requests are answered twice.
    let list_request = admin_request(&org.admin, list());
    let info_request = admin_request(
        &org.client,
        admin_command::Command::Info(GetChannelInfo {
            channel_id: CHANNEL.into(),
        }),
    );
    for _ in 0..2 {
        assert_status(&node.admin(&list_request).await, Code::Ok, "list");
        assert_status(&node.admin(&info_request).await, Code::Ok, "info");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_copies_of_a_remove_exactly_one_executes() {
    let org = Org::new(CHANNEL);
    let node = start(&org).await;
    let r = node
        .admin(&admin_request(&org.admin, join(&org.genesis)))
        .await;
    assert_status(&r, Code::Ok, "join");

    let remove = admin_request(&org.admin, remove());
    let (a, b) = tokio::join!(node.admin(&remove), node.admin(&remove));
    let mut codes = [a.code, b.code];
    codes.sort_unstable_by_key(|c| *c as i32);
    assert_eq!(
        codes,
        [Code::Ok, Code::AlreadyExists],
        "{} / {}",
        a.info,
        b.info
    );
    let refused = if a.code == Code::AlreadyExists { a } else { b };
    assert!(
        refused.info.contains("already executed"),
        "{}",
        refused.info
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_request_replayed_after_a_restart_is_refused() {
    let org = Org::new(CHANNEL);
    let node = start(&org).await;
    let r = node
        .admin(&admin_request(&org.admin, join(&org.genesis)))
        .await;
    assert_status(&r, Code::Ok, "join");
    let captured_remove = admin_request(&org.admin, remove());
    assert_status(&node.admin(&captured_remove).await, Code::Ok, "remove");
    let r = node
        .admin(&admin_request(&org.admin, join(&org.genesis)))
        .await;
    assert_status(&r, Code::Ok, "rejoin");
    node.stop().await;

    // The restarted node remembers nothing, so it refuses what was signed before it
    // started: still inside the window, but possibly executed by the previous run.
    let node = start(&org).await;
    let r = node.admin(&captured_remove).await;
    assert_status(
        &r,
        Code::PermissionDenied,
        "the captured remove after a restart",
    );
    assert!(r.info.contains("before this node started"), "{}", r.info);
    assert_eq!(node.channels(&org.admin).await, vec![CHANNEL.to_string()]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_stamped_outside_the_window_are_forbidden() {
    let org = Org::new(CHANNEL);
    let node = start(&org).await;
    for t in stale_timestamps() {
        let r = node
            .admin(&admin_request_at(&org.admin, join(&org.genesis), t))
            .await;
        assert_status(&r, Code::PermissionDenied, &format!("join stamped {t}"));
        assert!(r.info.contains("this node's clock"), "{}", r.info);
    }
    assert!(node.channels(&org.admin).await.is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_requests_stamped_outside_the_window_are_forbidden() {
    let org = Org::new(CHANNEL);
    let node = start(&org).await;
    let r = node
        .admin(&admin_request(&org.admin, join(&org.genesis)))
        .await;
    assert_status(&r, Code::Ok, "join");

    for t in stale_timestamps() {
        let (blocks, code, info) = node.deliver(&seek_block_0(&org.client, t)).await;
        assert!(blocks.is_empty(), "stamped {t}: blocks were sent");
        assert_eq!(code, Code::PermissionDenied, "stamped {t}: {info}");
        assert!(info.contains("this node's clock"), "{info}");
    }

    // A fresh request streams, and so does its copy: reads are not remembered.
    let fresh = seek_block_0(&org.client, ordo_proto::now_ms());
    for _ in 0..2 {
        let (blocks, code, info) = node.deliver(&fresh).await;
        assert_eq!(code, Code::Ok, "{info}");
        assert_eq!(blocks.len(), 1);
    }
    node.stop().await;
}
