//! Event streams are bounded over real processes (`ordo up`): one identity holds at most
//! `MAX_STREAMS_PER_IDENTITY` streams on a peer (the next is RESOURCE_EXHAUSTED at once,
//! other identities are not affected, and closing one makes room). The byte bound of
//! each stream's buffer is `ordo_node::stream_budget`'s, unit-tested there.

mod common;

use std::time::Duration;

use common::*;
use ordo_peer::node::events::MAX_STREAMS_PER_IDENTITY;
use ordo_sdk::gateway::{Gateway, GatewayError, StartAt};
use ordo_sdk::network::Network;

const CHANNEL: &str = "ordo-channel";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_holds_a_bounded_number_of_event_streams() {
    let (_tmp, network_file, _up) = up_in_temp_dir();
    let net = Network::load(&network_file).expect("network");
    let gateway = Gateway::for_org(&net, "BankA", "client")
        .await
        .expect("gateway");
    let bank = gateway.contract(CHANNEL, "bank");
    bank.submit("open", ["alice", "1"])
        .await
        .expect("a block with an event");

    let mut held = Vec::new();
    for _ in 0..MAX_STREAMS_PER_IDENTITY {
        held.push(
            bank.events(StartAt::Block(0))
                .await
                .expect("within the cap"),
        );
    }
    match bank.events(StartAt::Block(0)).await {
        Err(GatewayError::Refused { code, message, .. }) => {
            assert_eq!(code, tonic::Code::ResourceExhausted, "{message}")
        }
        Err(other) => panic!("one stream too many: {other}"),
        Ok(_) => panic!("one stream too many must be refused"),
    }
    // Another identity is not affected.
    let other = Gateway::for_org(&net, "BankA", "admin")
        .await
        .expect("gateway");
    let mut theirs = other
        .contract(CHANNEL, "bank")
        .events(StartAt::Block(0))
        .await
        .expect("another identity's stream");
    let first = tokio::time::timeout(Duration::from_secs(10), theirs.next())
        .await
        .expect("an event in time")
        .expect("the stream is open")
        .expect("an event");
    assert_eq!(first.name, "open");

    // Closing one makes room (once the peer has seen the stream go).
    held.pop().expect("a stream").close();
    let mut reopened = None;
    for _ in 0..100 {
        match bank.events(StartAt::Block(0)).await {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(reopened.is_some(), "a closed stream gives its place back");
}
