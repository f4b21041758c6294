#![no_main]
//! `cargo fuzz run raft_message`: see [`ordo_fuzz::targets::raft_message`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| ordo_fuzz::targets::raft_message::run(data));
