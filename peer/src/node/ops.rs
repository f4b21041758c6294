//! `/healthz`, `/readyz` and `/metrics` for the peer.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::channels::PeerChannels;

pub(super) async fn serve(
    listener: TcpListener,
    channels: Arc<PeerChannels>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(channels);
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

/// 200 once every channel's follower has received a block from an orderer since start
/// (so the peer is connected and following), 503 before.
async fn readyz(State(channels): State<Arc<PeerChannels>>) -> impl IntoResponse {
    let waiting: Vec<String> = channels
        .list()
        .iter()
        .filter(|c| c.status().failed.is_some() || c.deliver_stats.snapshot().blocks_verified == 0)
        .map(|c| c.id().to_string())
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not following yet: {}\n", waiting.join(", ")),
        )
    }
}

async fn metrics(State(channels): State<Arc<PeerChannels>>) -> impl IntoResponse {
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
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
}
