//! Certificate rotation under load, as an operator does it on a TLS network started by
//! `ordo up`: while `ordo bench orderer` keeps a 3-node raft channel (committed mode)
//! busy, each orderer's TLS certificate is renewed with a new key (`ordo crypto renew
//! --tls-only`, SIGHUP) and its consenter updated (`ordo channel consenter update`) in
//! turn; then a peer's and a client's. Nothing acknowledged is lost or duplicated, every
//! bench run completes, and all chains end identical, the peers' included.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raft::*;
use common::*;
use ordo_sdk::network::Network;

const CHANNEL: &str = "ordo-channel";

/// `ordo crypto renew --tls-only` for `org`'s `member` (a new key).
fn renew_tls(crypto: &Path, org: &str, member: &str) {
    run_ok(&[
        "crypto",
        "renew",
        "--crypto",
        crypto.to_str().expect("utf8"),
        "--org",
        org,
        "--name",
        member,
        "--tls-only",
    ]);
}

/// SIGHUPs the node and waits until its log says it reloaded the TLS key pair.
fn reload(node: &ordo_sdk::network::NodeEntry) {
    let marker = "SIGHUP: reloading the TLS key pair";
    let count = || {
        std::fs::read_to_string(&node.log_file)
            .unwrap_or_default()
            .matches(marker)
            .count()
    };
    let before = count();
    signal(node.pid.expect("running node"), libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() == before {
        assert!(Instant::now() < deadline, "{} never reloaded", node.name);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The DER of the first certificate in a PEM file.
fn cert_der(path: &Path) -> Vec<u8> {
    ordo_sdk::tls::read_certs(path).expect("PEM certificate")[0].to_vec()
}

/// The TLS certificate the channel config pins for consenter `id`, read from the newest
/// config block over Deliver.
async fn pinned(addr: &str, reader: &ordo_proto::identity::Identity, id: &str) -> Vec<u8> {
    let blocks = chain(CHANNEL, addr, reader).await;
    let cfg = blocks
        .iter()
        .rev()
        .find_map(|b| ordo_proto::config::config_from_block(b).ok())
        .expect("a config block");
    cfg.orderer
        .expect("orderer section")
        .consenters
        .into_iter()
        .find(|c| c.id == id)
        .expect("consenter")
        .tls_cert
        .to_vec()
}

fn peer_height(ops: &str) -> u64 {
    let (_, text) = http_get(ops, "/metrics");
    let prefix = format!("ordo_peer_ledger_height{{channel=\"{CHANNEL}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_with_nothing_lost() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let dir_s = dir.to_str().expect("utf8").to_string();
    let base = free_ports(50);
    let (child, banner) = start_up_with(
        &dir_s,
        base,
        base + 25,
        &["--consensus", "raft", "--ack-mode", "committed"],
    );
    let mut up = Up(Some(child));
    assert!(banner.contains("ordo network ready"), "{banner}");
    let net_path = dir.join("network.json");
    let net = Network::load(&net_path).expect("network.json");
    let crypto = net.crypto_dir.clone();
    let orderers: Vec<_> = net.nodes_with_role("orderer").cloned().collect();
    let peers: Vec<_> = net.nodes_with_role("peer").cloned().collect();
    assert_eq!(orderers.len(), 3);
    let admin = net.identity(None, "admin").expect("admin");

    // Load: `ordo bench orderer` runs back to back until the rotations are done; every
    // run must account for each acknowledged envelope exactly once.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let load = {
        let stop = stop.clone();
        let started = started.clone();
        let net_s = net_path.to_str().expect("utf8").to_string();
        std::thread::spawn(move || {
            let mut reports = Vec::new();
            while reports.is_empty() || !stop.load(Ordering::Relaxed) {
                started.fetch_add(1, Ordering::SeqCst);
                let out = run_ok(&[
                    "bench",
                    "orderer",
                    "--network",
                    &net_s,
                    "--txs",
                    "2000",
                    "--clients",
                    "4",
                    "--payload-bytes",
                    "256",
                    "--json",
                ]);
                let report: serde_json::Value =
                    serde_json::from_str(&out).expect("bench prints JSON");
                reports.push(report);
            }
            reports
        })
    };

    // Each orderer in turn: a new TLS key and certificate, picked up on SIGHUP, then
    // pinned in the channel config through another orderer.
    for (i, node) in orderers.iter().enumerate() {
        let member = "orderer";
        let old_pin = pinned(&orderers[0].grpc_addr, &admin, &node.name).await;
        renew_tls(&crypto, &node.org, member);
        let new_cert = cert_der(&crypto.join(&node.org).join(format!("{member}.tls.crt")));
        assert_ne!(old_pin, new_cert, "renewal made a new certificate");
        reload(node);
        let via = &orderers[(i + 1) % orderers.len()].grpc_addr;
        run_ok(&[
            "channel",
            "consenter",
            "update",
            "--crypto",
            crypto.to_str().expect("utf8"),
            "--orderer",
            via,
            "--channel",
            CHANNEL,
            "--id",
            &node.name,
            "--org",
            &node.org,
            "--member",
            member,
        ]);
        assert_eq!(pinned(via, &admin, &node.name).await, new_cert);
        // The rotated node redials the others with its new certificate.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&node.log_file)
            .unwrap_or_default()
            .contains("the channel config pins a new TLS certificate for this node")
        {
            assert!(Instant::now() < deadline, "{} never redialled", node.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // An update that changes nothing is refused before it reaches the orderer.
    let (ok, _, err) = run(&[
        "channel",
        "consenter",
        "update",
        "--crypto",
        crypto.to_str().expect("utf8"),
        "--orderer",
        &orderers[0].grpc_addr,
        "--channel",
        CHANNEL,
        "--id",
        &orderers[0].name,
        "--org",
        &orderers[0].org,
        "--member",
        "orderer",
    ]);
    assert!(
        !ok && err.contains("already has these certificates"),
        "{err}"
    );

    // A peer and the benchmark's client: renewed while the load runs; the next bench run
    // connects with the client's new certificate.
    renew_tls(&crypto, &peers[0].org, "peer");
    reload(&peers[0]);
    let first_org = net.identities.keys().next().expect("an org").clone();
    renew_tls(&crypto, &first_org, "client");
    // The last bench run starts after the client's renewal: it connects with the new
    // certificate.
    let runs = started.load(Ordering::SeqCst);
    while started.load(Ordering::SeqCst) == runs && !load.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let reports = load.join().expect("load thread");
    assert!(reports.len() >= 2, "the load ran during the rotations");
    let mut accepted = 0;
    for r in &reports {
        assert_eq!(r["txs_lost"], 0, "{r}");
        assert_eq!(r["txs_duplicated"], 0, "{r}");
        assert_eq!(r["txs_accepted"], r["txs_delivered"], "{r}");
        accepted += r["txs_accepted"].as_u64().unwrap_or(0);
    }
    assert!(accepted > 0, "the load was acknowledged");
    eprintln!(
        "{} bench runs during the rotations, {accepted} envelopes acknowledged",
        reports.len()
    );

    // All orderer chains identical; every peer reaches the same height.
    let all: Vec<(&str, &ordo_proto::identity::Identity)> = orderers
        .iter()
        .map(|n| (n.grpc_addr.as_str(), &admin))
        .collect();
    let height = converged(CHANNEL, &all, &[]).await as u64;
    for p in &peers {
        let deadline = Instant::now() + Duration::from_secs(30);
        while peer_height(&p.ops_addr) < height {
            assert!(
                Instant::now() < deadline,
                "{} stuck at {} of {height}",
                p.name,
                peer_height(&p.ops_addr)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(run_ok(&[
        "block",
        "verify",
        "--network",
        net_path.to_str().expect("utf8")
    ])
    .starts_with("OK"));
    up.stop();
}
