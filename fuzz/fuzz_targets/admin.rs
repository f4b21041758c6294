#![no_main]
//! `cargo fuzz run admin`: see [`ordo_fuzz::targets::admin`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::admin::run(data));
