//! The Python client (`clients/python`, written from `docs/PROTOCOL.md` and the `.proto`
//! files alone) against a real `ordo up` network over mutual TLS: its whole pytest suite
//! must pass, the golden vectors and the live tests both. The live tests submit a bank
//! transfer through a Gateway, see it committed on every peer, follow chaincode events
//! from a checkpoint file, and verify every block themselves, comparing their verdicts
//! with `ordo block verify` and `ordo block fetch` (this build's binary).
//!
//! The suite runs on a copy of the package in a temporary directory, with stubs generated
//! there by `generate.py` from this checkout's `proto/proto`: the source tree is left
//! untouched and two runs cannot share half-written stubs.
//!
//! Afterwards the test checks the suite's transfer with Ordo's own tools: `ordo tx query`
//! through every org's peer sees the new balances, and `ordo block verify` accepts the
//! chain.
//!
//! Needs `python3` with `grpcio`, `grpcio-tools`, `cryptography` and `pytest` (`.ci/run`
//! installs them); without them the test fails and says how to install them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Bounds the whole Python suite (it waits for a few commits and reads a few streams,
/// each bounded on its own side too).
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/python")
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Fails, saying what to install, unless Python has what the client and its tests need.
fn require_python() {
    let ok = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, cryptography, pytest"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 with grpcio, grpcio-tools, cryptography and pytest is needed: \
         python3 -m pip install grpcio-tools cryptography pytest (.ci/run does)"
    );
}

/// Copies the package's sources (not generated stubs or caches) from `from` to `to`.
fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read package dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let generated = name.ends_with("_pb2.py") || name.ends_with("_pb2_grpc.py");
        let cache = matches!(name.as_str(), "__pycache__" | ".pytest_cache" | "build")
            || name.ends_with(".egg-info");
        if generated || cache || name == "_sources.txt" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_sources(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy file");
        }
    }
}

/// Runs `cmd` with its output in files (no pipe can fill up), killing it after
/// `timeout`; returns (success, stdout and stderr).
fn run_bounded(mut cmd: Command, scratch: &Path, timeout: Duration) -> (bool, String) {
    let out_path = scratch.join("pytest.out");
    let out = std::fs::File::create(&out_path).expect("output file");
    let err = out.try_clone().expect("output file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("python3 starts");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(killed after {timeout:?})")),
    }
}

#[test]
fn python_client_passes_its_suite_against_a_real_tls_network() {
    require_python();
    let (tmp, network_file, _up) = up_in_temp_dir();
    let net = ordo_sdk::network::Network::load(&network_file).expect("network.json");
    assert!(
        net.identities
            .values()
            .flat_map(|members| members.values())
            .all(|files| files.tls.is_some()),
        "ordo up made a network without TLS"
    );

    // The package, copied, with stubs generated from this checkout's protos.
    let pkg = tmp.path().join("python");
    copy_sources(&package_dir(), &pkg);
    let proto_dir = repo_file("proto/proto");
    let gen = Command::new("python3")
        .arg(pkg.join("generate.py"))
        .args(["--proto-dir".as_ref(), proto_dir.as_os_str()])
        .current_dir(&pkg)
        .output()
        .expect("python3 runs");
    assert!(
        gen.status.success(),
        "generate.py failed: {}{}",
        String::from_utf8_lossy(&gen.stdout),
        String::from_utf8_lossy(&gen.stderr)
    );
    assert!(pkg.join("ordo_client/pb/gateway_pb2_grpc.py").exists());

    let report = tmp.path().join("report.json");
    let mut pytest = Command::new("python3");
    pytest
        .args(["-m", "pytest", "-v", "-p", "no:cacheprovider", "tests"])
        .current_dir(&pkg)
        .env("ORDO_NETWORK", &network_file)
        .env("ORDO_REQUIRE_NETWORK", "1")
        .env("ORDO_BIN", env!("CARGO_BIN_EXE_ordo"))
        .env("ORDO_PROTO_DIR", &proto_dir)
        .env("ORDO_GOLDEN", repo_file("proto/testdata/golden.txt"))
        .env("ORDO_PY_REPORT", &report)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let (ok, output) = run_bounded(pytest, tmp.path(), SUITE_TIMEOUT);
    println!("{output}");
    assert!(ok, "the Python client's suite failed:\n{output}");
    let summary = output
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_else(|| panic!("no pytest summary:\n{output}"));
    assert!(
        !summary.contains("skipped") && !summary.contains("failed") && !summary.contains("error"),
        "every test must run and pass: {summary}"
    );
    for test in [
        "test_golden.py::test_signed_block PASSED",
        "test_golden.py::test_envelope_and_its_tx_id PASSED",
        "test_golden.py::test_genesis_block_rebuilt_from_its_configuration PASSED",
        "test_network.py::test_committed_on_every_peer PASSED",
        "test_network.py::test_events_resume_from_a_checkpoint PASSED",
        "test_network.py::test_blocks_verify_and_agree_with_ordo PASSED",
    ] {
        assert!(output.contains(test), "{test} missing:\n{output}");
    }

    // The suite's transfer, seen by Ordo's own client through every org's peer.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the suite's report"))
            .expect("report is JSON");
    assert_eq!(report["code"], "VALID", "{report}");
    let net_arg = network_file.to_str().expect("utf8");
    for org in net.identities.keys() {
        for (account, balance) in [(&report["from"], "70"), (&report["to"], "50")] {
            let account = account.as_str().expect("account name");
            let got = run_ok(&[
                "tx",
                "query",
                "--network",
                net_arg,
                "--org",
                org,
                "--chaincode",
                "bank",
                "--fn",
                "balance",
                "--args",
                account,
            ]);
            assert_eq!(got.trim(), balance, "{account} through {org}'s peer");
        }
    }
    let verified = run_ok(&["block", "verify", "--network", net_arg]);
    assert!(verified.starts_with("OK: blocks 0..="), "{verified}");
}
