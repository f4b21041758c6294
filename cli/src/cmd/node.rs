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

mod control;
mod protocol;
mod task;
pub use control::*;
pub use protocol::*;
use task::*;

/// The control socket's file name in the network directory.
pub const CONTROL_SOCKET: &str = "control.sock";

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

#[cfg(test)]
mod tests;
