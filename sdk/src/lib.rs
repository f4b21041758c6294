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
//! - [`gateway`]: evaluate and submit chaincode transactions through a peer's Gateway,
//!   follow chaincode events — **start here** for an application (its docs walk through
//!   connect → submit → evaluate → events; `examples/bank_client.rs` is a whole client).
//! - [`lifecycle`]: define, upgrade and retire chaincodes on a running channel, each org
//!   approving with its own admin; [`gateway::Gateway::peers`] shows what discovery sees.
//! - [`tx`]: building endorser transactions step by step (proposal, endorsement,
//!   assembly), for clients that sign elsewhere and for load generators.
//!
//! No RocksDB, no consensus: applications link this and nothing heavy.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let network = ordo_sdk::network::Network::load(".ordo/network.json".as_ref())?;
//! let gateway = ordo_sdk::gateway::Gateway::for_org(&network, "BankA", "client").await?;
//! let bank = gateway.contract("ordo-channel", "bank");
//! bank.submit("open", ["alice", "100"]).await?;
//! # Ok(())
//! # }
//! ```

pub mod chaincode;
pub mod config;
pub mod gateway;
pub mod lifecycle;
pub mod network;
pub mod orderer;
pub mod pull;
pub mod tls;
pub mod transport;
pub mod tx;
