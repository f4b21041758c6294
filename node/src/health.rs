//! The standard gRPC health service (`grpc.health.v1.Health`), following readiness.
//!
//! Load balancers, Kubernetes' gRPC probes and `grpc_health_probe` ask this service, not
//! the node's HTTP endpoints. Every service name the node serves, and the overall status
//! (the empty name), answer SERVING only while the node is ready — the same rule as
//! `/readyz` — and NOT_SERVING otherwise, so traffic goes elsewhere while a node catches
//! up, has no leader, or has a certificate that expired.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::server::{health_reporter, HealthReporter};
use tonic_health::ServingStatus;

pub use tonic_health::pb::health_server::HealthServer;

/// How often readiness is re-evaluated for the health service.
pub const HEALTH_REFRESH: Duration = Duration::from_millis(500);

/// What decides readiness: called every [`HEALTH_REFRESH`].
pub type ReadinessProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// The health service and the task that keeps it in step with `ready`. `services`: the
/// fully qualified names of the node's gRPC services (e.g. `ordo.orderer.AtomicBroadcast`).
pub async fn serve_health(
    services: &[&'static str],
    ready: ReadinessProbe,
    shutdown: CancellationToken,
) -> HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, server) = health_reporter();
    let names: Vec<&'static str> = services.to_vec();
    // The first evaluation before the service is handed out, so it never answers before
    // one (the reporter itself starts with the overall status SERVING).
    let first = ready();
    set_all(&reporter, &names, serving_status(first)).await;
    tokio::spawn(async move {
        let mut last = Some(first);
        let mut tick = tokio::time::interval(HEALTH_REFRESH);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    set_all(&reporter, &names, ServingStatus::NotServing).await;
                    return;
                }
                _ = tick.tick() => {}
            }
            let now = ready();
            if last != Some(now) {
                set_all(&reporter, &names, serving_status(now)).await;
                last = Some(now);
            }
        }
    });
    server
}

async fn set_all(reporter: &HealthReporter, names: &[&'static str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

fn serving_status(ready: bool) -> ServingStatus {
    if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}
