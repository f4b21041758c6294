//! Validator tests: a fixture consortium, one test per code, config blocks, properties.

mod codes;
pub(crate) mod config;
mod expiry;
pub(crate) mod fixture;
mod props;
mod serializable;
