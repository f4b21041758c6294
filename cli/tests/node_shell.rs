//! What an operator sees of a node process before any traffic: the start line, plain logs
//! in files, configuration mistakes caught at start, and a graceful stop that works even
//! when nobody reads the node's stderr any more.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// An orderer config for `org`'s orderer in consortium `c`, on free ports.
fn orderer_config(c: &Consortium, name: &str) -> std::path::PathBuf {
    let dir = c.dir.path().join(name);
    std::fs::create_dir_all(&dir).expect("node dir");
    let id = c.crypto().join("BankA");
    let config = dir.join("orderer.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nlisten_addr = \"127.0.0.1:{}\"\nops_listen_addr = \"127.0.0.1:{}\"\ndata_dir = \"data\"\n\
             [identity]\nkey_file = \"{}\"\ncert_file = \"{}\"\n",
            free_port(),
            free_port(),
            id.join("orderer.key").display(),
            id.join("orderer.cert").display()
        ),
    )
    .expect("config written");
    config
}

fn wait_exit(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_node_stops_on_sigterm_after_its_stderr_pipe_closed() {
    let c = Consortium::new("BankA");
    let config = orderer_config(&c, "orderer0");
    let mut child = ordo()
        .args(["orderer", "--config", config.to_str().expect("utf8")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orderer starts");
    // Read the start line, then close the pipe: every later log line hits EPIPE.
    let mut stderr = child.stderr.take().expect("stderr");
    let mut first = [0u8; 256];
    let n = std::io::Read::read(&mut stderr, &mut first).expect("a log line");
    let start = String::from_utf8_lossy(&first[..n]).into_owned();
    drop(stderr);
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let status = status.expect("the node stopped on SIGTERM");
    assert!(
        status.success(),
        "exit status {status}; first output {start}"
    );
}

#[test]
fn the_start_line_names_version_config_and_data_dir_in_plain_text() {
    let c = Consortium::new("BankA");
    let config = orderer_config(&c, "orderer0");
    let log = c.dir.path().join("orderer0").join("orderer.log");
    let file = std::fs::File::create(&log).expect("log file");
    let mut child = ordo()
        .args(["orderer", "--config", config.to_str().expect("utf8")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .spawn()
        .expect("orderer starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains("orderer ready") {
        std::thread::sleep(Duration::from_millis(100));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    signal(child.id(), libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
    }
    let first = text.lines().next().unwrap_or_default();
    assert!(first.contains("starting orderer"), "{text}");
    assert!(
        first.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            || first.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
        "{first}"
    );
    assert!(first.contains("orderer.toml"), "{first}");
    assert!(first.contains("data_dir="), "{first}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a log file:\n{text}"
    );
    assert!(
        !text.contains("Some("),
        "addresses are logged as addresses:\n{text}"
    );
}

#[test]
fn a_mistyped_environment_override_stops_the_node_with_the_name_meant() {
    let c = Consortium::new("BankA");
    let config = orderer_config(&c, "orderer0");
    let out = ordo()
        .args(["orderer", "--config", config.to_str().expect("utf8")])
        .env("ORDO_NDOE_LISTEN_ADDR", "0.0.0.0:7050")
        .stdin(Stdio::null())
        .output()
        .expect("ordo runs");
    assert!(!out.status.success(), "the node must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ORDO_NODE_LISTEN_ADDR"), "{err}");
    assert!(
        !err.contains("Io {") && !err.contains("Parse {"),
        "errors read as sentences, not debug dumps: {err}"
    );
}

#[test]
fn both_nodes_print_an_example_config_with_every_section() {
    for (kind, sections) in [
        (
            "orderer",
            &["[node]", "[identity]", "[tls]", "[connections]"][..],
        ),
        (
            "peer",
            &[
                "[node]",
                "[identity]",
                "[deliver]",
                "[gateway]",
                "[tls]",
                "[connections]",
            ][..],
        ),
    ] {
        let out = run_ok(&[kind, "--print-example-config"]);
        for s in sections {
            assert!(out.contains(s), "{kind} example lacks {s}:\n{out}");
        }
    }
}
