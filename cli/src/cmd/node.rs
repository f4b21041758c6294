//! `ordo node stop|kill|start|restart|status`: one node of a running `ordo up` network.
//!
//! `ordo up` spawned the node processes and is the only process that can wait for them,
//! restart them with the same command line, environment and log file, and keep the pids
//! in `network.json` true. So `ordo node` does not signal nodes itself: it asks the
//! running `ordo up` over a Unix socket beside the network file (`DIR/control.sock`),
//! one request line, one reply line:
//!
//! ```text
//! → stop orderer1
//! ← ok stopped orderer1 (exit status: 0)
//! → start orderer7
//! ← error no node "orderer7" in this network (nodes: orderer0, orderer1, orderer2)
//! ```
//!
//! This module holds both ends. Pure parts first: the protocol ([`Request`], [`Reply`])
//! and the restart policy of `ordo up --restart-on-crash` ([`CrashHistory`]). Then the
//! client (`ordo node ...`), and the supervisor that `ordo up` runs once its network is
//! ready ([`supervise`]): one task per node owns that node's process and is the only
//! one to touch it; a dispatcher routes requests to those tasks and writes their pids to
//! `network.json`. A node that exits without being asked is reported (which node, how it
//! ended, its log, how to start it again) and the others keep running.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use ordo_sdk::network::{Member, Network, NodeEntry};

/// The control socket's file name in the network directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// Longest request line, newline included. A request is an action and a node name.
const REQUEST_BYTES_MAX: usize = 256;

/// Longest reply line `ordo node` reads, newline included. Replies name a node, a status
/// and at most a handful of paths; a status reply lists every node (at most 9 orderers
/// and a peer per org).
const REPLY_BYTES_MAX: u64 = 64 * 1024;

/// How long a client may take to send its request line.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Control connections served at once; more are refused with an error reply.
const CONNECTIONS_MAX: usize = 8;

/// Requests waiting for one node (each node handles its requests one at a time: a
/// graceful stop can take 20 s); more are refused with "busy".
const NODE_QUEUE_MAX: usize = 4;

/// Requests waiting for the dispatcher.
const DISPATCH_QUEUE_MAX: usize = 16;

// ---------------------------------------------------------------------------------------
// Protocol (pure)
// ---------------------------------------------------------------------------------------

/// What can be done to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGTERM, then wait for the node to drain and exit (SIGKILL after 20 s).
    Stop,
    /// SIGKILL: a crash on purpose.
    Kill,
    /// Spawn the node again exactly as `ordo up` first did.
    Start,
    /// Stop, then start.
    Restart,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Kill => "kill",
            Action::Start => "start",
            Action::Restart => "restart",
        }
    }
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Act on the node called `name`.
    Node {
        /// What to do.
        action: Action,
        /// The node's name in `network.json`.
        name: String,
    },
    /// Every node's state, one line.
    Status,
}

impl Request {
    /// Parses a request line (without or with its newline).
    pub fn parse(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let action = match words.first().copied() {
            Some("stop") => Action::Stop,
            Some("kill") => Action::Kill,
            Some("start") => Action::Start,
            Some("restart") => Action::Restart,
            Some("status") if words.len() == 1 => return Ok(Request::Status),
            Some("status") => return Err("status takes no node name".into()),
            Some(other) => {
                return Err(format!(
                    "unknown request {other:?} (requests: stop|kill|start|restart NAME, status)"
                ))
            }
            None => return Err("empty request".into()),
        };
        match words.as_slice() {
            [_, name] => Ok(Request::Node {
                action,
                name: (*name).to_string(),
            }),
            _ => Err(format!("usage: {} NAME", action.word())),
        }
    }

    /// The request line, newline included.
    pub fn to_line(&self) -> String {
        match self {
            Request::Node { action, name } => format!("{} {name}\n", action.word()),
            Request::Status => "status\n".into(),
        }
    }
}

/// One reply line: `ok MESSAGE` or `error MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done; what happened.
    Ok(String),
    /// Not done; why, and what to do instead.
    Error(String),
}

impl Reply {
    /// The reply line, newline included; line breaks inside the message become "; " so
    /// that the reply stays one line.
    pub fn to_line(&self) -> String {
        let (word, msg) = match self {
            Reply::Ok(m) => ("ok", m),
            Reply::Error(m) => ("error", m),
        };
        let msg = msg
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        format!("{word} {msg}\n")
    }

    /// Parses a reply line.
    pub fn parse(line: &str) -> Result<Reply, String> {
        let line = line.trim_end_matches(['\r', '\n']);
        let (word, msg) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "ok" => Ok(Reply::Ok(msg.to_string())),
            "error" => Ok(Reply::Error(msg.to_string())),
            _ => Err(format!("not a reply: {line:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Restart policy (pure)
// ---------------------------------------------------------------------------------------

/// When `ordo up --restart-on-crash` starts a crashed node again: after a backoff that
/// doubles with every crash in a row, and not at all once a node keeps crashing soon
/// after it starts (a bad config or a port taken would otherwise restart forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart, in milliseconds.
    pub backoff_first_ms: u64,
    /// Longest wait before a restart, in milliseconds.
    pub backoff_max_ms: u64,
    /// A node that ran at least this long before it crashed had been healthy: its count
    /// of crashes in a row starts again at this crash. Milliseconds.
    pub healthy_after_ms: u64,
    /// Most crashes in a row (each within `healthy_after_ms` of the previous start) that
    /// are restarted; the next one is not.
    pub crashes_in_a_row_max: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            backoff_first_ms: 1_000,
            backoff_max_ms: 30_000,
            healthy_after_ms: 60_000,
            crashes_in_a_row_max: 5,
        }
    }
}

/// What to do about one crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashDecision {
    /// Start the node again after this long; this is crash `in_a_row` in a row.
    RestartAfter {
        /// The backoff.
        delay: Duration,
        /// Crashes in a row, this one included.
        in_a_row: u32,
    },
    /// Leave it stopped: it crashed `in_a_row` times in a row.
    GiveUp {
        /// Crashes in a row, this one included.
        in_a_row: u32,
    },
}

/// One node's recent crashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashHistory {
    in_a_row: u32,
}

impl CrashHistory {
    /// Records a crash after the node had run for `uptime` since its last start.
    pub fn on_crash(&mut self, policy: &RestartPolicy, uptime: Duration) -> CrashDecision {
        if uptime >= Duration::from_millis(policy.healthy_after_ms) {
            self.in_a_row = 0;
        }
        self.in_a_row = self.in_a_row.saturating_add(1);
        if self.in_a_row > policy.crashes_in_a_row_max {
            return CrashDecision::GiveUp {
                in_a_row: self.in_a_row,
            };
        }
        let doublings = (self.in_a_row - 1).min(32);
        let delay_ms = policy
            .backoff_first_ms
            .saturating_mul(1u64 << doublings)
            .min(policy.backoff_max_ms);
        CrashDecision::RestartAfter {
            delay: Duration::from_millis(delay_ms),
            in_a_row: self.in_a_row,
        }
    }

    /// Forgets the crashes: an operator started the node by hand.
    pub fn reset(&mut self) {
        self.in_a_row = 0;
    }
}

// ---------------------------------------------------------------------------------------
// Client: `ordo node ...`
// ---------------------------------------------------------------------------------------

/// `ordo node ...`
#[derive(Subcommand)]
pub enum NodeCommand {
    /// Stop a node gracefully: SIGTERM, drain, exit.
    ///
    /// SIGKILL if it has not exited after 20 s. It stays stopped, even under `ordo up
    /// --restart-on-crash`, until `ordo node start`.
    Stop(NodeArgs),
    /// Kill a node at once with SIGKILL, as a crash would.
    ///
    /// It keeps only what it had synced to disk. It stays stopped (killed on purpose, so
    /// never restarted by `--restart-on-crash`) until `ordo node start`.
    Kill(NodeArgs),
    /// Start a stopped or crashed node and wait until it answers.
    ///
    /// With the same command line, environment and log file as `ordo up` first used; it
    /// catches up from the other nodes.
    Start(NodeArgs),
    /// Stop a node gracefully, then start it again.
    Restart(NodeArgs),
    /// Show each node's state: running (with its pid), stopped, crashed, restart pending.
    Status(TargetArgs),
    /// Make a running node write a consistent backup of its channel ledgers.
    ///
    /// Into `<data_dir>/backups/NAME/` on the node. An Admin command: needs an admin of
    /// the node's org.
    Backup(Box<super::backup::BackupArgs>),
    /// Restore a backup into the empty data directory of a stopped or new node.
    ///
    /// Offline: no node is contacted. Every block is verified before it is put in place.
    Restore(super::backup::RestoreArgs),
}

/// A node of a running `ordo up`.
#[derive(Args)]
pub struct NodeArgs {
    /// The node's name, as `ordo up` prints it and `network.json` lists it: `orderer0`,
    /// `orderer1`, …, `peer0.BankA`, ….
    pub name: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Which running `ordo up` to ask.
#[derive(Args)]
pub struct TargetArgs {
    /// The network file of the running `ordo up`. `ordo up` listens on `control.sock` in
    /// the same directory; these commands work only while it runs.
    #[arg(long, env = "ORDO_NETWORK", default_value = ".ordo/network.json")]
    pub network: PathBuf,
    /// Give up waiting for `ordo up`'s answer after this many seconds. A graceful stop can
    /// take 20 s, and a start waits until the node answers (up to `ordo up
    /// --ready-timeout-s`).
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,
}

/// Runs `ordo node ...`: sends one request to the running `ordo up`, prints its answer,
/// and fails with its error.
pub async fn run(cmd: NodeCommand) -> anyhow::Result<()> {
    let (request, target) = match cmd {
        NodeCommand::Backup(a) => return super::backup::backup(*a).await,
        NodeCommand::Restore(a) => return super::backup::restore(a),
        NodeCommand::Stop(a) => (node_request(Action::Stop, a.name), a.target),
        NodeCommand::Kill(a) => (node_request(Action::Kill, a.name), a.target),
        NodeCommand::Start(a) => (node_request(Action::Start, a.name), a.target),
        NodeCommand::Restart(a) => (node_request(Action::Restart, a.name), a.target),
        NodeCommand::Status(t) => (Request::Status, t),
    };
    let net = Network::load(&target.network).with_context(|| {
        format!(
            "no usable network file at {}: start a network with `ordo up`, or say where its \
             file is with --network DIR/network.json",
            target.network.display()
        )
    })?;
    // Unknown names fail here, with the list, even when no `ordo up` is running.
    if let Request::Node { name, .. } = &request {
        net.node(name)?;
    }
    let dir = network_dir(&target.network);
    let reply = ask(
        &dir.join(CONTROL_SOCKET),
        &dir,
        &request,
        Duration::from_secs(target.timeout_s),
    )
    .await?;
    match reply {
        Reply::Ok(msg) if request == Request::Status => {
            for entry in msg.split("; ") {
                println!("{entry}");
            }
            Ok(())
        }
        Reply::Ok(msg) => {
            println!("{msg}");
            Ok(())
        }
        Reply::Error(msg) => bail!("{msg}"),
    }
}

fn node_request(action: Action, name: String) -> Request {
    Request::Node { action, name }
}

/// The directory of a network file (where its control socket is).
fn network_dir(network_file: &Path) -> PathBuf {
    match network_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Sends `request` to the `ordo up` listening on `socket` and reads its reply.
#[cfg(unix)]
async fn ask(
    socket: &Path,
    dir: &Path,
    request: &Request,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let not_running = || {
        format!(
            "no `ordo up` is running for the network in {dir} (nothing answers on {sock}); \
             start it with `ordo up --dir {dir}`, which starts every node",
            dir = dir.display(),
            sock = socket.display()
        )
    };
    let mut stream = match tokio::net::UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            bail!("{}", not_running())
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", socket.display())),
    };
    let exchange = async {
        stream.write_all(request.to_line().as_bytes()).await?;
        let mut line = String::new();
        tokio::io::BufReader::new(&mut stream)
            .take(REPLY_BYTES_MAX)
            .read_line(&mut line)
            .await?;
        Ok::<_, std::io::Error>(line)
    };
    let line = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "`ordo up` did not answer within {timeout:?} (--timeout-s); it may still be \
                 acting on the request: `ordo node status` shows where it is"
            )
        })?
        .with_context(|| format!("talking to `ordo up` on {}", socket.display()))?;
    if line.is_empty() {
        bail!(
            "`ordo up` closed the control connection without an answer (was it stopping?); {}",
            not_running()
        );
    }
    Reply::parse(&line).map_err(|e| anyhow::anyhow!("`ordo up` answered oddly: {e}"))
}

#[cfg(not(unix))]
async fn ask(
    _socket: &Path,
    _dir: &Path,
    _request: &Request,
    _timeout: Duration,
) -> anyhow::Result<Reply> {
    bail!("`ordo node` talks to `ordo up` over a Unix socket, which this platform lacks")
}

// ---------------------------------------------------------------------------------------
// Server: the control socket of `ordo up`
// ---------------------------------------------------------------------------------------

/// A request from a control connection, with where to send its reply.
type Inbound = (Request, oneshot::Sender<Reply>);

/// `ordo up`'s end of the control channel: the bound socket, served from the moment it is
/// bound (requests before the network is ready are answered "still starting"), and
/// removed when dropped.
pub struct ControlSocket {
    path: PathBuf,
    requests: mpsc::Receiver<Inbound>,
    serving: Arc<AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

/// Fails when another `ordo up` answers on `DIR/control.sock`: two supervisors of one
/// network would fight over its ports and ledgers. Removes a socket left by an `ordo up`
/// that was killed.
#[cfg(unix)]
pub fn refuse_second_supervisor(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(CONTROL_SOCKET);
    if !path.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        bail!(
            "another `ordo up` is already running the network in {} (it answers on {}); \
             stop it (Ctrl-C) before starting this one, or use another --dir",
            dir.display(),
            path.display()
        );
    }
    std::fs::remove_file(&path).with_context(|| format!("removing the stale {}", path.display()))
}

/// No control socket, so nothing to check, on this platform.
#[cfg(not(unix))]
pub fn refuse_second_supervisor(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

impl ControlSocket {
    /// Binds `DIR/control.sock` (after [`refuse_second_supervisor`]) and serves it.
    #[cfg(unix)]
    pub fn bind(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(CONTROL_SOCKET);
        let listener = tokio::net::UnixListener::bind(&path).with_context(|| {
            format!(
                "binding the control socket {} (Unix socket paths are limited to about 100 \
                 bytes: a shorter --dir helps)",
                path.display()
            )
        })?;
        // Whoever can connect can stop nodes: only the owner, like the keys beside it.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
        let (tx, requests) = mpsc::channel(DISPATCH_QUEUE_MAX);
        let serving = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn(accept_loop(listener, tx, serving.clone()));
        Ok(Self {
            path,
            requests,
            serving,
            accept,
        })
    }

    /// No control socket on this platform.
    #[cfg(not(unix))]
    pub fn bind(_dir: &Path) -> anyhow::Result<Self> {
        bail!("the control socket needs Unix domain sockets")
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
async fn accept_loop(
    listener: tokio::net::UnixListener,
    tx: mpsc::Sender<Inbound>,
    serving: Arc<AtomicBool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // EMFILE and the like: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let busy = Reply::Error(format!(
                    "`ordo up` is already serving {CONNECTIONS_MAX} control requests; try again"
                ));
                let _ = stream.write_all(busy.to_line().as_bytes()).await;
            });
            continue;
        };
        let tx = tx.clone();
        let serving = serving.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(stream, tx, serving).await;
        });
    }
}

/// Reads one request, hands it to the dispatcher, writes its reply.
#[cfg(unix)]
async fn serve_connection(
    mut stream: tokio::net::UnixStream,
    tx: mpsc::Sender<Inbound>,
    serving: Arc<AtomicBool>,
) {
    let mut line = String::new();
    let read = tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        tokio::io::BufReader::new(&mut stream)
            .take(REQUEST_BYTES_MAX as u64)
            .read_line(&mut line),
    )
    .await;
    let reply = match read {
        Err(_) => Reply::Error(format!("no request line within {REQUEST_READ_TIMEOUT:?}")),
        Ok(Err(e)) => Reply::Error(format!("reading the request: {e}")),
        Ok(Ok(_)) if !line.ends_with('\n') => Reply::Error(format!(
            "a request is one line of at most {REQUEST_BYTES_MAX} bytes"
        )),
        Ok(Ok(_)) => match Request::parse(&line) {
            Err(e) => Reply::Error(e),
            Ok(_) if !serving.load(Ordering::Acquire) => Reply::Error(
                "`ordo up` is starting or stopping the network; try again once it has printed \
                 its ready line"
                    .into(),
            ),
            Ok(req) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                if tx.send((req, reply_tx)).await.is_err() {
                    Reply::Error("`ordo up` is stopping".into())
                } else {
                    reply_rx
                        .await
                        .unwrap_or_else(|_| Reply::Error("`ordo up` is stopping".into()))
                }
            }
        },
    };
    let _ = stream.write_all(reply.to_line().as_bytes()).await;
}

// ---------------------------------------------------------------------------------------
// Supervisor
// ---------------------------------------------------------------------------------------

/// Where each node stands, as `ordo node status` shows it and `network.json`'s pid
/// records it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeState {
    /// Spawned, not yet answering.
    Starting { pid: u32 },
    /// Running and answered.
    Running { pid: u32 },
    /// Stopped or killed on purpose (`ordo node stop|kill`).
    Stopped,
    /// Exited without being asked; not being restarted.
    Crashed { status: String },
    /// Exited without being asked; `--restart-on-crash` starts it again soon.
    RestartPending { status: String },
    /// Crashed too often in a row; `--restart-on-crash` gave up on it.
    GaveUp { status: String, in_a_row: u32 },
}

impl NodeState {
    fn pid(&self) -> Option<u32> {
        match self {
            NodeState::Starting { pid } | NodeState::Running { pid } => Some(*pid),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            NodeState::Starting { pid } => format!("starting (pid {pid})"),
            NodeState::Running { pid } => format!("running (pid {pid})"),
            NodeState::Stopped => "stopped".into(),
            NodeState::Crashed { status } => format!("crashed ({status})"),
            NodeState::RestartPending { status } => {
                format!("crashed ({status}), restart pending")
            }
            NodeState::GaveUp { status, in_a_row } => format!(
                "crashed {in_a_row} times in a row (last: {status}), not restarted any more"
            ),
        }
    }
}

/// What the supervisor needs from `ordo up` once the network is ready.
pub struct Supervision {
    /// The network as written to `network.json`.
    pub network: Network,
    /// Where `network.json` is.
    pub network_path: PathBuf,
    /// Each node's process, in the order of `network.nodes`.
    pub children: Vec<Child>,
    /// The control socket (none when it could not be bound: the network runs without
    /// `ordo node`).
    pub control: Option<ControlSocket>,
    /// `Some` under `--restart-on-crash`.
    pub restart: Option<RestartPolicy>,
    /// How long a started node may take to answer.
    pub ready_timeout: Duration,
}

/// What every node task shares.
struct Shared {
    /// Each node's state. A std mutex: held only to read or write a value, never across
    /// an await.
    states: std::sync::Mutex<Vec<NodeState>>,
    /// Rung whenever a state changes (the dispatcher then rewrites `network.json`).
    changed: Notify,
    restart: Option<RestartPolicy>,
    network_path: PathBuf,
    ready_timeout: Duration,
}

impl Shared {
    fn set(&self, index: usize, state: NodeState) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states[index] = state;
        drop(states);
        self.changed.notify_one();
    }

    fn get(&self, index: usize) -> NodeState {
        self.states.lock().unwrap_or_else(|p| p.into_inner())[index].clone()
    }
}

/// A request for one node's task.
enum NodeCmd {
    Act(Action, oneshot::Sender<Reply>),
    /// `ordo up` is stopping: stop the node and end.
    Shutdown(oneshot::Sender<()>),
}

/// Runs the network until `shutdown` ([`stop_signal`]): reports (and under
/// `--restart-on-crash` restarts) nodes that exit unasked, serves `ordo node` requests,
/// keeps `network.json`'s pids current; then stops every node (peers first) and clears
/// the pids.
pub async fn supervise(
    s: Supervision,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let Supervision {
        mut network,
        network_path,
        children,
        control,
        restart,
        ready_timeout,
    } = s;
    assert_eq!(
        children.len(),
        network.nodes.len(),
        "one process per node of network.json"
    );
    let states = children
        .iter()
        .map(|c| match c.id() {
            Some(pid) => NodeState::Running { pid },
            None => NodeState::Crashed {
                status: "exited".into(),
            },
        })
        .collect();
    let shared = Arc::new(Shared {
        states: std::sync::Mutex::new(states),
        changed: Notify::new(),
        restart,
        network_path: network_path.clone(),
        ready_timeout,
    });
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let mut nodes: Vec<(mpsc::Sender<NodeCmd>, tokio::task::JoinHandle<()>)> = Vec::new();
    for (index, (entry, child)) in network.nodes.iter().zip(children).enumerate() {
        let admin = network
            .member(Some(&entry.org), "admin")
            .with_context(|| format!("loading the admin of {} for {}", entry.org, entry.name))?;
        let (tx, rx) = mpsc::channel(NODE_QUEUE_MAX);
        let task = NodeTask {
            index,
            entry: entry.clone(),
            admin,
            child: Some(child),
            started: Instant::now(),
            crashes: CrashHistory::default(),
            restart_at: None,
            shared: shared.clone(),
            stopping: stopping_rx.clone(),
        };
        nodes.push((tx, tokio::spawn(task.run(rx))));
    }

    let mut control = control;
    if let Some(c) = &control {
        c.serving.store(true, Ordering::Release);
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some((req, reply)) = next_request(&mut control) => {
                dispatch(req, reply, &network, &nodes, &shared);
            }
            _ = shared.changed.notified() => save_pids(&mut network, &network_path, &shared),
        }
    }
    say("stopping the network...".into());
    if let Some(c) = &control {
        c.serving.store(false, Ordering::Release);
    }
    // Interrupt any start waiting for its node to answer; then stop the peers before the
    // orderers they follow.
    let _ = stopping_tx.send(true);
    let order: Vec<usize> = (0..network.nodes.len())
        .filter(|&i| network.nodes[i].role == "peer")
        .chain((0..network.nodes.len()).filter(|&i| network.nodes[i].role != "peer"))
        .collect();
    for i in order {
        let (done_tx, done_rx) = oneshot::channel();
        if nodes[i].0.send(NodeCmd::Shutdown(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
    }
    for (_, task) in nodes {
        let _ = task.await;
    }
    drop(control);
    for n in &mut network.nodes {
        n.pid = None;
    }
    network
        .save(&network_path)
        .with_context(|| format!("clearing the pids in {}", network_path.display()))?;
    Ok(())
}

async fn next_request(control: &mut Option<ControlSocket>) -> Option<Inbound> {
    match control {
        Some(c) => c.requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Ctrl-C, SIGTERM, or the terminal going away (the nodes run in their own process
/// group, so neither a Ctrl-C in the terminal nor a hangup reaches them: `ordo up` must
/// stop them).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            tokio::select! {
                _ = crate::cmd::orderer::shutdown_signal() => {}
                _ = hup.recv() => {}
            }
            return;
        }
    }
    crate::cmd::orderer::shutdown_signal().await;
}

/// Routes one request: a status is answered here, a node request goes to its node's task
/// (which answers when done); never waits.
fn dispatch(
    req: Request,
    reply: oneshot::Sender<Reply>,
    network: &Network,
    nodes: &[(mpsc::Sender<NodeCmd>, tokio::task::JoinHandle<()>)],
    shared: &Shared,
) {
    let (action, name) = match req {
        Request::Status => {
            let states = shared.states.lock().unwrap_or_else(|p| p.into_inner());
            let lines: Vec<String> = network
                .nodes
                .iter()
                .zip(states.iter())
                .map(|(n, s)| format!("{:<14} {:<8} {}", n.name, n.role, s.describe()))
                .collect();
            let _ = reply.send(Reply::Ok(lines.join("; ")));
            return;
        }
        Request::Node { action, name } => (action, name),
    };
    let Some(index) = network.nodes.iter().position(|n| n.name == name) else {
        let _ = reply.send(Reply::Error(format!(
            "no node {name:?} in this network (nodes: {})",
            names(network)
        )));
        return;
    };
    match nodes[index].0.try_send(NodeCmd::Act(action, reply)) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(NodeCmd::Act(_, reply))) => {
            let _ = reply.send(Reply::Error(format!(
                "{name} is busy with {NODE_QUEUE_MAX} earlier requests; try again"
            )));
        }
        Err(mpsc::error::TrySendError::Closed(NodeCmd::Act(_, reply))) => {
            let _ = reply.send(Reply::Error("`ordo up` is stopping".into()));
        }
        Err(_) => {}
    }
}

fn names(network: &Network) -> String {
    network
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes every node's current pid to `network.json` (when one changed).
fn save_pids(network: &mut Network, path: &Path, shared: &Shared) {
    let pids: Vec<Option<u32>> = shared
        .states
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(NodeState::pid)
        .collect();
    let mut changed = false;
    for (n, pid) in network.nodes.iter_mut().zip(pids) {
        changed |= n.pid != pid;
        n.pid = pid;
    }
    if changed {
        if let Err(e) = network.save(path) {
            say(format!("WARNING: could not record the nodes' pids: {e}"));
        }
    }
}

/// One line to `ordo up`'s stderr. A failed write (the terminal is gone) is ignored: the
/// supervisor must not die of it.
fn say(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Why a start did not leave a ready node.
enum StartError {
    /// The node exited during start-up.
    Exited {
        exit: Option<ExitStatus>,
        error: String,
    },
    /// Anything else: the process may be running (not answering yet) or never spawned.
    Other(String),
}

/// The task that owns one node's process.
struct NodeTask {
    index: usize,
    entry: NodeEntry,
    admin: Member,
    child: Option<Child>,
    /// When the current (or last) process was spawned.
    started: Instant,
    crashes: CrashHistory,
    /// When `--restart-on-crash` starts the node again.
    restart_at: Option<Instant>,
    shared: Arc<Shared>,
    /// Becomes true when `ordo up` is stopping.
    stopping: watch::Receiver<bool>,
}

impl NodeTask {
    async fn run(mut self, mut commands: mpsc::Receiver<NodeCmd>) {
        loop {
            tokio::select! {
                status = exited(&mut self.child) => self.on_unasked_exit(status).await,
                () = sleep_until(self.restart_at) => self.auto_restart().await,
                cmd = commands.recv() => match cmd {
                    Some(NodeCmd::Act(action, reply)) => {
                        let answer = self.act(action).await;
                        let _ = reply.send(answer);
                    }
                    Some(NodeCmd::Shutdown(done)) => {
                        self.shut_down().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shut_down().await;
                        return;
                    }
                },
            }
        }
    }

    fn name(&self) -> &str {
        &self.entry.name
    }

    fn set(&self, state: NodeState) {
        self.shared.set(self.index, state);
    }

    /// How to bring this node back by hand.
    fn start_hint(&self) -> String {
        format!(
            "ordo node start {} --network {}",
            self.name(),
            self.shared.network_path.display()
        )
    }

    async fn shut_down(&mut self) {
        self.restart_at = None;
        if let Some(mut child) = self.child.take() {
            crate::cmd::up::stop(&mut child).await;
        }
        self.set(NodeState::Stopped);
    }

    /// The node exited without being asked: say so, and restart it if told to.
    async fn on_unasked_exit(&mut self, status: std::io::Result<ExitStatus>) {
        self.child = None;
        self.report_crash(status.ok(), "exited unexpectedly");
    }

    /// Says that the node died (`what`: how), and restarts it, or not, by the policy.
    fn report_crash(&mut self, exit: Option<ExitStatus>, what: &str) {
        let uptime = self.started.elapsed();
        let name = self.name().to_string();
        let status = describe_exit(exit);
        // A node that exits with an error code said why in its last log line (a bad
        // config, a port taken); after a signal the last line is just its last news.
        let last = crate::cmd::up::tail(&self.entry.log_file, 1);
        let log = if exit.and_then(|e| e.code()).is_some_and(|c| c != 0) && !last.is_empty() {
            format!(
                "{} (last line: {})",
                self.entry.log_file.display(),
                last.trim()
            )
        } else {
            self.entry.log_file.display().to_string()
        };
        let Some(policy) = self.shared.restart else {
            say(format!(
                "{name} {what} ({status}) after {:.1} s; the other nodes keep running. \
                 Its log: {log}. Bring it back with: {}",
                uptime.as_secs_f64(),
                self.start_hint()
            ));
            self.set(NodeState::Crashed { status });
            return;
        };
        match self.crashes.on_crash(&policy, uptime) {
            CrashDecision::RestartAfter { delay, in_a_row } => {
                say(format!(
                    "{name} {what} ({status}) after {:.1} s; the other nodes keep running. \
                     Its log: {log}. Restarting it in {:.1} s (--restart-on-crash; crash \
                     {in_a_row} of at most {} in a row)",
                    uptime.as_secs_f64(),
                    delay.as_secs_f64(),
                    policy.crashes_in_a_row_max
                ));
                self.restart_at = Some(Instant::now() + delay);
                self.set(NodeState::RestartPending { status });
            }
            CrashDecision::GiveUp { in_a_row } => {
                say(format!(
                    "{name} {what} ({status}) after {:.1} s: {in_a_row} crashes in a row, \
                     each within {} s of its start, so --restart-on-crash gives up on it; \
                     the other nodes keep running. Its log: {log}. Once fixed, start it \
                     with: {}",
                    uptime.as_secs_f64(),
                    policy.healthy_after_ms / 1000,
                    self.start_hint()
                ));
                self.set(NodeState::GaveUp { status, in_a_row });
            }
        }
    }

    async fn auto_restart(&mut self) {
        self.restart_at = None;
        if *self.stopping.borrow() {
            return; // `ordo up` is stopping: no new process now.
        }
        match self.start().await {
            Ok(pid) => say(format!(
                "restarted {} (pid {pid}) after its crash (--restart-on-crash)",
                self.name()
            )),
            Err(StartError::Exited { exit, .. }) => {
                self.report_crash(exit, "exited again during start-up");
            }
            Err(StartError::Other(e)) => {
                if self.child.is_none() {
                    // Never spawned (a port taken, …): no more tries, it stays down.
                    say(format!(
                        "could not restart {} after its crash: {e}; it stays down until: {}",
                        self.name(),
                        self.start_hint()
                    ));
                    self.set(NodeState::Crashed {
                        status: "its restart failed".into(),
                    });
                } else {
                    say(format!("restarting {} after its crash: {e}", self.name()));
                }
            }
        }
    }

    async fn act(&mut self, action: Action) -> Reply {
        let name = self.name().to_string();
        match action {
            Action::Start => {
                if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
                    return Reply::Error(format!(
                        "{name} is already running (pid {pid}); `ordo node restart {name}` \
                         stops and starts it"
                    ));
                }
                self.restart_at = None;
                self.crashes.reset();
                self.start_reply().await
            }
            Action::Stop | Action::Kill => {
                let Some(mut child) = self.child.take() else {
                    if self.restart_at.take().is_some() {
                        self.set(NodeState::Stopped);
                        return Reply::Ok(format!(
                            "{name} was not running (it crashed); its pending restart is \
                             cancelled"
                        ));
                    }
                    return Reply::Error(format!(
                        "{name} is not running ({}); `{}` starts it",
                        self.shared.get(self.index).describe(),
                        self.start_hint()
                    ));
                };
                let status = if action == Action::Stop {
                    crate::cmd::up::stop(&mut child).await
                } else {
                    kill(&mut child).await
                };
                self.set(NodeState::Stopped);
                let verb = if action == Action::Stop {
                    "stopped"
                } else {
                    "killed"
                };
                Reply::Ok(format!(
                    "{verb} {name} ({}); the other nodes keep running; `{}` brings it back",
                    describe_exit(status),
                    self.start_hint()
                ))
            }
            Action::Restart => {
                self.restart_at = None;
                self.crashes.reset();
                let stopped = match self.child.take() {
                    Some(mut child) => format!(
                        "stopped ({})",
                        describe_exit(crate::cmd::up::stop(&mut child).await)
                    ),
                    None => "was not running".into(),
                };
                self.set(NodeState::Stopped);
                match self.start_reply().await {
                    Reply::Ok(started) => Reply::Ok(format!("{name} {stopped}; {started}")),
                    Reply::Error(e) => Reply::Error(format!("{name} {stopped}; {e}")),
                }
            }
        }
    }

    /// Starts the node for an operator and words the outcome.
    async fn start_reply(&mut self) -> Reply {
        let name = self.name().to_string();
        match self.start().await {
            Ok(pid) => Reply::Ok(format!(
                "started {name} (pid {pid}), answering on {}; it catches up from the other \
                 nodes; log: {}",
                self.entry.grpc_addr,
                self.entry.log_file.display()
            )),
            Err(StartError::Exited { exit, error }) => {
                self.set(NodeState::Crashed {
                    status: describe_exit(exit),
                });
                Reply::Error(format!("starting {name}: {error}"))
            }
            Err(StartError::Other(e)) => Reply::Error(format!("starting {name}: {e}")),
        }
    }

    /// Spawns the node exactly as `ordo up` did and waits until it answers (or `ordo up`
    /// begins to stop).
    async fn start(&mut self) -> Result<u32, StartError> {
        let other = |e: anyhow::Error| StartError::Other(format!("{e:#}"));
        let hint = format!(
            "; is an old {} process still running, one this `ordo up` did not start?",
            self.name()
        );
        crate::cmd::up::check_ports_free(
            &self.entry.name,
            &self.entry.grpc_addr,
            &self.entry.ops_addr,
            &hint,
        )
        .map_err(other)?;
        let mut child =
            crate::cmd::up::spawn(&self.entry.command, &self.entry.log_file).map_err(other)?;
        let pid = child.id().unwrap_or(0);
        self.started = Instant::now();
        self.set(NodeState::Starting { pid });
        let ready = {
            tokio::select! {
                r = crate::cmd::up::wait_ready(
                    &self.entry.name,
                    &self.entry.grpc_addr,
                    &self.admin,
                    &mut child,
                    &self.entry.log_file,
                    self.shared.ready_timeout,
                ) => Some(r),
                () = until_stopping(self.stopping.clone()) => None,
            }
        };
        match ready {
            Some(Ok(_)) => {
                self.child = Some(child);
                self.set(NodeState::Running { pid });
                Ok(pid)
            }
            None => {
                // `ordo up` is stopping; its shutdown stops this process.
                self.child = Some(child);
                Err(StartError::Other("`ordo up` is stopping".into()))
            }
            Some(Err(e)) => match child.try_wait() {
                Ok(Some(status)) => Err(StartError::Exited {
                    exit: Some(status),
                    error: format!("{e:#}"),
                }),
                _ => {
                    // Still running, not answering yet: keep it; it may be catching up.
                    self.child = Some(child);
                    self.set(NodeState::Running { pid });
                    Err(StartError::Other(format!(
                        "{e:#} (it is still running as pid {pid}; `ordo node stop {}` stops it)",
                        self.name()
                    )))
                }
            },
        }
    }
}

/// SIGKILL and wait.
async fn kill(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.start_kill();
    child.wait().await.ok()
}

fn describe_exit(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => s.to_string(),
        None => "exit status unknown".into(),
    }
}

/// Resolves when the node's process exits; never while there is none.
async fn exited(child: &mut Option<Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

/// Resolves once `ordo up` is stopping.
async fn until_stopping(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// Resolves at `at`; never when `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_say_why() {
        for req in [
            Request::Node {
                action: Action::Stop,
                name: "orderer1".into(),
            },
            Request::Node {
                action: Action::Kill,
                name: "peer0.BankA".into(),
            },
            Request::Node {
                action: Action::Start,
                name: "orderer0".into(),
            },
            Request::Node {
                action: Action::Restart,
                name: "orderer2".into(),
            },
            Request::Status,
        ] {
            assert_eq!(Request::parse(&req.to_line()), Ok(req));
        }
        for (line, why) in [
            ("", "empty request"),
            ("stop\n", "usage: stop NAME"),
            ("kill a b\n", "usage: kill NAME"),
            ("status orderer0", "status takes no node name"),
            (
                "reboot orderer0",
                "unknown request \"reboot\" (requests: stop|kill|start|restart NAME, status)",
            ),
        ] {
            assert_eq!(Request::parse(line), Err(why.to_string()), "{line:?}");
        }
    }

    #[test]
    fn replies_stay_one_line() {
        let r = Reply::Error("starting orderer1: it exited\n  last lines:\nbind: in use\n".into());
        let line = r.to_line();
        assert_eq!(
            line,
            "error starting orderer1: it exited; last lines:; bind: in use\n"
        );
        assert_eq!(
            Reply::parse(&line),
            Ok(Reply::Error(
                "starting orderer1: it exited; last lines:; bind: in use".into()
            ))
        );
        assert_eq!(
            Reply::parse("ok stopped orderer1\n"),
            Ok(Reply::Ok("stopped orderer1".into()))
        );
        assert!(Reply::parse("maybe\n").is_err());
    }

    #[test]
    fn backoff_doubles_then_gives_up_on_fast_crashes() {
        let policy = RestartPolicy::default();
        let mut h = CrashHistory::default();
        let fast = Duration::from_secs(1);
        let delays: Vec<CrashDecision> = (0..6).map(|_| h.on_crash(&policy, fast)).collect();
        let after = |s: u64, n: u32| CrashDecision::RestartAfter {
            delay: Duration::from_secs(s),
            in_a_row: n,
        };
        assert_eq!(
            delays,
            vec![
                after(1, 1),
                after(2, 2),
                after(4, 3),
                after(8, 4),
                after(16, 5),
                CrashDecision::GiveUp { in_a_row: 6 },
            ]
        );
    }

    #[test]
    fn a_healthy_run_or_a_manual_start_forgets_earlier_crashes() {
        let policy = RestartPolicy::default();
        let mut h = CrashHistory::default();
        let fast = Duration::from_secs(1);
        for _ in 0..4 {
            h.on_crash(&policy, fast);
        }
        let healthy = Duration::from_millis(policy.healthy_after_ms);
        assert_eq!(
            h.on_crash(&policy, healthy),
            CrashDecision::RestartAfter {
                delay: Duration::from_secs(1),
                in_a_row: 1
            }
        );
        h.on_crash(&policy, fast);
        h.reset();
        assert_eq!(
            h.on_crash(&policy, fast),
            CrashDecision::RestartAfter {
                delay: Duration::from_secs(1),
                in_a_row: 1
            }
        );
    }

    #[test]
    fn backoff_is_capped() {
        let policy = RestartPolicy {
            crashes_in_a_row_max: 100,
            ..RestartPolicy::default()
        };
        let mut h = CrashHistory::default();
        let mut last = None;
        for _ in 0..50 {
            last = Some(h.on_crash(&policy, Duration::ZERO));
        }
        assert_eq!(
            last,
            Some(CrashDecision::RestartAfter {
                delay: Duration::from_millis(policy.backoff_max_ms),
                in_a_row: 50
            })
        );
    }
}
