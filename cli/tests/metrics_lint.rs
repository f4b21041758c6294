//! Every node's `/metrics` passes `promtool check metrics`: a TLS network from `ordo up`
//! (three raft orderers and a peer per org) takes a small `ordo bench orderer` load, the
//! peers commit it, and each orderer's and peer's exposition goes through Prometheus' own
//! linter — no warning (help text, `_total` on counters, base units), exit 0.
//!
//! The same scrape checks what the metrics must say after that traffic: the peers counted
//! and timed every block they committed, the orderers labelled their Broadcast responses
//! with the channel, every node reports `ordo_build_info`, and a scraper that asks for
//! OpenMetrics gets it.
//!
//! `promtool` comes with Debian's `prometheus` package (`.ci/run` installs it). Without
//! it the test fails and says so; `ORDO_SKIP_PROMTOOL=1` skips it on purpose.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ordo_sdk::network::Network;

const CHANNEL: &str = "ordo-channel";
/// Envelopes the bench sends.
const TXS: u64 = 500;

/// The body of an HTTP response and its headers (lower-cased names), from the text
/// [`http_get`] returns.
fn split_response(text: &str) -> (String, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    (head.to_ascii_lowercase(), body.to_string())
}

/// A GET with an `Accept` header; the whole response text.
fn http_get_accept(addr: &str, path: &str, accept: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).expect("ops port open");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    text
}

/// The value of the sample `name{labels}` (exact label text), if present.
fn sample(body: &str, name_and_labels: &str) -> Option<f64> {
    let prefix = format!("{name_and_labels} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// `promtool check metrics` over `body`: (exit success, everything it printed).
fn promtool_check(body: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("metrics written to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// Whether the test may run: `false` when skipped on purpose; panics, naming the package
/// to install, when promtool is missing.
fn promtool_available() -> bool {
    if std::env::var("ORDO_SKIP_PROMTOOL").as_deref() == Ok("1") {
        eprintln!("ORDO_SKIP_PROMTOOL=1: not linting /metrics with promtool");
        return false;
    }
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "promtool not found: install Debian's `prometheus` package \
         (apt-get install --no-install-recommends prometheus; .ci/run does), \
         or set ORDO_SKIP_PROMTOOL=1 to skip this test"
    );
    true
}

#[test]
fn every_nodes_metrics_pass_promtool_after_traffic() {
    if !promtool_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let dir_s = dir.to_str().expect("utf8").to_string();
    let base = free_ports(50);
    let (child, banner) = start_up_with(&dir_s, base, base + 25, &["--consensus", "raft"]);
    let _up = Up(Some(child));
    assert!(banner.contains("ordo network ready"), "{banner}");
    let net_path = dir.join("network.json");
    let net = Network::load(&net_path).expect("network.json");
    assert_eq!(net.nodes_with_role("orderer").count(), 3);
    assert!(net.nodes_with_role("peer").count() > 0, "{banner}");

    // Traffic once every node is ready (the raft channel has elected its leader).
    let deadline = Instant::now() + Duration::from_secs(60);
    for node in &net.nodes {
        while http_get(&node.ops_addr, "/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "{} never ready", node.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let report: serde_json::Value = serde_json::from_str(&run_ok(&[
        "bench",
        "orderer",
        "--network",
        net_path.to_str().expect("utf8"),
        "--txs",
        &TXS.to_string(),
        "--json",
    ]))
    .expect("bench prints JSON");
    assert_eq!(report["txs_accepted"], TXS, "{report}");

    // The peers commit what the orderers wrote (heights from the metrics themselves).
    let orderer_ops = &net
        .nodes_with_role("orderer")
        .next()
        .expect("an orderer")
        .ops_addr;
    let height_name = |role: &str| format!("ordo_{role}_ledger_height{{channel=\"{CHANNEL}\"}}");
    let height_of = |ops: &str, role: &str| {
        let (_, body) = split_response(&http_get(ops, "/metrics").1);
        sample(&body, &height_name(role)).unwrap_or(0.0) as u64
    };
    // `enqueued` acks come before the block is cut (batch timeout) and written: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut height = height_of(orderer_ops, "orderer");
    while height <= 1 {
        assert!(
            Instant::now() < deadline,
            "the bench's blocks were never written"
        );
        std::thread::sleep(Duration::from_millis(100));
        height = height_of(orderer_ops, "orderer");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in net.nodes_with_role("peer") {
        while height_of(&p.ops_addr, "peer") < height {
            assert!(
                Instant::now() < deadline,
                "{} did not reach {height}",
                p.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let mut successes = 0.0;
    for node in &net.nodes {
        let role = node.role.as_str();
        let (code, text) = http_get(&node.ops_addr, "/metrics");
        assert_eq!(code, 200, "{}: {text}", node.name);
        let (head, body) = split_response(&text);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{}: the classic text format by default: {head}",
            node.name
        );
        assert!(!head.contains("transfer-encoding"), "{head}");
        let (ok, printed) = promtool_check(&body);
        assert!(
            ok && printed.trim().is_empty(),
            "promtool check metrics on {} ({role}): {printed}\n--- metrics ---\n{body}",
            node.name
        );
        let build = format!(
            "ordo_build_info{{version=\"{}\",node=\"{role}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(sample(&body, &build), Some(1.0), "{}: {body}", node.name);
        match role {
            "peer" => {
                let committed = sample(
                    &body,
                    &format!("ordo_peer_blocks_committed_total{{channel=\"{CHANNEL}\"}}"),
                )
                .unwrap_or(0.0);
                // Block 0 came with the join; `ordo up` started the peer before any other.
                // The peer's own height from the same scrape: the orderer may have cut
                // another block of the bench's since `height` was read.
                let own_height = sample(&body, &height_name("peer")).unwrap_or(0.0) as u64;
                assert!(own_height >= height, "{}: {body}", node.name);
                assert_eq!(committed as u64, own_height - 1, "{}: {body}", node.name);
                for histogram in ["block_validate_seconds", "block_commit_seconds"] {
                    let count = sample(
                        &body,
                        &format!("ordo_peer_{histogram}_count{{channel=\"{CHANNEL}\"}}"),
                    );
                    assert_eq!(count, Some(committed), "{histogram}: {body}");
                }
            }
            "orderer" => {
                successes += sample(
                    &body,
                    &format!(
                        "ordo_orderer_broadcast_responses_total{{channel=\"{CHANNEL}\",status=\"SUCCESS\"}}"
                    ),
                )
                .unwrap_or(0.0);
                assert!(
                    !body.contains("broadcast_responses_total{channel=\"\",status=\"SUCCESS\""),
                    "accepted envelopes carry their channel: {body}"
                );
            }
            other => panic!("unexpected role {other}"),
        }

        // A scraper that asks for OpenMetrics gets it, as prometheus-client writes it.
        let om = http_get_accept(
            &node.ops_addr,
            "/metrics",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        );
        let (head, body) = split_response(&om);
        assert!(
            head.contains("content-type: application/openmetrics-text"),
            "{head}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
    }
    assert!(
        successes >= TXS as f64,
        "every accepted envelope counted under its channel: {successes}"
    );
}
