//! The operations endpoint over plain HTTP: `GET /healthz` (liveness), `GET /readyz`
//! (readiness) and `GET /metrics`.
//!
//! Liveness and readiness are different questions with different consequences: a failed
//! liveness probe restarts the process, a failed readiness probe only takes it out of
//! rotation. A raft follower that knows no leader during an election is alive and must
//! not be restarted (a restart would only make the election slower), so "no leader" is a
//! readiness problem; `/healthz` answers 200 while the process serves requests.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use ordo_node::Readiness;

use crate::metrics::Metrics;
use crate::registry::Registry;

#[derive(Clone)]
struct Ops {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    /// Serialises the refresh of counters from running totals, so that two concurrent
    /// scrapes cannot both add the same difference.
    refresh: Arc<std::sync::Mutex<()>>,
}

/// Serves the operations endpoint on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Ops {
            registry,
            metrics,
            readiness,
            refresh: Arc::new(std::sync::Mutex::new(())),
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Liveness: 200 with `{"status":"OK",...}` while the process serves; the body also says
/// whether it is ready and why not, for a human reading it. 503 with `"UNAVAILABLE"` and
/// the faults when a channel's ledger found corruption in its stored data: restarting
/// does not repair a ledger, but a supervisor or an operator must notice (the remedy is
/// in `ordo_ledger::fault::REMEDY` and the node's log).
async fn healthz(State(ops): State<Ops>) -> impl IntoResponse {
    let v = ops.readiness.verdict();
    let channels = ops.registry.list();
    let faults: Vec<String> = channels
        .iter()
        .filter_map(|ch| ch.support.ledger().fault())
        .map(|f| format!("ledger corrupt: {f}"))
        .collect();
    let (code, status) = if faults.is_empty() {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
    };
    let body = format!(
        "{{\"status\":\"{status}\",\"channels\":{},\"ready\":{},\"problems\":{},\"failed_checks\":{}}}\n",
        channels.len(),
        v.ready,
        json_strings(&v.problems),
        json_strings(&faults)
    );
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

/// Readiness: 200 when the last evaluation (see [`readiness_problems`]) found nothing
/// wrong, 503 naming the problems otherwise; answered from the cache, at once.
async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    let v = ops.readiness.verdict();
    let (code, status) = if v.ready {
        (StatusCode::OK, "READY")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
    };
    let body = format!(
        "{{\"status\":\"{status}\",\"failed_checks\":{}}}\n",
        json_strings(&v.problems)
    );
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

fn json_strings(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|p| format!("\"{}\"", p.replace('\\', "\\\\").replace('"', "'")))
        .collect();
    format!("[{}]", quoted.join(","))
}

/// Why the orderer is not ready: a channel whose chain cannot order now (no raft leader,
/// kafka brokers unreachable, ...) or whose ledger found corruption, or one of its own
/// certificates not valid now.
pub async fn readiness_problems(
    registry: Arc<Registry>,
    identity: ordo_proto::identity::Identity,
    tls: Option<Arc<ordo_node::NodeTls>>,
) -> Vec<String> {
    let mut problems = ordo_node::certinfo::own_cert_problems(
        &identity,
        tls.as_deref(),
        ordo_node::certinfo::now_s(),
    );
    for ch in registry.list() {
        if let Some(fault) = ch.support.ledger().fault() {
            problems.push(format!("ledger corrupt: {fault}"));
        }
        if let Err(e) = ch.chain.wait_ready().await {
            problems.push(format!("channel {}: {e}", ch.id()));
        }
    }
    problems
}

/// Moves a counter up to `total` (counters only go up; the source is a running total).
fn catch_up(
    counter: &prometheus_client::metrics::counter::Counter<u64, std::sync::atomic::AtomicU64>,
    total: u64,
) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

/// Every metric, refreshed from the channels' running totals, in the format the scraper
/// asks for (see [`ordo_node::metrics::Format::negotiate`]).
async fn metrics_text(State(ops): State<Ops>, headers: HeaderMap) -> impl IntoResponse {
    let format = ordo_node::metrics::Format::negotiate(
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
    let guard = ops.refresh.lock().unwrap_or_else(|p| p.into_inner());
    for ch in ops.registry.list() {
        let labels = Metrics::channel(ch.id());
        ops.metrics
            .ledger_height
            .get_or_create(&labels)
            .set(ch.support.height());
        ops.metrics
            .config_sequence
            .get_or_create(&labels)
            .set(ch.support.sequence());
        ops.metrics
            .ledger_corrupt
            .get_or_create(&labels)
            .set(u64::from(ch.support.ledger().fault().is_some()));
        ops.metrics
            .commit_waiters
            .get_or_create(&labels)
            .set(ch.support.commit_waiters() as u64);
        let ledger = ch.support.ledger();
        ops.metrics
            .ledger_first_block
            .get_or_create(&labels)
            .set(ledger.first_block());
        if let Ok(bytes) = ledger.chain_bytes() {
            ops.metrics
                .ledger_chain_bytes
                .get_or_create(&labels)
                .set(bytes);
        }
        catch_up(
            &ops.metrics.ledger_pruned_blocks.get_or_create(&labels),
            ledger.prune_status().blocks,
        );
        let scrub = ledger.scrub_status();
        catch_up(
            &ops.metrics.ledger_scrub_passes.get_or_create(&labels),
            scrub.passes,
        );
        catch_up(
            &ops.metrics.ledger_scrubbed_bytes.get_or_create(&labels),
            scrub.bytes,
        );
        let stats = ch.support.stats();
        catch_up(
            &ops.metrics.blocks_written.get_or_create(&labels),
            stats.blocks(),
        );
        catch_up(
            &ops.metrics.envelopes_written.get_or_create(&labels),
            stats.envelopes(),
        );
        let secs = ops.metrics.block_write_seconds.get_or_create(&labels);
        let delta = stats.write_time().as_secs_f64() - secs.get();
        if delta > 0.0 {
            secs.inc_by(delta);
        }
        for sample in ch.chain.metrics() {
            if let Some(family) = ops.metrics.backend.get(sample.name) {
                family.record(&labels, sample.value);
            }
        }
    }
    drop(guard);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        ops.metrics.render(format),
    )
}
