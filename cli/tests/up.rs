//! `ordo up` as a new user runs it: one command to a working network, client commands
//! through `network.json`, a small benchmark, Ctrl-C, and a second run that reuses the
//! ledgers.

mod common;

use std::process::Child;

use common::*;

fn interrupt(mut child: Child) {
    signal(child.id(), libc::SIGINT);
    let status = child.wait().expect("ordo up exits");
    assert!(status.success(), "ordo up exit status {status}");
}

#[test]
fn up_then_use_then_stop_then_up_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let dir_s = dir.to_str().expect("utf8");
    let base = free_ports(8);
    let (port, ops) = (base, base + 4);
    let (child, banner) = start_up(dir_s, port, ops);
    assert!(banner.contains("ordo network ready"), "{banner}");
    let network = dir.join("network.json");
    let net_s = network.to_str().expect("utf8");
    assert!(
        banner.contains(net_s),
        "the ready line says where network.json is: {banner}"
    );

    let info: serde_json::Value =
        serde_json::from_str(&run_ok(&["channel", "info", "--network", net_s, "--json"]))
            .expect("json");
    assert_eq!(info["consensus"], "solo");
    assert_eq!(info["channel"], "ordo-channel");

    let report: serde_json::Value = serde_json::from_str(&run_ok(&[
        "bench",
        "orderer",
        "--network",
        net_s,
        "--txs",
        "3000",
        "--clients",
        "2",
        "--payload-bytes",
        "256",
        "--json",
    ]))
    .expect("bench prints JSON");
    for (field, want) in [
        ("txs_sent", 3000),
        ("txs_accepted", 3000),
        ("txs_delivered", 3000),
        ("txs_lost", 0),
        ("txs_duplicated", 0),
    ] {
        assert_eq!(report[field], want, "{field} in {report}");
    }
    assert_eq!(report["consensus"], "solo");
    assert_eq!(report["ack_mode"], "enqueued");
    assert!(report["tx_per_s"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(run_ok(&["block", "verify", "--network", net_s]).starts_with("OK"));
    let height_before = serde_json::from_str::<serde_json::Value>(&run_ok(&[
        "channel",
        "info",
        "--network",
        net_s,
        "--json",
    ]))
    .expect("json")["height"]
        .as_u64()
        .expect("height");
    interrupt(child);

    let net: ordo_sdk::network::Network =
        ordo_sdk::network::Network::load(&network).expect("network.json");
    assert!(
        net.nodes.iter().all(|n| n.pid.is_none()),
        "stopped nodes have no pid"
    );

    let (child, banner) = start_up(dir_s, port, ops);
    assert!(banner.contains("ordo network ready"), "{banner}");
    let info: serde_json::Value =
        serde_json::from_str(&run_ok(&["channel", "info", "--network", net_s, "--json"]))
            .expect("json");
    assert_eq!(
        info["height"].as_u64(),
        Some(height_before),
        "the second run reuses the ledger"
    );
    assert!(run_ok(&["block", "verify", "--network", net_s]).starts_with("OK"));
    interrupt(child);
}
