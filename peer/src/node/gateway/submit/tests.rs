//! The lanes against a real gRPC Broadcast server (the test kit's fake orderer): answers
//! reach the submit they belong to, however many share the stream, and a lane to an
//! orderer that is not there fails every submit at once, each time.

use std::sync::Arc;

use ordo_proto::pb::common::Role;
use ordo_testkit::envelopes::message;
use ordo_testkit::fake_orderer::{FakeOrderer, Faults, Source};
use ordo_testkit::TestOrg;

use super::{OrdererLanes, Refused};

fn lanes() -> Arc<OrdererLanes> {
    let pool = Arc::new(ordo_node::ClientPool::new(
        ordo_sdk::transport::Transport::Plain,
    ));
    Arc::new(OrdererLanes::new(pool))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_share_one_stream_and_each_gets_its_own_answer() {
    let faults = Faults {
        reject_every: 3,
        ..Faults::default()
    };
    let orderer = FakeOrderer::start(Source::Cutter, faults, None)
        .await
        .expect("fake orderer");
    let addr = orderer.endpoint();
    let lanes = lanes();
    let client = TestOrg::new("BankA").member(Role::Client, "client");
    const SUBMITS: usize = 300;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..SUBMITS {
        let (lanes, addr) = (lanes.clone(), addr.clone());
        let (envelope, tx_id) = message(&client, "ch", 64, k as u64);
        tasks.spawn(async move { lanes.broadcast(&addr, &envelope, &tx_id).await });
    }
    let (mut taken, mut forbidden) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(()) => taken += 1,
            Err(Refused::Final(status)) => {
                assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
                forbidden += 1;
            }
            Err(Refused::TryNext(why)) => panic!("the lane failed: {why}"),
        }
    }
    // Every third envelope the orderer received was refused, and each refusal reached
    // its own submit (a mismatched tx id would have ended the lane).
    assert_eq!(orderer.received(), SUBMITS as u64);
    assert_eq!((taken, forbidden), (SUBMITS - SUBMITS / 3, SUBMITS / 3));
    assert_eq!(lanes.lanes.lock().expect("lanes").len(), 1, "one lane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_to_an_absent_orderer_fails_every_submit_at_once() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let addr = free.local_addr().expect("addr").to_string();
    drop(free);
    let lanes = lanes();
    let client = TestOrg::new("BankA").member(Role::Client, "client");
    for k in 0..3 {
        let (envelope, tx_id) = message(&client, "ch", 64, k);
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            lanes.broadcast(&addr, &envelope, &tx_id),
        )
        .await
        .expect("an answer, not a hang");
        match outcome {
            Err(Refused::TryNext(why)) => assert!(!why.is_empty()),
            Ok(()) => panic!("nothing listens at {addr}"),
            Err(Refused::Final(s)) => panic!("a connection failure is not final: {s:?}"),
        }
    }
}
