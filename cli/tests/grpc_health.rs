//! The standard gRPC health service (`grpc.health.v1.Health`) on both nodes, checked by an
//! independent client — gRPC's own Python implementation (`grpcio-health-checking`, run
//! by `tests/health_check.py`) — over mutual TLS on a network from `ordo up`, three raft
//! orderers and a peer per org:
//!
//! - ready: every node answers SERVING for the node as a whole (`""`) and for each of its
//!   services, NOT_FOUND for a service it does not have;
//! - an orderer whose channel has no raft leader (the other two consenters stopped) is not
//!   ready: NOT_SERVING, as its `/readyz` says 503;
//! - a peer that reaches no orderer (all three stopped) is not ready: NOT_SERVING;
//! - once the orderers run again, every node is SERVING again.
//!
//! Orderers are stopped with SIGSTOP and resumed with SIGCONT, not killed: `ordo up`
//! stops the whole network when one of its nodes exits, while a stopped process is, to
//! its peers, a node that does not answer — the same thing readiness must notice.
//!
//! Needs `python3` with `grpcio` and `grpcio-health-checking` (`.ci/run` installs them);
//! without them the test fails and says how to install them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ordo_sdk::network::{Network, NodeEntry};

const ORDERER_SERVICES: &[&str] = &[
    "ordo.orderer.AtomicBroadcast",
    "ordo.admin.Admin",
    "ordo.cluster.Cluster",
];
const PEER_SERVICES: &[&str] = &[
    "ordo.admin.Admin",
    "ordo.discovery.Discovery",
    "ordo.gateway.Endorser",
    "ordo.gateway.Gateway",
    "ordo.gateway.Events",
    "ordo.query.Query",
];
/// Bound on each wait for a status to change (an election timeout, a readiness
/// evaluation and a health refresh fit many times over).
const WAIT: Duration = Duration::from_secs(60);

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/health_check.py")
}

/// Fails, saying what to install, unless Python has grpcio and grpcio-health-checking.
fn require_python_client() {
    let ok = Command::new("python3")
        .args(["-c", "import grpc, grpc_health"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 with grpcio and grpcio-health-checking is needed: \
         python3 -m pip install grpcio grpcio-health-checking (.ci/run does)"
    );
}

/// The TLS files the health client uses for `node`: a client of the node's own org (its
/// TLS CA signed the node's server certificate), with its CA certificates in one bundle.
struct ClientTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn client_tls(net: &Network, node: &NodeEntry, scratch: &Path) -> ClientTls {
    let files = net
        .identities
        .get(&node.org)
        .and_then(|members| members.get("client"))
        .and_then(|client| client.tls.clone())
        .unwrap_or_else(|| panic!("network.json has a TLS client of {}", node.org));
    let mut bundle = String::new();
    for ca in &files.ca {
        bundle.push_str(&std::fs::read_to_string(ca).expect("CA certificate"));
        bundle.push('\n');
    }
    let ca = scratch.join(format!("{}-ca.pem", node.org));
    std::fs::write(&ca, bundle).expect("CA bundle written");
    ClientTls {
        ca,
        cert: files.cert,
        key: files.key,
    }
}

/// `health_check.py` against `node` for `services`: one status name per service.
fn check(node: &NodeEntry, tls: &ClientTls, services: &[&str]) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("utf8").to_string();
    let mut args = vec![
        script().to_string(),
        node.grpc_addr.clone(),
        services[0].to_string(),
        path(&tls.ca),
        path(&tls.cert),
        path(&tls.key),
    ];
    args.extend(services[1..].iter().map(|s| s.to_string()));
    let out = Command::new("python3")
        .args(&args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "health_check.py on {} ({}) failed: {}{}",
        node.name,
        node.grpc_addr,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let statuses: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(statuses.len(), services.len(), "{statuses:?}");
    statuses
}

/// The node's services with `""` first.
fn all_services(node: &NodeEntry) -> Vec<&'static str> {
    let own = if node.role == "orderer" {
        ORDERER_SERVICES
    } else {
        PEER_SERVICES
    };
    std::iter::once("").chain(own.iter().copied()).collect()
}

/// Checks `node` until every one of its services answers `want`; panics after [`WAIT`].
fn wait_for(node: &NodeEntry, tls: &ClientTls, want: &str) {
    let services = all_services(node);
    let deadline = Instant::now() + WAIT;
    loop {
        let got = check(node, tls, &services);
        if got.iter().all(|s| s == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {services:?} answered {got:?}, not all {want}; /readyz: {}",
            node.name,
            http_get(&node.ops_addr, "/readyz").1
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Processes stopped with SIGSTOP, continued when dropped (also when an assertion fails,
/// so that `ordo up` can stop them).
struct Stopped(Vec<u32>);

impl Stopped {
    fn stop(&mut self, node: &NodeEntry) {
        let pid = node.pid.expect("a running node");
        signal(pid, libc::SIGSTOP);
        self.0.push(pid);
    }

    fn continue_all(&mut self) {
        for pid in self.0.drain(..) {
            signal(pid, libc::SIGCONT);
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.continue_all();
    }
}

#[test]
fn health_follows_readiness_for_an_independent_grpc_client() {
    require_python_client();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let dir_s = dir.to_str().expect("utf8").to_string();
    let base = free_ports(50);
    let (child, banner) = start_up_with(&dir_s, base, base + 25, &["--consensus", "raft"]);
    let _up = Up(Some(child));
    assert!(banner.contains("ordo network ready"), "{banner}");
    let net = Network::load(&dir.join("network.json")).expect("network.json");
    let orderers: Vec<NodeEntry> = net.nodes_with_role("orderer").cloned().collect();
    let peers: Vec<NodeEntry> = net.nodes_with_role("peer").cloned().collect();
    assert_eq!(orderers.len(), 3);
    assert!(!peers.is_empty(), "{banner}");
    let tls = |n: &NodeEntry| client_tls(&net, n, tmp.path());

    // Ready: SERVING everywhere, NOT_FOUND for what a node does not serve.
    for node in orderers.iter().chain(&peers) {
        wait_for(node, &tls(node), "SERVING");
        assert_eq!(http_get(&node.ops_addr, "/readyz").0, 200, "{}", node.name);
        assert_eq!(
            check(node, &tls(node), &["ordo.no.Such"]),
            ["NOT_FOUND"],
            "{}",
            node.name
        );
    }

    // The survivor of three consenters knows no leader: not ready.
    let mut stopped = Stopped(Vec::new());
    stopped.stop(&orderers[1]);
    stopped.stop(&orderers[2]);
    let survivor = &orderers[0];
    wait_for(survivor, &tls(survivor), "NOT_SERVING");
    let (code, body) = http_get(&survivor.ops_addr, "/readyz");
    assert_eq!(code, 503, "/readyz agrees: {body}");
    assert_eq!(
        http_get(&survivor.ops_addr, "/healthz").0,
        200,
        "still alive: liveness is not readiness"
    );

    // No orderer answers: the peers are not ready.
    stopped.stop(survivor);
    for peer in &peers {
        wait_for(peer, &tls(peer), "NOT_SERVING");
        assert_eq!(http_get(&peer.ops_addr, "/readyz").0, 503, "{}", peer.name);
    }

    // The orderers run again: a leader, heights, and every node SERVING once more.
    stopped.continue_all();
    for node in orderers.iter().chain(&peers) {
        wait_for(node, &tls(node), "SERVING");
    }
}
