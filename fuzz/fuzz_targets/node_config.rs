#![no_main]
//! `cargo fuzz run node_config`: see [`ordo_fuzz::targets::node_config`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::node_config::run(data));
