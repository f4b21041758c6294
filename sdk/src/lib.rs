//! # ordo-sdk: what an application needs to talk to an Ordo network
//!
//! - [`network`]: the `network.json` file that `ordo up` writes and every client command
//!   reads instead of spelling out addresses and identity files.
//! - [`config`]: `ORDO_` environment overrides of node configuration files.
//! - [`orderer`]: connecting to an orderer and building signed Deliver / Admin requests.
//! - [`pull`]: following or filling a chain from nodes not trusted — every block
//!   verified, failover and backoff (a peer's deliver client, an orderer's catch-up).
//! - [`chaincode`]: the `Chaincode` and `Context` traits and the built-in `kv` and `bank`.
//! - [`transport`], [`tls`]: opening channels to nodes, in plaintext or over mutual TLS.
//! - [`gateway`]: evaluate and submit chaincode transactions through a peer's Gateway.
//!
//! No RocksDB, no consensus: applications link this and nothing heavy.

pub mod chaincode;
pub mod config;
pub mod gateway;
pub mod network;
pub mod orderer;
pub mod pull;
pub mod tls;
pub mod transport;
pub mod tx;
