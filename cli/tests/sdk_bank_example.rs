//! The SDK's bank client example (`sdk/examples/bank_client.rs`), run as a newcomer would
//! run it against an `ordo up` network — as its own process, through every org's gateway —
//! and its outcomes checked here again from the outside: money conserved, one event per
//! account opened and per VALID transfer (read in two parts around a checkpoint file), the
//! overdraft a typed 400, at least 95% of 200 concurrent transfers over 20 accounts VALID
//! within 10 attempts with the attempts reported, and the transient owner data nowhere in
//! any peer's copy of the block while its hash is in the state.

mod common;

use std::path::PathBuf;

use common::*;
use ordo_proto::pb::query::{query_request, GetBlock};
use ordo_sdk::network::Network;
use prost::Message;

const CHANNEL: &str = "ordo-channel";

/// The example binary `cargo test --workspace` builds beside this test
/// (`target/<profile>/examples/bank_client`).
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = profile_dir.join("examples").join("bank_client");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test --workspace` builds the SDK's examples \
         (or run `cargo build -p ordo-sdk --examples`)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_client_example_runs_against_ordo_up() {
    let bin = example_binary();
    let (_tmp, network_file, _up) = up_in_temp_dir();

    let out = std::process::Command::new(&bin)
        .arg(&network_file)
        .args(["--transfers", "200", "--accounts", "20", "--json"])
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "example failed:\n{stdout}\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a JSON summary");

    // What the example checked itself, checked again from its report.
    assert_eq!(summary["overdraft_status"], 400, "{summary}");
    assert_eq!(summary["conserved"], true, "{summary}");
    let valid = summary["valid"].as_u64().expect("valid");
    assert!(valid >= 190, "at least 95% of 200 VALID: {summary}");
    let attempts = summary["attempts"]
        .as_object()
        .expect("attempts per transfer");
    let reported: u64 = attempts.values().filter_map(|v| v.as_u64()).sum();
    assert_eq!(
        reported, 200,
        "every transfer's attempts are reported: {summary}"
    );
    assert!(
        attempts
            .keys()
            .all(|k| k.parse::<u32>().is_ok_and(|n| (1..=10).contains(&n))),
        "within 10 attempts: {summary}"
    );
    assert!(
        attempts.keys().any(|k| k != "1"),
        "20 accounts under 200 concurrent transfers conflict, so some were retried: {summary}"
    );
    assert_eq!(summary["transfer_events"], valid + 1, "{summary}");
    assert_eq!(summary["open_events"], 22, "{summary}");
    let before = summary["events_before_stop"].as_u64().expect("count");
    let after = summary["events_after_resume"].as_u64().expect("count");
    assert!(before > 0 && after > 0, "read in two parts: {summary}");
    assert_eq!(before + after, valid + 1 + 22, "{summary}");

    // The transient owner: its hash in the state, its bytes in no peer's block.
    let run = summary["run"].as_str().expect("run");
    let owner = format!("Alice Example, passport {run}");
    let hash = run_ok(&[
        "tx",
        "query",
        "--network",
        network_file.to_str().expect("utf8"),
        "--chaincode",
        "bank",
        "--fn",
        "owner",
        "--args",
        &format!("{run}-alice"),
    ]);
    assert_eq!(hash.trim(), summary["owner_hash"].as_str().expect("hash"));
    let net = Network::load(&network_file).expect("network");
    let block_no = summary["alice_open_block"].as_u64().expect("block");
    let mut copies = Vec::new();
    for peer in net.nodes_with_role("peer") {
        let reader = net.identity(Some(&peer.org), "client").expect("client");
        let resp = peer_query(
            &peer.grpc_addr,
            &reader,
            CHANNEL,
            query_request::Query::Block(GetBlock { number: block_no }),
        )
        .await;
        let bytes = resp.block.expect("the block").encode_to_vec();
        assert!(
            !bytes.windows(owner.len()).any(|w| w == owner.as_bytes()),
            "{}: the transient owner reached the ledger",
            peer.name
        );
        copies.push(bytes);
    }
    assert_eq!(copies.len(), 3);
    assert!(
        copies.windows(2).all(|w| w[0] == w[1]),
        "every peer holds the same block"
    );
}
