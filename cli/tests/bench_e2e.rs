//! `ordo bench e2e` against `ordo up`: an orderer and three peers as real processes,
//! transfers through every org's gateway. Not timed: the report must add up — every
//! transaction accounted for, the codes summing to the committed count, the peers at one
//! commit hash, and the money conserved.

mod common;

use common::*;

/// The balance `ordo bench e2e` opens each account with (`ordo_bench::OPENING_BALANCE`).
const OPENING_BALANCE: u64 = 1_000_000_000;

fn report(network: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["bench", "e2e", "--network", network, "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&run_ok(&args)).expect("bench prints JSON")
}

/// The checks every run's report must pass; `accounts` is what the run was given.
fn assert_adds_up(r: &serde_json::Value, accounts: u64) {
    let count = |field: &str| r[field].as_u64().unwrap_or(u64::MAX);
    let total = |field: &str| -> u64 {
        let map = r[field]
            .as_object()
            .unwrap_or_else(|| panic!("{field}: {r}"));
        map.values().map(|v| v.as_u64().unwrap_or(0)).sum()
    };
    let (codes, failures) = (total("codes"), total("failures"));
    assert_eq!(codes, count("txs_committed"), "codes add up: {r}");
    assert_eq!(
        count("txs_committed") + failures,
        count("txs_submitted"),
        "every transaction committed or failed: {r}"
    );
    assert!(r["codes"]["VALID"].as_u64().unwrap_or(0) > 0, "{r}");
    assert_eq!(r["commit_hashes_agree"], true, "{r}");
    assert_eq!(r["money_conserved"], true, "{r}");
    assert_eq!(count("money_before"), accounts * OPENING_BALANCE, "{r}");
    assert_eq!(count("money_after"), accounts * OPENING_BALANCE, "{r}");
    let peers = r["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 3, "one peer per org: {r}");
    for p in peers {
        assert_eq!(p["commit_hash"], peers[0]["commit_hash"], "{r}");
        assert_eq!(p["height"], peers[0]["height"], "{r}");
    }
    assert_eq!(
        r["gateways"].as_array().map(Vec::len),
        Some(3),
        "every org's gateway serves clients: {r}"
    );
    assert!(r["tx_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    for phase in ["endorse_ms", "order_ms", "commit_ms"] {
        assert!(
            r[phase]["p50"].as_f64().unwrap_or(0.0) > 0.0,
            "{phase}: {r}"
        );
    }
    assert!(
        r["latency_ms_p99"].as_f64().unwrap_or(0.0)
            >= r["latency_ms_p50"].as_f64().unwrap_or(f64::MAX),
        "{r}"
    );
}

#[test]
fn bench_e2e_accounts_for_every_transaction_and_conserves_money() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let base = free_ports(8);
    let (port, ops) = (base, base + 4);
    let mut up = Up(Some(start_up(dir.to_str().expect("utf8"), port, ops).0));
    let network = dir.join("network.json");
    let network = network.to_str().expect("utf8");

    // Contention: six clients over three accounts conflict often.
    let hot = report(
        network,
        &["--txs", "240", "--clients", "6", "--accounts", "3"],
    );
    assert_adds_up(&hot, 3);
    assert_eq!(hot["txs_submitted"], 240, "{hot}");
    assert_eq!(hot["consensus"], "solo");
    assert_eq!(hot["clients"], 6);

    // By time, over many accounts: new accounts, nothing collides with the first run.
    let cold = report(
        network,
        &["--duration", "2", "--clients", "3", "--accounts", "200"],
    );
    assert_adds_up(&cold, 200);
    assert!(cold["txs_submitted"].as_u64().unwrap_or(0) > 0, "{cold}");

    let status = up.stop().expect("ordo up exits");
    assert!(status.success(), "ordo up exit status {status}");
}
