#![no_main]
//! `cargo fuzz run chain_verifier`: see [`ordo_fuzz::targets::chain_verifier`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::chain_verifier::run(data));
