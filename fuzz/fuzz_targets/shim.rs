#![no_main]
//! `cargo fuzz run shim`: see [`ordo_fuzz::targets::shim`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::shim::run(data));
