//! Whether the endpoints a node's config names can be reached at all.
//!
//! A peer's config names other orgs' peers (`[gateway] endorsers`) and fallback orderers
//! (`[deliver] orderer_endpoints`). A typo in a host name or a port, or a firewall in the
//! way, would otherwise show only as failed client requests much later. So the node
//! checks each configured endpoint once it starts: an endpoint that cannot be reached gets
//! one WARN line naming the config key, the endpoint and the reason (name resolution or
//! TCP connect), and one INFO line when it answers later; the node itself keeps running
//! (the other side may simply not be up yet). Only reachability is checked: TLS trust of
//! another org's node comes from the channel configs, which may not be joined yet.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// First wait between attempts on an unreachable endpoint; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long one attempt (resolve and connect) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks every endpoint of `endpoints` (named by the config key `key`, e.g. `[gateway]
/// endorsers`) in the background until each has answered once or `token` is cancelled.
pub fn spawn_watch(key: &'static str, endpoints: Vec<String>, token: CancellationToken) {
    for endpoint in endpoints {
        let token = token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = watch(key, &endpoint) => {}
            }
        });
    }
}

/// Returns once `endpoint` accepts a TCP connection, logging as the module docs say.
async fn watch(key: &'static str, endpoint: &str) {
    let mut delay = FIRST_RETRY;
    let mut first_failure: Option<std::time::Instant> = None;
    loop {
        match attempt(endpoint).await {
            Ok(()) => {
                if let Some(since) = first_failure {
                    info!(
                        "{key} endpoint {endpoint} answers now (unreachable for {} s)",
                        since.elapsed().as_secs()
                    );
                }
                return;
            }
            Err(why) => {
                if first_failure.is_none() {
                    first_failure = Some(std::time::Instant::now());
                    warn!(
                        "{key} endpoint {endpoint} cannot be reached: {why}; requests that \
                         need it fail until it answers (checking again in the background; \
                         one more line when it answers)"
                    );
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// Resolves `endpoint` and opens (then closes) a TCP connection to it.
pub async fn attempt(endpoint: &str) -> Result<(), String> {
    let connect = async {
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(endpoint)
            .await
            .map_err(|e| format!("cannot resolve the address: {e}"))?
            .collect();
        let mut last = String::from("the name resolves to no address");
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("connecting to {addr}: {e}"),
            }
        }
        Err(last)
    };
    match tokio::time::timeout(ATTEMPT_TIMEOUT, connect).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {} s (a firewall dropping packets, or a host that is down)",
            ATTEMPT_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listening_endpoint_is_reachable_and_a_closed_or_unknown_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listener.local_addr().expect("addr").to_string();
        assert_eq!(attempt(&open).await, Ok(()));
        drop(listener);
        let closed = attempt(&open).await.expect_err("nobody listens");
        assert!(closed.contains(&open), "{closed}");
        let unknown = attempt("no-such-host.invalid:7051")
            .await
            .expect_err("unresolvable");
        assert!(unknown.contains("resolve"), "{unknown}");
    }
}
