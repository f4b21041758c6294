#![no_main]
//! `cargo fuzz run envelope`: see [`ordo_fuzz::targets::envelope`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::envelope::run(data));
