//! Chaincode as a service over real processes: `ordo chaincode serve --builtin bank` runs
//! the bank through the SDK's shim as its own process, a channel defines it with runtime
//! `external:<addr>`, and the peer's gateway gives the same results as the built-in. A
//! server killed in the middle of an invocation gives a clean error naming it and leaves
//! no partial state; a server that is down is reported the same way. A gateway limited to
//! one request at a time answers a second one RESOURCE_EXHAUSTED.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use bytes::Bytes;
use common::*;
use ordo_proto::config;
use ordo_proto::pb::common::{Block, ChaincodeDefinition, Role};
use ordo_proto::policy::build as policy;
use ordo_sdk::gateway::{Contract, GatewayError};
use prost::Message;

const CHANNEL: &str = "extcc";

fn args(a: &[&str]) -> Vec<Bytes> {
    a.iter().map(|s| Bytes::from(s.to_string())).collect()
}

/// Starts `ordo chaincode serve` on `listen`; returns the process and its address.
fn serve(listen: &str, extra: &[&str]) -> (Child, String) {
    let mut child = ordo()
        .args([
            "chaincode",
            "serve",
            "--builtin",
            "bank",
            "--listen",
            listen,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chaincode server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    (child, line.trim().to_string())
}

/// A genesis block with `bank` built in and `ebank` on the external servers.
fn genesis(c: &Consortium, orderer: &str, servers: &[(&str, &str)]) -> std::path::PathBuf {
    let path = c.genesis(
        CHANNEL,
        &[
            "--orderer-endpoints",
            orderer,
            "--batch-timeout-ms",
            "30",
            "--chaincode",
            "bank:1",
        ],
    );
    let block = Block::decode(std::fs::read(&path).expect("read").as_slice()).expect("block");
    let mut cfg = config::config_from_block(&block).expect("config");
    for (name, addr) in servers {
        cfg.chaincodes.push(ChaincodeDefinition {
            name: name.to_string(),
            version: "1".into(),
            endorsement_policy: Some(policy::n_out_of(1, &[("BankA", Role::Peer)])),
            runtime: format!("external:{addr}"),
        });
    }
    std::fs::write(
        &path,
        config::genesis_block(&cfg, 0)
            .expect("genesis")
            .encode_to_vec(),
    )
    .expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_bank_matches_the_builtin_and_a_killed_server_leaves_nothing() {
    let (mut server, addr) = serve("127.0.0.1:0", &[]);
    let (mut slow, slow_addr) = serve("127.0.0.1:0", &["--pause-before-writes-ms", "1500"]);
    let c = Consortium::new("BankA,BankB");
    let admin = c.identity("BankA", "admin");
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin).await;
    let path = genesis(&c, &o.addr, &[("ebank", &addr), ("slowbank", &slow_addr)]);
    join(&o.addr, &admin, &path).await;
    // One gateway request at a time: a second one meanwhile is RESOURCE_EXHAUSTED.
    let mut p = PeerProcess::start_peer_at(
        &c,
        "peer0.BankA",
        "BankA",
        &[],
        None,
        "[gateway]\nmax_concurrent = 1\n",
    );
    p.wait_ready(&admin).await;
    join(&p.addr, &admin, &path).await;
    let client = c.identity("BankA", "client");
    let peer_addr = p.addr.clone();
    let contract = |name: &'static str| {
        let (addr, client) = (peer_addr.clone(), client.clone());
        async move {
            Contract::connect(&addr, &common::transport_for(&addr), client, CHANNEL, name).await
        }
    };

    // The same calls on the built-in and on the external server give the same answers.
    let mut outcomes = Vec::new();
    for name in ["bank", "ebank"] {
        let mut cc = contract(name).await.expect("gateway");
        let mut seen = Vec::new();
        for call in [
            ("open", vec!["alice", "100"]),
            ("open", vec!["bob", "0"]),
            ("transfer", vec!["alice", "bob", "30"]),
        ] {
            let done = cc.submit(call.0, args(&call.1)).await.expect("committed");
            seen.push(done.result);
        }
        seen.push(
            cc.evaluate("balance", args(&["bob"]))
                .await
                .expect("balance"),
        );
        let history = cc
            .evaluate("history", args(&["bob"]))
            .await
            .expect("history");
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&history).expect("json");
        seen.push(Bytes::from(entries.len().to_string()));
        match cc.submit("transfer", args(&["bob", "alice", "1000"])).await {
            Err(GatewayError::Refused { message, .. }) => {
                assert!(message.contains("insufficient funds"), "{name}: {message}")
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
        outcomes.push(seen);
    }
    let expected: Vec<Bytes> = ["100", "0", "70", "30", "2"]
        .iter()
        .map(|s| Bytes::from(*s))
        .collect();
    assert_eq!(outcomes[0], expected);
    assert_eq!(outcomes[0], outcomes[1], "external and built-in agree");

    // Killed in the middle of a transfer (it pauses before each write): a clean error
    // that names the server, and no partial state.
    let mut s = contract("slowbank").await.expect("gateway");
    s.submit("open", args(&["carol", "10"]))
        .await
        .expect("opened");
    s.submit("open", args(&["dave", "10"]))
        .await
        .expect("opened");
    let pid = slow.id();
    let mut other = contract("bank").await.expect("gateway");
    let killer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        // The gateway is busy with the paused transfer.
        let busy = other.evaluate("balance", args(&["alice"])).await;
        signal(pid, libc::SIGKILL);
        busy
    });
    match s.submit("transfer", args(&["carol", "dave", "5"])).await {
        Err(GatewayError::Refused { step, message, .. }) => {
            assert_eq!(step, "Endorse");
            assert!(message.contains(&slow_addr), "names the server: {message}");
            assert!(message.contains("500"), "{message}");
        }
        other => panic!("a killed server must fail the invocation: {other:?}"),
    }
    match killer.await.expect("killer") {
        Err(GatewayError::Refused { code, message, .. }) => {
            assert_eq!(code, tonic::Code::ResourceExhausted, "{message}")
        }
        other => panic!("admission control must refuse: {other:?}"),
    }
    let _ = slow.wait();
    // The killed server is down now and the error says so; once a server is back on the
    // same address, carol still has 10.
    match s.evaluate("balance", args(&["carol"])).await {
        Err(GatewayError::Refused { message, .. }) => {
            assert!(message.contains(&slow_addr), "{message}")
        }
        other => panic!("a server that is down must be reported: {other:?}"),
    }
    let port = slow_addr.rsplit_once(':').map(|(_, p)| p).expect("port");
    let (mut back, _) = serve(&format!("127.0.0.1:{port}"), &[]);
    let mut s = contract("slowbank").await.expect("gateway");
    let mut carol = Bytes::new();
    for _ in 0..50 {
        match s.evaluate("balance", args(&["carol"])).await {
            Ok(b) => {
                carol = b;
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(carol, "10", "nothing of the killed transfer was kept");
    let _ = back.kill();
    let _ = server.kill();
}
