//! The control protocol between `ordo node` and `ordo up` (one request line, one reply
//! line) and the restart policy of `ordo up --restart-on-crash`: the pure parts.

use super::*;

/// Longest request line, newline included. A request is an action and a node name.
pub(super) const REQUEST_BYTES_MAX: usize = 256;

/// Longest reply line `ordo node` reads, newline included. Replies name a node, a status
/// and at most a handful of paths; a status reply lists every node (at most 9 orderers
/// and a peer per org).
pub(super) const REPLY_BYTES_MAX: u64 = 64 * 1024;

/// How long a client may take to send its request line.
pub(super) const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Control connections served at once; more are refused with an error reply.
pub(super) const CONNECTIONS_MAX: usize = 8;

/// Requests waiting for one node (each node handles its requests one at a time: a
/// graceful stop can take 20 s); more are refused with "busy".
pub(super) const NODE_QUEUE_MAX: usize = 4;

/// Requests waiting for the dispatcher.
pub(super) const DISPATCH_QUEUE_MAX: usize = 16;

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
