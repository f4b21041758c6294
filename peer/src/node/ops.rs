//! `/healthz`, `/readyz` and `/metrics` for the peer.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use ordo_node::metrics::Format;
use ordo_node::Readiness;
use tokio::net::TcpListener;

use super::channels::PeerChannels;
use super::metrics::PeerMetrics;

/// How long one orderer may take to tell a channel's height during a readiness check.
const ORDERER_HEIGHT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(600);

/// What the operations handlers read.
#[derive(Clone)]
struct OpsState {
    channels: Arc<PeerChannels>,
    metrics: Arc<PeerMetrics>,
    readiness: Arc<Readiness>,
}

impl FromRef<OpsState> for Arc<Readiness> {
    fn from_ref(state: &OpsState) -> Self {
        state.readiness.clone()
    }
}

impl FromRef<OpsState> for Arc<PeerChannels> {
    fn from_ref(state: &OpsState) -> Self {
        state.channels.clone()
    }
}

/// Serves the operations endpoint on `listener` until `shutdown` resolves.
pub(super) async fn serve(
    listener: TcpListener,
    channels: Arc<PeerChannels>,
    metrics: Arc<PeerMetrics>,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(OpsState {
            channels,
            metrics,
            readiness,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// 200 unless a channel's follower stopped on an error it cannot repair, or its ledger
/// found corruption in its stored data (`ordo_ledger::fault`; the remedy is in the log).
async fn healthz(State(channels): State<Arc<PeerChannels>>) -> impl IntoResponse {
    let failed: Vec<String> = channels
        .list()
        .iter()
        .flat_map(|c| {
            let stopped = c.status().failed;
            let corrupt = c.ledger().fault().map(|f| format!("ledger corrupt: {f}"));
            [stopped, corrupt]
                .into_iter()
                .flatten()
                .map(|why| format!("{{\"channel\":\"{}\",\"reason\":{:?}}}", c.id(), why))
                .collect::<Vec<_>>()
        })
        .collect();
    let code = if failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if failed.is_empty() {
        "OK"
    } else {
        "UNAVAILABLE"
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            "{{\"status\":\"{status}\",\"failed_checks\":[{}]}}\n",
            failed.join(",")
        ),
    )
}

/// 200 when the last readiness evaluation found nothing wrong (see
/// [`readiness_problems`]), 503 with the problems otherwise; answered from the cache, at
/// once.
async fn readyz(State(readiness): State<Arc<Readiness>>) -> impl IntoResponse {
    let v = readiness.verdict();
    if v.ready {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", v.problems.join("; ")),
        )
    }
}

/// Why the peer is not ready: a channel stopped or its ledger found corruption, or more
/// than `max_lag_blocks` behind the ordering service's height (asked of the orderers with
/// a signed Deliver for the newest block), or no orderer answers; or one of its own
/// certificates is not valid now.
pub(super) async fn readiness_problems(
    channels: Arc<PeerChannels>,
    tls: Option<Arc<ordo_node::NodeTls>>,
) -> Vec<String> {
    let mut lagging = ordo_node::certinfo::own_cert_problems(
        &channels.settings().identity,
        tls.as_deref(),
        ordo_node::certinfo::now_s(),
    );
    for c in channels.list() {
        let st = c.status();
        if let Some(f) = &st.failed {
            lagging.push(format!("{}: stopped: {f}", c.id()));
            continue;
        }
        if let Some(fault) = c.ledger().fault() {
            lagging.push(format!("ledger corrupt: {fault}"));
        }
        match orderer_height(&channels, c.id(), &st.config).await {
            Some(h) if h.saturating_sub(st.height) <= channels.settings().max_lag_blocks => {}
            Some(h) => lagging.push(format!("{}: height {} of {h}", c.id(), st.height)),
            None => lagging.push(format!("{}: no orderer reachable", c.id())),
        }
    }
    lagging
}

/// The channel's height on the first orderer that answers, each asked for at most
/// [`ORDERER_HEIGHT_TIMEOUT`].
async fn orderer_height(
    channels: &PeerChannels,
    channel: &str,
    config: &ordo_proto::pb::common::ChannelConfig,
) -> Option<u64> {
    use ordo_proto::pb::orderer::SeekBehavior;
    use tokio_stream::StreamExt;
    let settings = channels.settings();
    let mut endpoints = crate::deliver::channel_endpoints(config);
    endpoints.extend(settings.static_endpoints.iter().cloned());
    for ep in endpoints {
        let ask = async {
            let ch = settings.pool.get(&ep).ok()?;
            let mut client = ordo_sdk::orderer::broadcast_client(ch);
            let newest = ordo_sdk::orderer::position(None);
            let req = ordo_sdk::orderer::seek_request(
                &settings.identity,
                channel,
                newest,
                Some(newest),
                SeekBehavior::FailIfNotReady,
            );
            let mut stream = client.deliver(req).await.ok()?.into_inner();
            let block = stream.next().await?.ok()?.block?;
            Some(ordo_proto::block::number(&block) + 1)
        };
        if let Ok(Some(h)) = tokio::time::timeout(ORDERER_HEIGHT_TIMEOUT, ask).await {
            return Some(h);
        }
    }
    None
}

/// Every metric (see [`super::metrics`]) in the format the scraper asks for.
async fn metrics_text(State(state): State<OpsState>, headers: HeaderMap) -> impl IntoResponse {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        state.metrics.render(format),
    )
}
