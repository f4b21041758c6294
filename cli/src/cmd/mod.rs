//! One module per top-level command.

pub mod bench;
pub mod block;
pub mod chaincode;
pub mod channel;
pub mod consenter;
pub mod crypto;
pub mod events;
pub mod kafka;
pub mod orderer;
pub mod peer;
pub mod tx;
pub mod up;
