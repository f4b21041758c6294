//! Real `ordo` processes: start, crash (SIGKILL), stop (SIGTERM), pause (SIGSTOP),
//! resume (SIGCONT), restart with the same config and data; running `ordo` commands; free
//! local ports for their listeners. The CLI's integration tests and the chaos sweep both
//! drive nodes through this, so a node is started, signalled and diagnosed one way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use thiserror::Error;

/// Why a process could not be run.
#[derive(Debug, Error)]
pub enum ProcError {
    /// The `ordo` binary is missing and could not be built.
    #[error("the ordo binary is not available: {0}")]
    NoBinary(String),
    /// Spawning failed.
    #[error("starting {what}: {source}")]
    Spawn {
        /// What was started.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("`ordo {args}` failed: {output}")]
    Failed {
        /// Its arguments.
        args: String,
        /// Its stdout and stderr.
        output: String,
    },
}

/// The `ordo` binary the tests run: `ORDO_BIN` when set; otherwise the one next to the
/// test executable (`target/<profile>/ordo`, which `cargo test --workspace` builds),
/// building it with `cargo build -p ordo` when it is missing.
pub fn ordo_bin() -> Result<PathBuf, ProcError> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(find_or_build)
        .clone()
        .map_err(ProcError::NoBinary)
}

fn find_or_build() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("ORDO_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/deps/<test> -> target/<profile>/ordo
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test executable path {}", exe.display()))?;
    let bin = profile_dir.join("ordo");
    if bin.exists() {
        return Ok(bin);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "ordo",
        "--features",
        "ordo-orderer/test-faults",
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() || !bin.exists() {
        return Err(format!(
            "`cargo build -p ordo` did not produce {}",
            bin.display()
        ));
    }
    Ok(bin)
}

/// Runs `ordo args...` to completion; returns stdout.
pub fn run_ordo(args: &[&str]) -> Result<String, ProcError> {
    let out = Command::new(ordo_bin()?)
        .args(args)
        .output()
        .map_err(|source| ProcError::Spawn {
            what: format!("ordo {}", args.join(" ")),
            source,
        })?;
    stdout_if_success(&args.join(" "), &out)
}

/// [`run_ordo`] without blocking the runtime: scenarios run `ordo` commands (certificate
/// renewals, consenter updates) while the load and the nemesis keep going on the same two
/// worker threads, and a command may wait tens of seconds for a leader. The command is
/// killed when the returned future is dropped (a caller's timeout), like an operator's
/// Ctrl-C.
pub async fn run_ordo_async(args: &[String]) -> Result<String, ProcError> {
    let out = tokio::process::Command::new(ordo_bin()?)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| ProcError::Spawn {
            what: format!("ordo {}", args.join(" ")),
            source,
        })?;
    stdout_if_success(&args.join(" "), &out)
}

/// A finished command's stdout, or [`ProcError::Failed`] with everything it printed.
fn stdout_if_success(args: &str, out: &std::process::Output) -> Result<String, ProcError> {
    if !out.status.success() {
        return Err(ProcError::Failed {
            args: args.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sends `sig` to `pid`.
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with plain integers on a child we spawned and have not reaped.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A node process: its command line, log and state.
#[derive(Debug)]
pub struct NodeProc {
    /// The node's name (`orderer0`, `peer1`, ...).
    pub name: String,
    /// `orderer` or `peer`.
    pub kind: &'static str,
    /// Its config file.
    pub config: PathBuf,
    /// Its log file (stdout and stderr, appended across restarts).
    pub log: PathBuf,
    /// Extra environment (e.g. `ORDO_TEST_FAULT`).
    pub env: Vec<(String, String)>,
    /// The binary to run instead of [`ordo_bin`]'s (a test crate's `CARGO_BIN_EXE_ordo`).
    pub bin: Option<PathBuf>,
    child: Option<Child>,
    paused: bool,
}

impl NodeProc {
    /// A node that is not running yet.
    pub fn new(name: &str, kind: &'static str, config: PathBuf, log: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            kind,
            config,
            log,
            env: Vec::new(),
            bin: None,
            child: None,
            paused: false,
        }
    }

    /// Starts the process (no-op while it runs; a process that exited on its own is
    /// reaped and started again).
    pub fn start(&mut self) -> Result<(), ProcError> {
        if self.is_running() {
            return Ok(());
        }
        if let Some(mut exited) = self.child.take() {
            let _ = exited.wait();
        }
        let spawn_err = |source| ProcError::Spawn {
            what: self.name.clone(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(spawn_err)?;
        let log2 = log.try_clone().map_err(spawn_err)?;
        let bin = match &self.bin {
            Some(bin) => bin.clone(),
            None => ordo_bin()?,
        };
        let mut cmd = Command::new(bin);
        cmd.args([self.kind, "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().map_err(spawn_err)?);
        self.paused = false;
        Ok(())
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is running (possibly paused).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// If the process ended on its own (not by [`NodeProc::kill`] or [`NodeProc::stop`],
    /// which reap it themselves), reaps it and says how it ended.
    pub fn reap_if_exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        self.paused = false;
        Some(status)
    }

    /// The line of the log that says why the process died: the last panic message, or
    /// else the last error (a `tracing` ERROR line or the binary's final `error:` line;
    /// empty when there is neither).
    pub fn last_words(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if let Some(i) = lines.iter().rposition(|l| l.contains("panicked at")) {
            let message = lines.get(i + 1).copied().unwrap_or_default();
            return format!("{} {}", lines[i].trim(), message.trim());
        }
        lines
            .iter()
            .rev()
            .find(|l| l.contains("ERROR") || l.starts_with("error:"))
            .map(|l| l.trim().to_string())
            .unwrap_or_default()
    }

    /// Sends SIGHUP, on which a node re-reads its TLS key pair (certificate rotation
    /// without a restart). Returns whether a process was there to receive it.
    pub fn hangup(&mut self) -> bool {
        if !self.is_running() {
            return false;
        }
        match self.child.as_ref() {
            Some(c) => {
                signal(c.id(), libc::SIGHUP);
                true
            }
            None => false,
        }
    }

    /// How many lines of the log contain `marker` (the log is kept across restarts, so a
    /// caller compares counts before and after an action to see whether it happened).
    pub fn log_count(&self, marker: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(marker))
            .count()
    }

    /// Whether it is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// SIGKILL: a crash. Nothing is flushed that was not synced.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// SIGTERM and wait: a graceful stop. Returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        self.stop_status().is_none_or(|s| s.success())
    }

    /// SIGTERM and wait; how it ended (`None` when it was not running; a failed wait
    /// reads as not successful).
    pub fn stop_status(&mut self) -> Option<std::process::ExitStatus> {
        self.resume();
        let mut c = self.child.take()?;
        signal(c.id(), libc::SIGTERM);
        Some(c.wait().unwrap_or_else(|_| {
            use std::os::unix::process::ExitStatusExt;
            std::process::ExitStatus::from_raw(1 << 8)
        }))
    }

    /// SIGSTOP: the process freezes (a long GC pause, a stalled VM).
    pub fn pause(&mut self) {
        if let Some(c) = self.child.as_ref() {
            signal(c.id(), libc::SIGSTOP);
            self.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if let Some(c) = self.child.as_ref() {
            if self.paused {
                signal(c.id(), libc::SIGCONT);
            }
        }
        self.paused = false;
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` consecutive free ports on 127.0.0.1 below Linux's ephemeral range (32768–60999), so
/// that no outgoing connection of another test can take one between this check and the
/// node's bind (for `ordo up`, which uses base, base+1, ...). Test binaries run one after
/// another, each from its own offset (process id and clock), and a process hands out
/// distinct ranges in turn.
///
/// # Panics
/// When no run of `n` free ports is found in 1,000 tries.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // One offset per process: successive calls walk distinct ranges (a fresh offset per
    // call could hand out a port an earlier call returned and nobody has bound yet).
    static SEED: OnceLock<u32> = OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        std::process::id().wrapping_mul(7919)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
    });
    for _ in 0..1000 {
        let k = NEXT.fetch_add(u32::from(n) + 1, Ordering::Relaxed);
        let base = LOW + (seed.wrapping_add(k.wrapping_mul(37)) % (SPAN - u32::from(n)));
        let Ok(base) = u16::try_from(base) else {
            continue;
        };
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports below the ephemeral range");
}

/// One free port (see [`free_ports`]).
pub fn free_port() -> u16 {
    free_ports(1)
}
