//! `/healthz`, `/readyz` and `/metrics` for the peer.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use ordo_node::certinfo::CertMetrics;
use ordo_node::{ListenerMetrics, Readiness};
use tokio::net::TcpListener;

use super::channels::PeerChannels;

/// How long one orderer may take to tell a channel's height during a readiness check.
const ORDERER_HEIGHT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(600);

/// What the operations handlers read.
#[derive(Clone)]
struct OpsState {
    channels: Arc<PeerChannels>,
    listener: Arc<ListenerMetrics>,
    readiness: Arc<Readiness>,
    certs: Arc<CertMetrics>,
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

pub(super) async fn serve(
    listener: TcpListener,
    channels: Arc<PeerChannels>,
    grpc_listener: Arc<ListenerMetrics>,
    readiness: Arc<Readiness>,
    certs: Arc<CertMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(OpsState {
            channels,
            listener: grpc_listener,
            readiness,
            certs,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// 200 unless a channel's follower stopped on an error it cannot repair.
async fn healthz(State(channels): State<Arc<PeerChannels>>) -> impl IntoResponse {
    let failed: Vec<String> = channels
        .list()
        .iter()
        .filter_map(|c| {
            c.status()
                .failed
                .map(|f| format!("{{\"channel\":\"{}\",\"reason\":{:?}}}", c.id(), f))
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

/// Why the peer is not ready: a channel stopped, or more than `max_lag_blocks` behind the
/// ordering service's height (asked of the orderers with a signed Deliver for the newest
/// block), or no orderer answers; or one of its own certificates is not valid now.
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
    use ordo_proto::pb::orderer::{deliver_response, SeekBehavior};
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
            match stream.next().await?.ok()?.r#type? {
                deliver_response::Type::Block(b) => Some(ordo_proto::block::number(&b) + 1),
                deliver_response::Type::Status(_) => None,
            }
        };
        if let Ok(Some(h)) = tokio::time::timeout(ORDERER_HEIGHT_TIMEOUT, ask).await {
            return Some(h);
        }
    }
    None
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    let channels = state.channels;
    let mut out = String::new();
    let mut emit = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(
            out,
            "# HELP ordo_peer_{name} {help}\n# TYPE ordo_peer_{name} {kind}"
        );
        for (labels, v) in rows {
            let _ = writeln!(out, "ordo_peer_{name}{{{labels}}} {v}");
        }
    };
    let list = channels.list();
    let label = |c: &str| format!("channel=\"{c}\"");
    emit(
        "ledger_height",
        "gauge",
        "Committed blocks",
        list.iter()
            .map(|c| (label(c.id()), c.status().height))
            .collect(),
    );
    emit(
        "transactions_valid_total",
        "counter",
        "VALID transactions committed since start",
        list.iter()
            .map(|c| (label(c.id()), c.status().valid_txs))
            .collect(),
    );
    let mut invalid = Vec::new();
    for c in &list {
        for (code, n) in c.status().invalid_txs {
            invalid.push((format!("channel=\"{}\",code=\"{code}\"", c.id()), n));
        }
    }
    emit(
        "transactions_invalid_total",
        "counter",
        "Invalid transactions committed since start, by code",
        invalid,
    );
    emit(
        "blocks_committed_total",
        "counter",
        "Blocks validated and committed since start",
        list.iter()
            .map(|c| (label(c.id()), c.status().blocks_committed))
            .collect(),
    );
    let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    emit(
        "block_verify_microseconds_total",
        "counter",
        "Time spent verifying blocks from orderers (hash chain, Merkle root, signatures)",
        list.iter()
            .map(|c| (label(c.id()), micros(c.deliver_stats.verify_time())))
            .collect(),
    );
    emit(
        "block_validate_microseconds_total",
        "counter",
        "Time spent validating transactions (signatures, policies, MVCC)",
        list.iter()
            .map(|c| (label(c.id()), micros(c.status().validate_time)))
            .collect(),
    );
    emit(
        "block_commit_microseconds_total",
        "counter",
        "Time spent writing blocks with their state, fsync included",
        list.iter()
            .map(|c| (label(c.id()), micros(c.status().write_time)))
            .collect(),
    );
    emit(
        "deliver_blocks_verified_total",
        "counter",
        "Blocks received from orderers that verified",
        list.iter()
            .map(|c| (label(c.id()), c.deliver_stats.snapshot().blocks_verified))
            .collect(),
    );
    emit(
        "deliver_verification_failures_total",
        "counter",
        "Blocks refused: hash chain, data hash or orderer signatures did not verify",
        list.iter()
            .map(|c| {
                (
                    label(c.id()),
                    c.deliver_stats.snapshot().verification_failures,
                )
            })
            .collect(),
    );
    let mut registry = prometheus_client::registry::Registry::with_prefix("ordo_peer");
    state.listener.register(&mut registry);
    state.certs.register(&mut registry);
    let mut transport = String::new();
    if prometheus_client::encoding::text::encode_registry(&mut transport, &registry).is_ok() {
        out.push_str(&transport);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
}
