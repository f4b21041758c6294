//! The chaincodes compiled into the peer, named `builtin:<name>` in a channel's chaincode
//! definitions. They are also plain [`Chaincode`] implementations, so an external
//! chaincode server can serve the very same logic through the shim.

use std::sync::Arc;

use super::Chaincode;

pub mod bank;
pub mod kv;

/// The built-in chaincode called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Arc<dyn Chaincode>> {
    match name {
        "kv" => Some(Arc::new(kv::Kv)),
        "bank" => Some(Arc::new(bank::Bank)),
        _ => None,
    }
}

/// Names of the built-in chaincodes.
pub const NAMES: [&str; 2] = ["kv", "bank"];
