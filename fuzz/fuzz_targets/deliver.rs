#![no_main]
//! `cargo fuzz run deliver`: see [`ordo_fuzz::targets::deliver`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::deliver::run(data));
