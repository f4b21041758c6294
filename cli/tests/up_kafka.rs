//! `ordo up --consensus kafka` with no brokers: three orderer processes on a mock Kafka
//! cluster that `up` starts itself and announces loudly; `ordo bench orderer` spreads its
//! streams over all three and every envelope is delivered once; a second run refuses,
//! because the mock cluster forgot the partition the ledgers depend on.

mod common;

use common::*;

#[test]
fn up_kafka_runs_three_orderers_on_a_mock_cluster() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let dir_s = dir.to_str().expect("utf8");
    // Orderer i listens on port + 10·i.
    let base = free_ports(42);
    let (port, ops) = (base, base + 21);
    let (child, banner) = start_up_with(dir_s, port, ops, &["--consensus", "kafka", "--no-peers"]);
    let mut up = Up(Some(child));
    assert!(banner.contains("3 orderer(s) (kafka)"), "{banner}");
    let network = dir.join("network.json");
    let net_s = network.to_str().expect("utf8");
    assert!(
        std::fs::read_to_string(dir.join("kafka-mock.log"))
            .unwrap_or_default()
            .contains("in memory"),
        "the mock cluster runs as its own process with a log"
    );

    let info: serde_json::Value =
        serde_json::from_str(&run_ok(&["channel", "info", "--network", net_s, "--json"]))
            .expect("json");
    assert_eq!(info["consensus"], "kafka", "{info}");
    let report: serde_json::Value = serde_json::from_str(&run_ok(&[
        "bench",
        "orderer",
        "--network",
        net_s,
        "--txs",
        "3000",
        "--clients",
        "3",
        "--payload-bytes",
        "256",
        "--json",
    ]))
    .expect("bench prints JSON");
    for (field, want) in [
        ("txs_accepted", 3000),
        ("txs_delivered", 3000),
        ("txs_lost", 0),
        ("txs_duplicated", 0),
    ] {
        assert_eq!(report[field], want, "{field} in {report}");
    }
    assert_eq!(report["consensus"], "kafka");
    assert!(run_ok(&["block", "verify", "--network", net_s]).starts_with("OK"));
    let status = up.stop().expect("ordo up exits");
    assert!(status.success(), "clean stop: {status}");

    let (ok, _, err) = run(&["up", "--dir", dir_s]);
    assert!(!ok, "a second run on a forgotten mock cluster must refuse");
    assert!(err.contains("mock cluster"), "says why: {err}");
}
