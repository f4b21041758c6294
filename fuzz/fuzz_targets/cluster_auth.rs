#![no_main]
//! `cargo fuzz run cluster_auth`: see [`ordo_fuzz::targets::cluster_auth`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::cluster_auth::run(data));
