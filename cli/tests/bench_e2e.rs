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
    // With a plot, whose notice must not spoil the JSON on stdout.
    let plot = tmp.path().join("cold.svg");
    let plot_arg = plot.to_str().expect("utf8");
    let (ok, stdout, stderr) = run(&[
        "bench",
        "e2e",
        "--network",
        network,
        "--json",
        "--duration",
        "2",
        "--clients",
        "3",
        "--accounts",
        "200",
        "--plot",
        plot_arg,
    ]);
    assert!(ok, "ordo bench e2e --plot failed: {stdout}\n{stderr}");
    let cold: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON object");
    assert!(
        stderr.contains(&format!("plot written to {plot_arg}")),
        "{stderr}"
    );
    assert_adds_up(&cold, 200);
    assert!(cold["txs_submitted"].as_u64().unwrap_or(0) > 0, "{cold}");
    let svg = std::fs::read_to_string(&plot).expect("--plot wrote the file");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("ordo bench e2e: channel"), "{svg}");
    assert!(svg.contains("<polyline"), "{svg}");
    // The series in the report: VALID transactions per interval add up to the VALID count.
    let interval_s = cold["throughput"]["interval_s"].as_f64().unwrap_or(0.0);
    let per_s = cold["throughput"]["tx_per_s"].as_array().expect("series");
    let counted: f64 = per_s.iter().map(|v| v.as_f64().unwrap_or(0.0)).sum::<f64>() * interval_s;
    let valid = cold["codes"]["VALID"].as_u64().unwrap_or(0) as f64;
    assert!(
        (counted - valid).abs() < 1e-6,
        "{counted} vs {valid}: {cold}"
    );
    assert_eq!(
        cold["latency_ms_percentiles"]["percent"]
            .as_array()
            .map(Vec::len),
        Some(104),
        "{cold}"
    );

    let status = up.stop().expect("ordo up exits");
    assert!(status.success(), "ordo up exit status {status}");
}

/// `--plot` takes only SVG, and says so before anything else happens: the network file
/// here does not even exist.
#[test]
fn bench_plot_refuses_anything_but_svg() {
    for bench in ["orderer", "peer", "e2e"] {
        let (ok, stdout, stderr) = run(&[
            "bench",
            bench,
            "--network",
            "/nonexistent/network.json",
            "--plot",
            "run.png",
        ]);
        assert!(!ok, "{bench}: {stdout}");
        assert!(
            stderr.contains("--plot run.png: only SVG is supported"),
            "{bench}: {stderr}"
        );
    }
}
