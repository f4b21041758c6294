//! `ordo config orderer|peer`: a node's config and key directory written for its host, and
//! the bad input around it: a key that is not its certificate's, endpoints that cannot be
//! reached, an existing config, the wrong member.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// `ordo config KIND` for BankA of `c` into `out`, listening on the given loopback ports.
fn config_args(
    c: &Consortium,
    kind: &str,
    out: &Path,
    data: &Path,
    ports: (u16, u16),
) -> Vec<String> {
    vec![
        "config".into(),
        kind.into(),
        "--crypto".into(),
        s(&c.crypto()).into(),
        "--org".into(),
        "BankA".into(),
        "--out".into(),
        s(out).into(),
        "--listen".into(),
        format!("127.0.0.1:{}", ports.0),
        "--ops-listen".into(),
        format!("127.0.0.1:{}", ports.1),
        "--data-dir".into(),
        s(data).into(),
    ]
}

fn run_strings(args: &[String]) -> (bool, String, String) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&refs)
}

/// A node process started from a config file, its stderr in `log`; killed on drop.
struct Node {
    child: std::process::Child,
    log: PathBuf,
}

impl Node {
    fn start(kind: &str, config: &Path, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let child = ordo()
            .args([kind, "--config", s(config)])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("node starts");
        Self { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds a line with `needle` (or the node exits).
    fn wait_for(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the node exited ({status}) before logging {needle:?}:\n{text}");
            }
            assert!(Instant::now() < deadline, "no {needle:?} in:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_node_directory_written_for_a_host_holds_only_its_keys_and_starts_wherever_installed() {
    let c = Consortium::new("BankA,BankB");
    let root = c.dir.path();
    let written = root.join("written");
    let data = root.join("orderer-data");
    let ports = (free_port(), free_port());
    let (ok, out, err) = run_strings(&config_args(&c, "orderer", &written, &data, ports));
    assert!(ok, "ordo config orderer: {out}{err}");
    assert!(out.contains("mutual TLS"), "{out}");

    // Only the node's own material, private keys readable by the node user alone.
    let mut names: Vec<String> = std::fs::read_dir(&written)
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "orderer.cert",
            "orderer.key",
            "orderer.tls.crt",
            "orderer.tls.key",
            "orderer.toml",
            "tls-ca.crt"
        ],
        "no CA key, no other member's key"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&written), 0o700);
        assert_eq!(mode(&written.join("orderer.key")), 0o600);
        assert_eq!(mode(&written.join("orderer.tls.key")), 0o600);
    }
    let text = std::fs::read_to_string(written.join("orderer.toml")).expect("config");
    assert!(text.contains("name = \"orderer.BankA\""), "{text}");
    assert!(
        !text.contains(s(&c.crypto())),
        "the config names its files relative to itself, not in the crypto directory:\n{text}"
    );

    // Installed somewhere else (as on the node's host), it starts.
    let installed = root.join("etc-ordo");
    std::fs::rename(&written, &installed).expect("move");
    let mut orderer = Node::start(
        "orderer",
        &installed.join("orderer.toml"),
        root.join("orderer.log"),
    );
    orderer.wait_for("orderer ready", Duration::from_secs(30));
    assert!(data.exists(), "the data directory given is used");

    // A second run does not replace a config silently.
    let again = config_args(&c, "orderer", &installed, &data, ports);
    let (ok, _, err) = run_strings(&again);
    assert!(!ok && err.contains("--force"), "{err}");
    let mut forced = again.clone();
    forced.push("--force".into());
    let (ok, out, err) = run_strings(&forced);
    assert!(ok, "--force replaces it: {out}{err}");

    // The wrong member for the node kind, and endpoints that are not HOST:PORT.
    let mut wrong = config_args(&c, "orderer", &root.join("wrong"), &data, ports);
    wrong.extend(["--member".into(), "peer".into()]);
    let (ok, _, err) = run_strings(&wrong);
    assert!(!ok && err.contains("role"), "{err}");
    assert!(
        !root.join("wrong").exists(),
        "nothing written for a refused member"
    );
    let mut bad = config_args(&c, "peer", &root.join("bad"), &data, ports);
    bad.extend(["--endorser".into(), "peer.bankb.example".into()]);
    let (ok, _, err) = run_strings(&bad);
    assert!(
        !ok && err.contains("peer.bankb.example") && err.contains("HOST:PORT"),
        "{err}"
    );
}

#[test]
fn a_key_that_is_not_the_certificates_stops_the_node_before_its_data_dir_is_touched() {
    let c = Consortium::new("BankA");
    let root = c.dir.path();
    let dir = root.join("node");
    let data = root.join("data");
    let (ok, out, err) = run_strings(&config_args(
        &c,
        "orderer",
        &dir,
        &data,
        (free_port(), free_port()),
    ));
    assert!(ok, "{out}{err}");
    // The peer's key installed under the orderer's name.
    std::fs::copy(c.crypto().join("BankA/peer.key"), dir.join("orderer.key")).expect("copy");
    let out = ordo()
        .args(["orderer", "--config", s(&dir.join("orderer.toml"))])
        .stdin(Stdio::null())
        .output()
        .expect("ordo runs");
    assert!(!out.status.success(), "the node must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    let naming: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("orderer.cert") && l.contains("orderer.key"))
        .collect();
    assert_eq!(naming.len(), 1, "one line names both files: {err}");
    assert!(naming[0].contains("another key"), "{err}");
    assert!(!data.exists(), "the data directory was created: {err}");
}

#[test]
fn a_peer_whose_endorser_or_orderer_cannot_be_reached_says_so_once_and_again_when_it_answers() {
    let c = Consortium::new("BankA,BankB");
    let root = c.dir.path();
    let dir = root.join("peer");
    let endorser_port = free_port();
    let orderer_port = free_port();
    let mut args = config_args(
        &c,
        "peer",
        &dir,
        &root.join("data"),
        (free_port(), free_port()),
    );
    args.extend([
        "--endorser".into(),
        format!("127.0.0.1:{endorser_port}"),
        "--orderer".into(),
        format!("127.0.0.1:{orderer_port}"),
    ]);
    let (ok, out, err) = run_strings(&args);
    assert!(ok, "{out}{err}");
    let mut peer = Node::start("peer", &dir.join("peer.toml"), root.join("peer.log"));
    peer.wait_for("peer ready", Duration::from_secs(30));
    let endorser = format!("127.0.0.1:{endorser_port}");
    let orderer = format!("127.0.0.1:{orderer_port}");
    peer.wait_for(
        &format!("endpoint {orderer} cannot be reached"),
        Duration::from_secs(20),
    );
    let text = peer.wait_for(
        &format!("endpoint {endorser} cannot be reached"),
        Duration::from_secs(20),
    );
    // Several retries later (1 s, 2 s, 4 s apart), still one line each.
    std::thread::sleep(Duration::from_secs(8));
    let text = format!("{text}{}", &peer.log_text()[text.len()..]);
    for (key, endpoint) in [
        ("[gateway] endorsers", &endorser),
        ("[deliver] orderer_endpoints", &orderer),
    ] {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(endpoint.as_str()))
            .collect();
        assert_eq!(lines.len(), 1, "one line for {endpoint}:\n{text}");
        assert!(
            lines[0].contains(key) && lines[0].contains("WARN"),
            "{}",
            lines[0]
        );
    }
    // The endorser comes up: one more line says so.
    let listener = std::net::TcpListener::bind(("127.0.0.1", endorser_port)).expect("bind");
    peer.wait_for(
        &format!("endpoint {endorser} answers now"),
        Duration::from_secs(45),
    );
    drop(listener);
}
