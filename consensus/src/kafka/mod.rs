//! The Kafka backend: every orderer produces the envelopes it accepts to one partition
//! per channel and cuts blocks from what it consumes there, so all orderers build the
//! same chain. [`core`] is the deterministic part (messages in, blocks out); the driver
//! that talks to the brokers builds on it.

pub mod core;
