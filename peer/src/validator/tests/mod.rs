//! Validator tests: a fixture consortium, one test per code, config blocks, properties.

mod codes;
mod config;
mod fixture;
mod props;
