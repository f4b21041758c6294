#![no_main]
//! `cargo fuzz run query`: see [`ordo_fuzz::targets::query`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::query::run(data));
