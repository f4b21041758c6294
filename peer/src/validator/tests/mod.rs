//! Validator tests: a fixture consortium, one test per code, config blocks, properties.

mod codes;
pub(crate) mod config;
pub(crate) mod fixture;
mod props;
mod serializable;
