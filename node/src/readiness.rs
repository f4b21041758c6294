//! Readiness, evaluated in the background and answered from a cache.
//!
//! Whether a node is ready can take time to find out (a peer asks its orderers how high
//! the chain is; an orderer asks every chain). A probe must not: `/readyz` and the gRPC
//! health service answer from the last verdict at once, and a task re-evaluates it every
//! [`READINESS_INTERVAL`], each evaluation bounded by [`READINESS_TIMEOUT`] — a hung
//! orderer makes a peer "not ready (check timed out)", never a slow probe.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often readiness is re-evaluated.
pub const READINESS_INTERVAL: Duration = Duration::from_millis(500);
/// How long one evaluation may take before it counts as "not ready".
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// One evaluation: the problems found (none means ready).
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>;

/// The last verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Ready to serve.
    pub ready: bool,
    /// Why not, one line each.
    pub problems: Vec<String>,
}

impl Default for Verdict {
    fn default() -> Self {
        Self {
            ready: false,
            problems: vec!["starting: readiness not evaluated yet".into()],
        }
    }
}

/// The node's readiness, cached.
#[derive(Debug, Default)]
pub struct Readiness {
    verdict: RwLock<Verdict>,
}

impl Readiness {
    /// Starts evaluating `check` every [`READINESS_INTERVAL`] until `shutdown`.
    pub fn spawn(check: ReadinessCheck, shutdown: CancellationToken) -> Arc<Self> {
        let me = Arc::new(Self::default());
        let cache = me.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(READINESS_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        cache.set(vec!["shutting down".into()]);
                        return;
                    }
                    _ = tick.tick() => {}
                }
                let problems = match tokio::time::timeout(READINESS_TIMEOUT, check()).await {
                    Ok(p) => p,
                    Err(_) => vec![format!(
                        "readiness check timed out after {} ms",
                        READINESS_TIMEOUT.as_millis()
                    )],
                };
                cache.set(problems);
            }
        });
        me
    }

    fn set(&self, problems: Vec<String>) {
        let v = Verdict {
            ready: problems.is_empty(),
            problems,
        };
        match self.verdict.write() {
            Ok(mut g) => *g = v,
            Err(p) => *p.into_inner() = v,
        }
    }

    /// The last verdict.
    pub fn verdict(&self) -> Verdict {
        match self.verdict.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether the last verdict was "ready".
    pub fn is_ready(&self) -> bool {
        self.verdict().ready
    }
}
