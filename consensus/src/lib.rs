//! # ordo-consensus: the consenter boundary, the block cutter and the backends
//!
//! The orderer validates envelopes and hands them to the channel's [`chain::Chain`]; the
//! backend orders them, cuts blocks with the deterministic [`cutter::BlockCutter`] and
//! writes them through [`support::ChainSupport`], which signs and appends them to the
//! channel's ledger and tells committed-mode waiters.
//!
//! - [`catch_up`]: filling a ledger up to a known block from other nodes' ledgers (the
//!   orderer side of `ordo_sdk::pull`, the one pull-verify-retry loop).
//! - [`chain`]: the `Chain` trait, `OrderRequest`, `ChainError`.
//! - [`consenter`]: the `Consenter` trait and the map of them by consensus type that the
//!   orderer builds its chains from.
//! - [`cutter`]: the pure block cutter.
//! - [`filters`]: the envelope checks (size, header, creator, signature, Writers policy).
//! - [`configtx`]: CONFIG_UPDATE → CONFIG envelope.
//! - [`support`]: `ChainSupport` and the configuration in force.
//! - [`writer`]: the one block-writer loop of the solo and kafka backends.
//! - [`waiters`]: the bounded, expiring registry of committed-mode waiters.
//! - [`solo`]: the single-node backend: a pure engine ([`solo::engine`]: cutter, timer,
//!   config blocks) driven by a cutter task and the block writer.
//! - [`raft`]: the crash-fault-tolerant backend on raft-rs: a pure engine
//!   ([`raft::engine`], `step(Input) -> Vec<Command>`) and a thin driver that executes its
//!   commands against RocksDB, the transport and the waiters.
//!
//! [`start_chain`] starts a solo channel without an orderer (tests and tools).

use std::sync::Arc;

pub mod catch_up;
pub mod chain;
pub mod configtx;
pub mod consenter;
pub mod cutter;
pub mod filters;
pub mod kafka;
pub mod raft;
pub mod solo;
pub mod support;
#[cfg(test)]
mod testing;
pub mod tx_key;
pub mod waiters;
pub mod writer;

pub use chain::{Chain, ChainError, ChainStatus, ClusterMember, OrderRequest};
pub use consenter::{Consenter, Consenters};
pub use support::{ChainSupport, ConfigState};

/// Starts the backend the channel's configuration names, among the backends that need
/// nothing from the node (solo). The orderer builds its own [`consenter::Consenters`] with
/// every backend; this is for tests and tools that order on one process.
pub fn start_chain(support: Arc<ChainSupport>) -> Result<Arc<dyn Chain>, ChainError> {
    let mut consenters = consenter::Consenters::new();
    consenters.register(Arc::new(solo::SoloConsenter::default()));
    let kind = support.state().consensus_type().to_string();
    consenters
        .get(&kind)?
        .handle_chain(support, tokio_util::sync::CancellationToken::new())
}
