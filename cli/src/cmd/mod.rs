//! One module per top-level command.

pub mod backup;
pub mod bench;
pub mod block;
pub mod bundle;
pub mod chaincode;
pub mod channel;
pub mod config;
pub mod consenter;
pub mod crypto;
pub mod events;
pub mod kafka;
pub mod ledger;
pub mod lifecycle;
pub mod node;
pub mod orderer;
pub mod org;
pub mod peer;
pub mod probe;
pub mod snapshot;
pub mod tx;
pub mod up;
pub mod update;
