//! # ordo-orderer: the orderer node
//!
//! A node serves any number of channels, each with its own ledger and chain. Clients use
//! the AtomicBroadcast service (Broadcast to submit, Deliver to read blocks) and admins the
//! Admin service (join, list, remove, info). Operators scrape `/metrics` and probe
//! `/healthz` on a separate operations port.
//!
//! - [`config`]: the TOML node configuration with `ORDO_` overrides.
//! - [`registry`]: the channels, joined from genesis blocks and reopened at start.
//! - [`broadcast`], [`deliver`], [`admin`]: the services; [`inflight`]: the byte budget
//!   for Broadcast envelopes received and not yet checked.
//! - [`cluster`]: orderer to orderer for raft channels (the Cluster service and its client).
//! - [`metrics`], [`ops`]: Prometheus metrics and the operations endpoint.
//! - [`server::run`]: everything together, until a shutdown future resolves.

pub mod admin;
pub mod atomic;
pub mod auth;
pub mod broadcast;
pub mod cluster;
pub mod config;
pub mod deliver;
pub mod faults;
pub mod inflight;
pub mod metrics;
pub mod ops;
pub mod recent;
pub mod registry;
pub mod server;
pub mod status;

pub use config::OrdererConfig;
pub use server::{run, OrdererError};
