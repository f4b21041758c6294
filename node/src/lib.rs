//! # ordo-node: what the orderer and the peer share as network-facing processes
//!
//! Both nodes face networks their org does not control, so both need the same shell
//! around their services; this crate is that shell, written once:
//!
//! - [`tls`]: the node's TLS key pair (reloaded on SIGHUP and when its files change, so
//!   certificates rotate without a restart), the listener's rustls configuration (TLS 1.3,
//!   mutual TLS by default) and the client transport the node uses to reach other nodes;
//!   the `[tls]` and `[connections]` config sections.
//! - [`trust`]: whom the node trusts — the TLS roots of the channels it serves, learned
//!   from their config blocks, plus its own org's — and which certificates config revoked.
//! - [`listener`]: the gRPC listener: connection caps (per node, per client identity),
//!   a handshake deadline, plaintext-on-TLS detection, refusals counted and logged.
//! - [`pool`]: one cached, lazily connecting gRPC channel per endpoint the node calls.
//! - [`reachability`]: one clear log line for a configured endpoint that cannot be
//!   reached (and one when it answers).
//! - [`readiness`]: readiness evaluated in the background, answered at once from a cache.
//! - [`health`]: the standard gRPC health service, SERVING only while the node is ready.
//! - [`reflection`]: gRPC server reflection over Ordo's protocol.
//! - [`data_dir`]: the data directory proven writable before the node starts.
//! - [`drain`]: a graceful stop bounded by `[connections] drain_timeout_s`.
//! - [`certinfo`]: what a certificate says (subject, hosts, validity) for logs, metrics
//!   and expiry warnings.
//! - [`metrics`]: the one metrics implementation — `prometheus-client` registries, the
//!   exposition format negotiated per scrape (classic text unless OpenMetrics is asked
//!   for), `ordo_build_info`, and the latency buckets both nodes use.
//!
//! It sits below `ordo-orderer` and `ordo-peer` and imports neither: each node plugs its
//! own services, health and metrics into it.

pub mod certinfo;
pub mod data_dir;
pub mod decode_errors;
pub mod drain;
pub mod health;
pub mod ledger_section;
pub mod listener;
pub mod metrics;
pub mod pool;
pub mod reachability;
pub mod readiness;
pub mod reflection;
pub mod stream_budget;
pub mod tls;
pub mod trust;

pub use decode_errors::DecodeErrorLayer;
pub use drain::{serve_with_drain, Drained};
pub use ledger_section::LedgerSection;
pub use listener::{
    incoming, memory_listener, GrpcListener, ListenerLimits, ListenerMetrics, MemoryConnector,
    PeerInfo,
};
pub use pool::ClientPool;
pub use readiness::Readiness;
pub use tls::{ConnectionsSection, NodeTls, TlsSection};
pub use trust::{ChannelTrust, TrustStore};
