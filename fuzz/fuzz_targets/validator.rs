#![no_main]
//! `cargo fuzz run validator`: see [`ordo_fuzz::targets::validator`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::validator::run(data));
