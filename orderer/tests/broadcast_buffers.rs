//! The node-wide budget for Broadcast bytes received and not yet checked
//! (`[limits] broadcast_buffer_bytes`, `orderer/src/inflight.rs`), over a real socket:
//! raw HTTP/2 streams declare large envelopes and never finish them. Without the budget
//! the node buffers every partial message whole; with it, what it holds stays within the
//! budget, a stream that finds no room ends with RESOURCE_EXHAUSTED, other clients'
//! envelopes still go through while there is room, and a stream's room comes back when
//! it ends.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_stream::StreamExt;
use tonic::codegen::http;

use common::{admin_request, join, start, Node, Org, WAIT};

const MIB: usize = 1024 * 1024;
const BUDGET: usize = 8 * MIB;
const CHANNEL: &str = "buffers";
const HELD: &str = "ordo_orderer_broadcast_buffered_bytes";

/// A Broadcast stream that declared a message of `declared` bytes, sent `sent` of them,
/// and stays open.
struct Partial {
    response: h2::client::ResponseFuture,
    _body: h2::SendStream<Bytes>,
}

async fn partial(addr: &str, declared: usize, sent: usize) -> Partial {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{addr}/ordo.orderer.AtomicBroadcast/Broadcast"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut body) = client.send_request(request, false).expect("stream opens");
    // The gRPC prefix (not compressed, the declared length), then part of the message.
    let mut data = vec![0u8; 5 + sent];
    data[1..5].copy_from_slice(&u32::try_from(declared).expect("length").to_be_bytes());
    body.reserve_capacity(data.len());
    body.send_data(Bytes::from(data), false)
        .expect("data queued");
    Partial {
        response,
        _body: body,
    }
}

/// Waits until the node holds `want(bytes)`; returns what it holds.
async fn held_until(node: &Node, want: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let held = node.metric(HELD).await.expect("the metric");
        assert!(held <= BUDGET as f64, "holds {held} bytes, over the budget");
        if want(held) {
            return held;
        }
        assert!(Instant::now() < deadline, "holds {held} bytes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gRPC status a stream ended with (trailers, or headers for a trailers-only answer).
async fn grpc_status(response: h2::client::ResponseFuture) -> (String, String) {
    let response = response.await.expect("an answer");
    let header = |h: &http::HeaderMap, name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Some(code) = header(response.headers(), "grpc-status") {
        let message = header(response.headers(), "grpc-message").unwrap_or_default();
        return (code, message);
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("response data");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body
        .trailers()
        .await
        .expect("trailers")
        .expect("trailers sent");
    (
        header(&trailers, "grpc-status").unwrap_or_default(),
        header(&trailers, "grpc-message").unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_envelopes_stay_within_the_budget_and_room_comes_back() {
    let mut org = Org::new(CHANNEL);
    org.extra_toml =
        format!("[limits]\nmax_grpc_message_bytes = {BUDGET}\nbroadcast_buffer_bytes = {BUDGET}\n");
    let node = start(&org).await;
    node.admin(&admin_request(&org.admin, join(&org.genesis)))
        .await
        .expect_ok("join");

    // A client declares a 6 MiB envelope and sends 5 MiB of it: the node holds that.
    let first = partial(&node.addr, 6 * MIB, 5 * MIB).await;
    held_until(&node, |h| h >= (5 * MIB) as f64).await;

    // Another client's envelope fits in the rest and is answered.
    let mut client = ordo_sdk::orderer::broadcast_client(node.channel().await);
    let env = ordo_testkit::envelopes::message(&org.client, CHANNEL, 1024, 1).0;
    let mut answers = client
        .broadcast(tokio_stream::once(env))
        .await
        .expect("broadcast opens")
        .into_inner();
    let answer = answers.next().await.expect("an answer").expect("answered");
    assert_eq!(
        answer.status,
        ordo_proto::pb::common::Status::Success as i32,
        "{}",
        answer.info
    );

    // A third declares another 6 MiB: it gets the room that is left, then none, and
    // after waiting it ends with RESOURCE_EXHAUSTED; the node never held more.
    let second = partial(&node.addr, 6 * MIB, 5 * MIB).await;
    held_until(&node, |h| h >= (BUDGET - 64 * 1024) as f64).await;
    let (code, message) = grpc_status(second.response).await;
    assert_eq!(code, "8", "RESOURCE_EXHAUSTED: {message}");
    // Its room came back with it; the first still holds its 5 MiB.
    let held = held_until(&node, |h| h < (6 * MIB) as f64).await;
    assert!(held >= (5 * MIB) as f64, "{held}");

    // The first leaves: everything comes back.
    drop(first);
    held_until(&node, |h| h == 0.0).await;
    node.stop().await;
}
