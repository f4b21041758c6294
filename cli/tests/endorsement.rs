//! Cross-org endorsement through the Gateway with peers down: `bank` needs 2 of 3 orgs;
//! with one org's peer killed a transfer still commits (the other two endorse), with two
//! killed it fails with an error that names the unreachable peers and what the policy
//! still lacks.

mod common;

use bytes::Bytes;
use common::*;
use ordo_sdk::gateway::{Contract, GatewayError, RetryPolicy};

const CHANNEL: &str = "endorse";
const ORGS: [&str; 3] = ["BankA", "BankB", "BankC"];

fn args(a: &[&str]) -> Vec<Bytes> {
    a.iter().map(|s| Bytes::from(s.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_survives_one_peer_down_and_names_what_is_missing_with_two() {
    let c = Consortium::new(&ORGS.join(","));
    let admins: Vec<_> = ORGS.iter().map(|o| c.identity(o, "admin")).collect();
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admins[0]).await;
    let genesis = c.genesis(
        CHANNEL,
        &[
            "--orderer-endpoints",
            &o.addr,
            "--batch-timeout-ms",
            "30",
            "--chaincode",
            "bank:2",
        ],
    );
    join(&o.addr, &admins[0], &genesis).await;
    let base = free_ports(3);
    let addrs: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    let mut peers = Vec::new();
    for (i, org) in ORGS.iter().enumerate() {
        let others: Vec<String> = addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| format!("\"{a}\""))
            .collect();
        let gateway = format!(
            "[gateway]\nendorsers = [{}]\nendorse_timeout_ms = 2000\n",
            others.join(", ")
        );
        let mut p = PeerProcess::start_peer_at(
            &c,
            &format!("peer0.{org}"),
            org,
            &[],
            Some(addrs[i].clone()),
            &gateway,
        );
        p.wait_ready(&admins[i]).await;
        join(&p.addr, &admins[i], &genesis).await;
        peers.push(p);
    }
    let client = c.identity("BankA", "client");
    let bank = Contract::connect(
        &addrs[0],
        &common::transport_for(&addrs[0]),
        client,
        CHANNEL,
        "bank",
    )
    .await
    .expect("gateway");
    bank.with_retry_policy(RetryPolicy::with_attempts(5))
        .submit_with_retry("open", args(&["alice", "50"]))
        .await
        .expect("all peers up");
    bank.with_retry_policy(RetryPolicy::with_attempts(5))
        .submit_with_retry("open", args(&["bob", "0"]))
        .await
        .expect("all peers up");

    peers[2].kill();
    let moved = bank
        .with_retry_policy(RetryPolicy::with_attempts(5))
        .submit_with_retry("transfer", args(&["alice", "bob", "5"]))
        .await
        .expect("BankA and BankB endorse without BankC");
    assert_eq!(moved.result, "45");

    peers[1].kill();
    match bank.submit("transfer", args(&["alice", "bob", "5"])).await {
        Err(GatewayError::Refused {
            step,
            code,
            message,
        }) => {
            assert_eq!(step, "Endorse");
            assert_eq!(code, tonic::Code::Unavailable, "{message}");
            assert!(message.contains("endorsed by BankA"), "{message}");
            assert!(message.contains(&addrs[1]), "names BankB's peer: {message}");
            assert!(message.contains(&addrs[2]), "names BankC's peer: {message}");
        }
        other => panic!("two peers down must fail: {other:?}"),
    }
    // Reads still work on the surviving peer.
    assert_eq!(
        bank.evaluate("balance", args(&["bob"]))
            .await
            .expect("balance"),
        "5"
    );
}
