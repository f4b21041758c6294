#![no_main]
//! `cargo fuzz run config_update`: see [`ordo_fuzz::targets::config_update`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::config_update::run(data));
