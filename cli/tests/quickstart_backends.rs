//! The README's quickstart on the raft and kafka backends, over mutual TLS (what `ordo up`
//! starts by default): bank accounts opened and a transfer through the peers' Gateways,
//! a balance queried through another org's peer, and the chaincode's events followed with
//! `ordo events`. (The solo quickstart is `gateway.rs` and `up.rs`.)

mod common;

use common::*;

fn quickstart(consensus: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let dir_s = dir.to_str().expect("utf8");
    let base = free_ports(50);
    let (child, banner) = start_up_with(dir_s, base, base + 25, &["--consensus", consensus]);
    let mut up = Up(Some(child));
    assert!(
        banner.contains("ordo network ready"),
        "{consensus}: {banner}"
    );
    let network = dir.join("network.json");
    let net_s = network.to_str().expect("utf8");
    let net = ordo_sdk::network::Network::load(&network).expect("network.json");
    assert!(
        net.identities
            .values()
            .flat_map(|m| m.values())
            .all(|f| f.tls.is_some()),
        "{consensus}: every identity has TLS files"
    );

    let invoke = |args: &[&str]| {
        let mut all = vec!["tx", "invoke", "--network", net_s, "--chaincode", "bank"];
        all.extend_from_slice(args);
        run_ok(&all)
    };
    invoke(&["--fn", "open", "--args", "alice", "100"]);
    invoke(&["--fn", "open", "--args", "bob", "20"]);
    let moved: serde_json::Value = serde_json::from_str(&invoke(&[
        "--fn", "transfer", "--args", "alice", "bob", "30", "--json",
    ]))
    .expect("json");
    assert_eq!(moved["code"], "VALID", "{consensus}: {moved}");
    let mut balance = String::new();
    for _ in 0..50 {
        balance = run_ok(&[
            "tx",
            "query",
            "--network",
            net_s,
            "--org",
            "BankC",
            "--chaincode",
            "bank",
            "--fn",
            "balance",
            "--args",
            "bob",
        ]);
        if balance.trim() == "50" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(balance.trim(), "50", "{consensus}");

    let events = run_ok(&[
        "events",
        "--network",
        net_s,
        "--chaincode",
        "bank",
        "--from",
        "0",
        "--count",
        "3",
        "--json",
    ]);
    let lines: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_eq!(lines.len(), 3, "{consensus}: {events}");
    assert!(run_ok(&["block", "verify", "--network", net_s]).starts_with("OK"));
    up.stop();
}

#[test]
fn the_quickstart_runs_on_raft_and_kafka_over_tls() {
    for consensus in ["raft", "kafka"] {
        quickstart(consensus);
    }
}
