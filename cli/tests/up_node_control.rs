//! `ordo up` as a place to try failures (issue 15, item 6), with real processes and real
//! sockets: a three-orderer raft network with `committed` acks over mutual TLS; `kill
//! -9` of the raft leader (its pid from `network.json`) while `ordo bench orderer` loads a
//! follower. The others carry on, `ordo up` keeps running and names the dead node,
//! `ordo node start` brings it back, it catches up, every chain is identical, and no
//! acknowledged envelope is lost. Then the refusals (`start` of a running node, unknown
//! names, a second `ordo up`, `ordo node` with no `ordo up`), and a second run with
//! `--restart-on-crash`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::raft::*;
use common::*;
use ordo_proto::identity::Identity;
use ordo_sdk::network::Network;

const CHANNEL: &str = "ordo-channel";

/// A running `ordo up`: stdout is drained by a thread (nothing it prints later can block
/// or break it), stderr goes to a file the test reads. SIGINT when dropped.
struct UpRun {
    child: Option<Child>,
    stderr: PathBuf,
}

impl UpRun {
    fn start(dir: &Path, port: u16, ops: u16, extra: &[&str]) -> Self {
        let dir_s = dir.to_str().expect("utf8");
        std::fs::create_dir_all(dir).expect("dir");
        let stderr = unique(&dir.with_file_name("up"));
        let (port, ops) = (port.to_string(), ops.to_string());
        let mut args = vec![
            "up",
            "--dir",
            dir_s,
            "--port",
            &port,
            "--ops-port",
            &ops,
            "--batch-timeout-ms",
            "50",
        ];
        args.extend_from_slice(extra);
        let mut child = ordo()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&stderr).expect("stderr file"),
            ))
            .spawn()
            .expect("ordo up starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut seen = String::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains("press Ctrl-C") {
                        break;
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "ordo up ended before it was ready:\n{seen}\n{}",
                        std::fs::read_to_string(&stderr).unwrap_or_default()
                    );
                }
            }
        }
        std::thread::spawn(move || for _ in lines {});
        assert!(seen.contains("ordo network ready"), "{seen}");
        assert!(
            seen.contains("ordo node kill"),
            "the banner shows how to try a failure: {seen}"
        );
        register_network(dir_s);
        Self {
            child: Some(child),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn still_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits (up to 30 s) until `ordo up`'s stderr contains `text`.
    fn wait_for_stderr(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let err = self.stderr();
            if err.contains(text) {
                return err;
            }
            assert!(
                Instant::now() < deadline,
                "ordo up never said {text:?}; its stderr:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGINT (Ctrl-C) and wait; asserts a clean exit.
    fn interrupt(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGINT);
            let status = child.wait().expect("ordo up exits");
            assert!(status.success(), "ordo up: {status}\n{}", self.stderr());
        }
    }
}

impl Drop for UpRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGINT);
            let _ = child.wait();
        }
    }
}

/// `P.0.stderr`, `P.1.stderr`, …: the first that does not exist yet (one per run).
fn unique(p: &Path) -> PathBuf {
    let mut n = 0;
    loop {
        let candidate = p.with_extension(format!("{n}.stderr"));
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// `ordo node ARGS --network NET`: (success, stdout, stderr).
fn node(net: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["node"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--network", net]);
    run(&all)
}

fn node_ok(net: &str, args: &[&str]) -> String {
    let (ok, out, err) = node(net, args);
    assert!(ok, "ordo node {args:?} failed:\n{out}\n{err}");
    out
}

fn node_err(net: &str, args: &[&str]) -> String {
    let (ok, out, err) = node(net, args);
    assert!(!ok, "ordo node {args:?} should fail, printed:\n{out}");
    err
}

fn pid_of(network: &Path, name: &str) -> Option<u32> {
    Network::load(network)
        .expect("network.json")
        .node(name)
        .expect("node")
        .pid
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Waits (up to 30 s) until `network.json` records `want(pid)` for `name`.
fn wait_pid(network: &Path, name: &str, want: impl Fn(Option<u32>) -> bool) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pid = pid_of(network, name);
        if want(pid) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "network.json's pid of {name} stayed {pid:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn height(addr: &str, reader: &Identity) -> u64 {
    channel_info(addr, reader, CHANNEL).await.height
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_raft_leader_under_load_then_bring_it_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let base = free_ports(50);
    let raft = [
        "--consensus",
        "raft",
        "--ack-mode",
        "committed",
        "--no-peers",
    ];
    let mut up = UpRun::start(&dir, base, base + 25, &raft);
    let network = dir.join("network.json");
    let net_s = network.to_str().expect("utf8");
    let net = Network::load(&network).expect("network.json");
    let orderers: Vec<(String, String)> = net
        .nodes_with_role("orderer")
        .map(|n| (n.name.clone(), n.grpc_addr.clone()))
        .collect();
    assert_eq!(orderers.len(), 3);
    for (name, _) in &orderers {
        let pid = pid_of(&network, name).expect("a running node has a pid");
        assert!(
            alive(pid),
            "{name}'s pid {pid} in network.json is a live process"
        );
    }
    let reader = net.identity(None, "client").expect("client");
    let all: Vec<(&str, &Identity)> = orderers
        .iter()
        .map(|(_, a)| (a.as_str(), &reader))
        .collect();
    let leader = agreed_leader(CHANNEL, &all).await;
    let follower = orderers
        .iter()
        .find(|(n, _)| *n != leader)
        .expect("a follower")
        .clone();
    let leader_pid = pid_of(&network, &leader).expect("leader pid");
    let status = node_ok(net_s, &["status"]);
    assert!(
        status.contains(&format!("running (pid {leader_pid})")),
        "{status}"
    );

    // Load a follower (it forwards to the leader) and kill the leader mid-run.
    let before = height(&follower.1, &reader).await;
    let mut bench = ordo()
        .args([
            "bench",
            "orderer",
            "--network",
            net_s,
            "--node",
            &follower.0,
            "--txs",
            "30000",
            "--clients",
            "2",
            "--payload-bytes",
            "256",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bench starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while height(&follower.1, &reader).await < before + 5 {
        assert!(Instant::now() < deadline, "the bench never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(leader_pid, libc::SIGKILL);
    let killed_at_height = height(&follower.1, &reader).await;
    assert!(
        matches!(bench.try_wait(), Ok(None)),
        "the kill landed while the bench was running"
    );
    eprintln!("killed the leader {leader} at height {killed_at_height}");
    let err = up.wait_for_stderr(&format!("{leader} exited unexpectedly"));
    let crash_line = err
        .lines()
        .find(|l| l.contains(&format!("{leader} exited unexpectedly")))
        .expect("crash line");
    for part in [
        "signal: 9",
        "the other nodes keep running",
        &format!("{leader}/orderer.log"),
        &format!("ordo node start {leader} --network {net_s}"),
    ] {
        assert!(
            crash_line.contains(part),
            "{part:?} missing from: {crash_line}"
        );
    }
    wait_pid(&network, &leader, |p| p.is_none());
    let bench = bench.wait_with_output().expect("bench ends");
    assert!(
        bench.status.success(),
        "bench against {} failed:\n{}",
        follower.0,
        String::from_utf8_lossy(&bench.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&bench.stdout).expect("bench prints JSON");
    eprintln!("bench against {}: {report}", follower.0);
    let field = |f: &str| {
        report[f]
            .as_u64()
            .unwrap_or_else(|| panic!("{f} in {report}"))
    };
    let (sent, accepted, rejected) = (
        field("txs_sent"),
        field("txs_accepted"),
        field("txs_rejected"),
    );
    assert_eq!(sent, 30_000, "{report}");
    assert_eq!(
        accepted + rejected,
        sent,
        "every envelope answered: {report}"
    );
    assert!(accepted > 0, "{report}");
    assert_eq!(
        field("txs_lost"),
        0,
        "no acknowledged envelope lost: {report}"
    );
    assert_eq!(field("txs_duplicated"), 0, "{report}");

    // The survivors carried on: a new leader, the chain grew past the kill.
    let survivors: Vec<(&str, &Identity)> = orderers
        .iter()
        .filter(|(n, _)| *n != leader)
        .map(|(_, a)| (a.as_str(), &reader))
        .collect();
    let new_leader = agreed_leader(CHANNEL, &survivors).await;
    assert_ne!(new_leader, leader);
    assert!(
        height(&follower.1, &reader).await > killed_at_height,
        "blocks were cut after the kill"
    );
    assert!(
        up.still_running(),
        "ordo up keeps running:\n{}",
        up.stderr()
    );
    let status = node_ok(net_s, &["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(leader.as_str()) && l.contains("crashed (signal: 9")),
        "{status}"
    );

    // Bring it back; it catches up to identical chains.
    let out = node_ok(net_s, &["start", &leader]);
    assert!(out.contains(&format!("started {leader}")), "{out}");
    let new_pid = pid_of(&network, &leader).expect("a started node has a pid");
    assert_ne!(new_pid, leader_pid);
    assert!(alive(new_pid));
    let common_height = converged(CHANNEL, &all, &[]).await;
    let blocks = chain(CHANNEL, &follower.1, &reader).await;
    assert_eq!(blocks.len(), common_height);
    // Block 0 is the genesis config; everything after it came from the bench.
    let ids: Vec<String> = blocks[1..].iter().flat_map(block_tx_ids).collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no envelope twice in the chain");
    assert!(
        accepted <= ids.len() as u64 && ids.len() as u64 <= sent,
        "{accepted} acknowledged, {} in the chain, {sent} sent",
        ids.len()
    );
    for (name, _) in &orderers {
        let out = run_ok(&["block", "verify", "--network", net_s, "--node", name]);
        assert!(out.starts_with("OK"), "{name}: {out}");
    }

    // A read without --node still answers while the network's first orderer is down,
    // and says which orderer it asked instead.
    node_ok(net_s, &["stop", "orderer0"]);
    let (ok, out, err) = run(&["channel", "info", "--network", net_s, "--json"]);
    assert!(ok, "channel info with orderer0 down: {err}");
    assert!(out.contains("\"height\""), "{out}");
    assert!(
        err.contains("orderer0") && err.contains("unreachable") && err.contains("asking orderer1"),
        "{err}"
    );
    node_ok(net_s, &["start", "orderer0"]);
    converged(CHANNEL, &all, &[]).await;
    // orderer0 may have been the restarted leader: its pid is new again.
    let new_pid = pid_of(&network, &leader).expect("a started node has a pid");

    // Refusals, each naming what is wrong.
    let err = node_err(net_s, &["start", &leader]);
    assert!(
        err.contains(&format!("{leader} is already running (pid {new_pid})")),
        "{err}"
    );
    let err = node_err(net_s, &["stop", "orderer9"]);
    assert!(
        err.contains("no node \"orderer9\"") && err.contains("orderer0, orderer1, orderer2"),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "up",
        "--dir",
        dir.to_str().expect("utf8"),
        "--port",
        &base.to_string(),
        "--ops-port",
        &(base + 25).to_string(),
    ]);
    assert!(
        !ok && err.contains("already running"),
        "a second ordo up: {err}"
    );

    // stop, then stop again, then restart: on purpose, so never reported as a crash.
    let out = node_ok(net_s, &["stop", &follower.0]);
    assert!(out.contains(&format!("stopped {}", follower.0)), "{out}");
    assert_eq!(pid_of(&network, &follower.0), None);
    let err = node_err(net_s, &["stop", &follower.0]);
    assert!(err.contains("is not running (stopped)"), "{err}");
    let out = node_ok(net_s, &["restart", &follower.0]);
    assert!(
        out.contains("was not running") && out.contains("started"),
        "{out}"
    );
    assert!(
        !up.stderr()
            .contains(&format!("{} exited unexpectedly", follower.0)),
        "a stop on purpose is not a crash:\n{}",
        up.stderr()
    );
    converged(CHANNEL, &all, &[]).await;

    // Ctrl-C stops every node, restarted ones included, and clears the pids and socket.
    let pids: Vec<u32> = orderers
        .iter()
        .map(|(n, _)| pid_of(&network, n).expect("running"))
        .collect();
    up.interrupt();
    let net_after = Network::load(&network).expect("network.json");
    assert!(net_after.nodes.iter().all(|n| n.pid.is_none()));
    assert!(!dir.join("control.sock").exists(), "control socket removed");
    for pid in pids {
        assert!(!alive(pid), "pid {pid} stopped with ordo up");
    }
    let err = node_err(net_s, &["stop", "orderer0"]);
    assert!(
        err.contains("no `ordo up` is running") && err.contains("ordo up --dir"),
        "{err}"
    );

    // Second run, same ledgers, with --restart-on-crash: a crash is restarted, a kill on
    // purpose is not.
    let mut up = UpRun::start(&dir, base, base + 25, &["--restart-on-crash"]);
    let victim = &follower.0;
    let pid = pid_of(&network, victim).expect("running");
    signal(pid, libc::SIGKILL);
    let err = up.wait_for_stderr(&format!("restarted {victim}"));
    assert!(
        err.contains(&format!("{victim} exited unexpectedly (signal: 9"))
            && err.contains("Restarting it in 1.0 s (--restart-on-crash"),
        "{err}"
    );
    let restarted = wait_pid(&network, victim, |p| p.is_some_and(|p| p != pid)).expect("pid");
    assert!(alive(restarted));
    let out = node_ok(net_s, &["kill", victim]);
    assert!(
        out.contains(&format!("killed {victim} (signal: 9")),
        "{out}"
    );
    // Absence can only be watched for: 3 s is three times the first restart backoff, by
    // which a crashed node would have been started again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pid_of(&network, victim),
        None,
        "a kill on purpose is not restarted"
    );
    let status = node_ok(net_s, &["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(victim.as_str()) && l.contains("stopped")),
        "{status}"
    );
    node_ok(net_s, &["start", victim]);
    converged(CHANNEL, &all, &[]).await;
    up.interrupt();
}
