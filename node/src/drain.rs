//! Graceful stop with a bound: a node asked to stop ends its own streams and lets the
//! requests in flight finish, but a client that keeps a stream open must not keep the
//! process alive past `[connections] drain_timeout_s` (an orchestrator would SIGKILL it
//! and the node would lose the chance to close its ledgers cleanly).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How a server future ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained<T> {
    /// The server returned (on its own, or after the stop once every connection closed).
    Finished(T),
    /// Connections were still open `drain` after the stop; the server was dropped,
    /// closing them.
    TimedOut,
}

/// Runs `serve` (a server that stops accepting and drains when `shutdown` is cancelled)
/// and waits at most `drain` for it after `shutdown` is cancelled.
pub async fn serve_with_drain<F: Future>(
    serve: F,
    shutdown: CancellationToken,
    drain: Duration,
) -> Drained<F::Output> {
    tokio::pin!(serve);
    tokio::select! {
        out = &mut serve => return Drained::Finished(out),
        _ = shutdown.cancelled() => {}
    }
    info!(timeout = ?drain, "draining connections");
    match tokio::time::timeout(drain, serve).await {
        Ok(out) => Drained::Finished(out),
        Err(_) => {
            warn!(timeout = ?drain, "connections still open after the drain timeout; closing them");
            Drained::TimedOut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_drains_in_time_finishes() {
        let token = CancellationToken::new();
        let t = token.clone();
        let serve = async move {
            t.cancelled().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            7
        };
        token.cancel();
        let out = serve_with_drain(serve, token, Duration::from_secs(5)).await;
        assert_eq!(out, Drained::Finished(7));
    }

    #[tokio::test]
    async fn a_stream_that_never_ends_is_cut_at_the_drain_timeout() {
        let token = CancellationToken::new();
        let serve = std::future::pending::<()>();
        token.cancel();
        let out = serve_with_drain(serve, token, Duration::from_millis(20)).await;
        assert_eq!(out, Drained::TimedOut);
    }

    #[tokio::test]
    async fn a_server_that_returns_before_the_stop_is_not_waited_for() {
        let token = CancellationToken::new();
        let out = serve_with_drain(async { 1 }, token, Duration::from_secs(10)).await;
        assert_eq!(out, Drained::Finished(1));
    }
}
