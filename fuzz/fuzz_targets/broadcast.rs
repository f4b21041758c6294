#![no_main]
//! `cargo fuzz run broadcast`: see [`ordo_fuzz::targets::broadcast`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::broadcast::run(data));
