//! A thousand readers that never read, over real processes: 1,008 Deliver streams on an
//! orderer and 1,008 BlockEvents streams on a peer (16 identities × 63 streams, each
//! identity on one connection), over a chain of 1 MiB blocks, held for a minute. Each
//! node's resident memory must stay under 1 GiB the whole time (sampled every second from
//! `/proc`), and afterwards both nodes still serve a reader that does read.
//!
//! Without the byte budgets every such stream would queue blocks until the chain ran out
//! (24 MiB each here); with per-stream budgets only, 1,008 × 8 MiB would still be 8 GiB.
//! What keeps the total bounded is the node-wide budget shared by all streams of a service
//! (`ordo_node::stream_budget`).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use prost::Message;
use tokio_stream::StreamExt;

use common::*;
use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::common::{HeaderType, Role, Status as Code};
use ordo_proto::pb::gateway::events_client::EventsClient;
use ordo_proto::pb::gateway::{block_events_response, BlockEventsRequest};
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_sdk::orderer::{oldest, position};

const CHANNEL: &str = "memory";
/// Blocks of one envelope of about 1 MiB each.
const BLOCKS: u64 = 24;
const ENVELOPE_BYTES: usize = 1024 * 1024 - 4096;
const READERS: u8 = 16;
/// One under the per-identity caps of both services (64).
const STREAMS_PER_READER: usize = 63;
const HOLD: Duration = Duration::from_secs(60);
const MAX_RSS_BYTES: u64 = 1 << 30;

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// A client of BankA enrolled for this test (the CA key is the consortium's).
fn reader(c: &Consortium, n: u8) -> Identity {
    let now = ordo_proto::now_ms() / 1000;
    let enrollment = Enrollment::new("BankA", Role::Client, &format!("reader{n}"))
        .serial(10_000 + u64::from(n))
        .valid(now - 3600, now + 86_400);
    Identity::enroll(
        &c.ca_key("BankA"),
        SigningKey::from_bytes(&[0x60 + n; 32]),
        &enrollment,
    )
}

fn block_events_request(who: &Identity) -> ordo_proto::pb::common::Envelope {
    let data = BlockEventsRequest {
        start_block: 0,
        filtered: false,
    };
    ordo_proto::envelope::create_signed(
        who,
        CHANNEL,
        HeaderType::Message,
        data.encode_to_vec().into(),
        ordo_proto::now_ms(),
    )
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_readers_that_never_read_keep_each_node_under_a_gibibyte() {
    let c = Consortium::new("BankA");
    let genesis = c.genesis(
        CHANNEL,
        &[
            "--max-message-count",
            "4",
            "--preferred-max-bytes",
            "1048576",
            "--absolute-max-bytes",
            "2097152",
        ],
    );
    let admin = c.identity("BankA", "admin");
    let client = c.identity("BankA", "client");
    let mut orderer = NodeProcess::start(&c, "orderer0", "BankA");
    orderer.wait_ready(&admin).await;
    join(&orderer.addr, &admin, &genesis).await;
    let mut peer = NodeProcess::start_peer(&c, "peer0", "BankA", &[&orderer.addr]);
    peer.wait_ready(&admin).await;
    join(&peer.addr, &admin, &genesis).await;

    // The chain: BLOCKS blocks of one 1 MiB envelope each.
    for n in 0..BLOCKS {
        let (env, _) = ordo_proto::envelope::create_signed(
            &client,
            CHANNEL,
            HeaderType::Message,
            Bytes::from(vec![n as u8; ENVELOPE_BYTES]),
            ordo_proto::now_ms(),
        );
        let answers = broadcast(&orderer.addr, vec![env]).await;
        assert_eq!(
            answers[0].status,
            Code::Success as i32,
            "{}",
            answers[0].info
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while channel_info(&peer.addr, &admin, CHANNEL).await.height < BLOCKS + 1 {
        assert!(
            Instant::now() < deadline,
            "the peer did not commit the chain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The readers: each identity on one connection per node, 63 streams on each.
    let readers: Vec<Identity> = (0..READERS).map(|n| reader(&c, n)).collect();
    let mut held_deliver = Vec::new();
    let mut held_events = Vec::new();
    for who in &readers {
        let mut deliver =
            ordo_sdk::orderer::broadcast_client(connect(&orderer.addr).await.expect("connect"));
        let mut events = EventsClient::new(connect(&peer.addr).await.expect("connect"));
        for _ in 0..STREAMS_PER_READER {
            let request = ordo_sdk::orderer::seek_request(
                who,
                CHANNEL,
                oldest(),
                None,
                SeekBehavior::BlockUntilReady,
            );
            held_deliver.push(
                deliver
                    .deliver(request)
                    .await
                    .expect("deliver opens")
                    .into_inner(),
            );
            held_events.push(
                events
                    .block_events(block_events_request(who))
                    .await
                    .expect("block events open")
                    .into_inner(),
            );
        }
    }
    assert_eq!(held_deliver.len(), READERS as usize * STREAMS_PER_READER);

    // Held for a minute, memory sampled every second.
    let (orderer_pid, peer_pid) = (
        orderer.pid().expect("orderer pid"),
        peer.pid().expect("peer pid"),
    );
    let (mut orderer_max, mut peer_max) = (0, 0);
    let until = Instant::now() + HOLD;
    while Instant::now() < until {
        orderer_max = orderer_max.max(rss(orderer_pid));
        peer_max = peer_max.max(rss(peer_pid));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mib = |b: u64| b / (1024 * 1024);
    println!(
        "{} never-reading streams per node for {} s: orderer peak RSS {} MiB, peer peak RSS {} MiB",
        held_deliver.len(),
        HOLD.as_secs(),
        mib(orderer_max),
        mib(peer_max)
    );
    assert!(
        orderer_max < MAX_RSS_BYTES,
        "orderer peaked at {} MiB",
        mib(orderer_max)
    );
    assert!(
        peer_max < MAX_RSS_BYTES,
        "peer peaked at {} MiB",
        mib(peer_max)
    );

    // Readers that read are still served, while the others still hold their streams.
    let d = deliver(
        &orderer.addr,
        &admin,
        CHANNEL,
        oldest(),
        Some(position(Some(BLOCKS))),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::Ok, "{}", d.info);
    assert_eq!(d.blocks.len() as u64, BLOCKS + 1);
    let mut events = EventsClient::new(connect(&peer.addr).await.expect("connect"));
    let mut stream = events
        .block_events(block_events_request(&admin))
        .await
        .expect("block events open")
        .into_inner();
    for n in 0..=BLOCKS {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a block in time")
            .expect("the stream is open")
            .expect("a block");
        match next.kind {
            Some(block_events_response::Kind::Block(b)) => {
                assert_eq!(ordo_proto::block::number(&b), n)
            }
            other => panic!("expected block {n}, got {other:?}"),
        }
    }
    drop(held_deliver);
    drop(held_events);
}
