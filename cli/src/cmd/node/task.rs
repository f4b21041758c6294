//! One node's task under the supervisor: the only owner of that node's process, which
//! starts, stops, kills and restarts it and reports how it ended.

use super::*;

/// Why a start did not leave a ready node.
pub(super) enum StartError {
    /// The node exited during start-up.
    Exited {
        exit: Option<ExitStatus>,
        error: String,
    },
    /// Anything else: the process may be running (not answering yet) or never spawned.
    Other(String),
}

/// The task that owns one node's process.
pub(super) struct NodeTask {
    pub(super) index: usize,
    pub(super) entry: NodeEntry,
    pub(super) admin: Member,
    pub(super) child: Option<Child>,
    /// When the current (or last) process was spawned.
    pub(super) started: Instant,
    pub(super) crashes: CrashHistory,
    /// When `--restart-on-crash` starts the node again.
    pub(super) restart_at: Option<Instant>,
    pub(super) shared: Arc<Shared>,
    /// Becomes true when `ordo up` is stopping.
    pub(super) stopping: watch::Receiver<bool>,
}

impl NodeTask {
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<NodeCmd>) {
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
pub(super) async fn kill(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.start_kill();
    child.wait().await.ok()
}

pub(super) fn describe_exit(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => s.to_string(),
        None => "exit status unknown".into(),
    }
}

/// Resolves when the node's process exits; never while there is none.
pub(super) async fn exited(child: &mut Option<Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

/// Resolves once `ordo up` is stopping.
pub(super) async fn until_stopping(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// Resolves at `at`; never when `None`.
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
