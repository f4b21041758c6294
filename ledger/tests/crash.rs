//! Crash test: SIGKILL a process while it appends blocks, then check that every block it
//! acknowledged survived, that the chain and the tx index are intact, and that the store
//! accepts the next block. Three kills, at different points, on the same ledger.
//!
//! The child is this same test binary, re-executed to run only
//! [`crash_child_append_loop`] with [`CHILD_DIR_ENV`] set. It prints `appended N` after
//! each `append` of block `N` returns, so a printed line is an acknowledgement: the parent
//! counts lines (no sleeping) and kills the child while it is still appending.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use ordo_ledger::BlockStore;

/// Set (to the ledger directory) only in the child process.
const CHILD_DIR_ENV: &str = "ORDO_LEDGER_CRASH_CHILD_DIR";
/// The child's test name, as given to `--exact`.
const CHILD_TEST: &str = "crash_child_append_loop";
/// Appends per child run at most, so a child whose parent died cannot run forever.
const CHILD_APPENDS_MAX: u64 = 100_000;
/// After how many acknowledgements each round kills its child.
const KILL_AFTER_ACKS: [u64; 3] = [200, 237, 311];

/// The child side: appends blocks forever (up to [`CHILD_APPENDS_MAX`]) and acknowledges
/// each on stdout. A no-op unless [`CHILD_DIR_ENV`] is set, i.e. in a normal test run.
#[test]
fn crash_child_append_loop() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let store = BlockStore::open(Path::new(&dir)).expect("child: open");
    let mut out = std::io::stdout().lock();
    for _ in 0..CHILD_APPENDS_MAX {
        let n = store.height();
        // 0..7 envelopes, and every fifth block repeats a tx id of the block before, so
        // the index's first-location rule is exercised across the crash too.
        let mut ids: Vec<String> = (0..n % 7).map(|i| format!("tx-{n}-{i}")).collect();
        if n % 5 == 0 && n > 0 {
            ids.push(format!("tx-{}-0", n - 1));
        }
        let block = common::next_block(&store, &ids);
        store.append(&block).expect("child: append");
        if writeln!(out, "appended {n}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return; // the parent is gone
        }
    }
}

#[test]
fn sigkill_while_appending_loses_no_acknowledged_block() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ledger = tmp.path().join("ledger");
    let exe = std::env::current_exe().expect("own test binary");

    for (round, kill_after) in KILL_AFTER_ACKS.into_iter().enumerate() {
        let stderr_path = tmp.path().join(format!("child-{round}.stderr"));
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, &ledger)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");

        let mut acks = 0u64;
        let mut last_acked: Option<u64> = None;
        let mut killed = false;
        // Keep reading after the kill: lines already in the pipe are acknowledgements too.
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read child stdout");
            let Some(n) = line.strip_prefix("appended ") else {
                continue; // libtest's own output
            };
            let n: u64 = n.trim().parse().expect("block number");
            if let Some(prev) = last_acked {
                assert_eq!(n, prev + 1, "acknowledgements are consecutive");
            }
            last_acked = Some(n);
            acks += 1;
            if acks == kill_after {
                // `Child::kill` is `kill(pid, SIGKILL)` on Unix: no unwinding, no
                // destructors, RocksDB gets no chance to flush or close.
                child.kill().expect("SIGKILL the child");
                killed = true;
            }
        }
        let status = child.wait().expect("wait for child");
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert!(
            killed,
            "round {round}: child ended after {acks} acks ({status}): {stderr}"
        );
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: {status}: {stderr}"
        );
        let last_acked = last_acked.expect("some acknowledgements");

        let store = BlockStore::open(&ledger).expect("reopen after SIGKILL");
        let height = store.height();
        assert!(
            height > last_acked,
            "round {round}: block {last_acked} was acknowledged but the height is {height}"
        );
        common::verify_ledger(&store);

        let next = common::next_block(&store, &[format!("parent-{height}")]);
        store.append(&next).expect("append after the crash");
        assert_eq!(store.height(), height + 1);
        assert_eq!(
            store
                .tx_location(&format!("parent-{height}"))
                .expect("read"),
            Some(ordo_ledger::TxLocation {
                block: height,
                index: 0,
                code: None,
                timestamp_ms: None,
            })
        );
        eprintln!(
            "round {round}: killed after {kill_after} acks; {acks} acks read, last acked \
             block {last_acked}, recovered height {height}"
        );
    }
}
