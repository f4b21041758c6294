#![no_main]
//! `cargo fuzz run discovery`: see [`ordo_fuzz::targets::discovery`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::discovery::run(data));
