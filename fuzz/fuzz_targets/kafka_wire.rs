#![no_main]
//! `cargo fuzz run kafka_wire`: see [`ordo_fuzz::targets::kafka_wire`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::kafka_wire::run(data));
