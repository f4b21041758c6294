#![no_main]
//! `cargo fuzz run proposal`: see [`ordo_fuzz::targets::proposal`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::proposal::run(data));
