//! # ordo-consensus: the consenter boundary, the block cutter and the backends
//!
//! The orderer validates envelopes and hands them to the channel's [`chain::Chain`]; the
//! backend orders them, cuts blocks with the deterministic [`cutter::BlockCutter`] and
//! writes them through [`support::ChainSupport`], which signs and appends them to the
//! channel's ledger and tells committed-mode waiters.
//!
//! - [`chain`]: the `Chain` trait, `OrderRequest`, `ChainError`.
//! - [`cutter`]: the pure block cutter.
//! - [`filters`]: the envelope checks (size, header, creator, signature, Writers policy).
//! - [`configtx`]: CONFIG_UPDATE → CONFIG envelope.
//! - [`support`]: `ChainSupport` and the configuration in force.
//! - [`solo`]: the single-node backend.
//! - [`raft`]: the crash-fault-tolerant backend on raft-rs.
//!
//! [`start_chain`] picks the backend named by the channel configuration.

use std::sync::Arc;

pub mod chain;
pub mod configtx;
pub mod cutter;
pub mod filters;
pub mod kafka;
pub mod raft;
pub mod solo;
pub mod support;

pub use chain::{Chain, ChainError, ChainStatus, OrderRequest};
pub use support::{ChainSupport, ConfigState};

/// Starts the backend the channel's configuration names.
pub fn start_chain(support: Arc<ChainSupport>) -> Result<Arc<dyn Chain>, ChainError> {
    let state = support.state();
    match state.consensus_type() {
        "solo" => Ok(solo::SoloChain::start(
            support,
            solo::SoloOptions::default(),
        )),
        other => Err(ChainError::Unsupported(format!(
            "consensus type {other:?} is not available in this build"
        ))),
    }
}
