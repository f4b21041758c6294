//! `ordo bench peer` against `ordo up`: an orderer and three peers as real processes,
//! 2,000 endorser transactions of which 10% conflict on purpose; every transaction is
//! committed with the expected code and every peer ends at the same commit hash.

mod common;

use common::*;

#[test]
fn bench_peer_commits_everything_with_the_planned_conflicts_and_peers_agree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let base = free_ports(8);
    let (port, ops) = (base, base + 4);
    let mut up = Up(Some(start_up(dir.to_str().expect("utf8"), port, ops).0));
    let network = dir.join("network.json");

    let out = run_ok(&[
        "bench",
        "peer",
        "--network",
        network.to_str().expect("utf8"),
        "--txs",
        "2000",
        "--conflict-percent",
        "10",
        "--clients",
        "2",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("bench prints JSON");
    let count = |field: &str| report[field].as_u64().unwrap_or(u64::MAX);
    let code = |name: &str| report["codes"][name].as_u64().unwrap_or(0);
    assert_eq!(count("txs_accepted"), 2000, "{report}");
    assert_eq!(count("txs_committed"), 2000, "{report}");
    assert_eq!(code("VALID") + code("MVCC_READ_CONFLICT"), 2000, "{report}");
    assert_eq!(count("conflicts_planned"), 200, "{report}");
    assert_eq!(
        code("MVCC_READ_CONFLICT"),
        200,
        "exactly the deliberate conflicts: {report}"
    );
    assert_eq!(report["commit_hashes_agree"], true, "{report}");
    let peers = report["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 3, "one peer per org: {report}");
    for p in peers {
        assert_eq!(p["reached_final_height"], true, "{report}");
        assert_eq!(p["commit_hash"], peers[0]["commit_hash"], "{report}");
        assert!(p["tx_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{report}");
    }
    assert!(report["tx_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{report}");
    assert_eq!(report["consensus"], "solo");
    assert_eq!(report["ack_mode"], "enqueued");
    assert_eq!(report["clients"], 2);

    // A second run on the same network uses new keys: nothing collides with the first.
    let again: serde_json::Value = serde_json::from_str(&run_ok(&[
        "bench",
        "peer",
        "--network",
        network.to_str().expect("utf8"),
        "--txs",
        "300",
        "--conflict-percent",
        "0",
        "--json",
    ]))
    .expect("bench prints JSON");
    assert_eq!(again["codes"]["VALID"], 300, "{again}");
    assert_eq!(again["commit_hashes_agree"], true, "{again}");

    let status = up.stop().expect("ordo up exits");
    assert!(status.success(), "ordo up exit status {status}");
}
