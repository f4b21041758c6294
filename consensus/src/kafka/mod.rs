//! The Kafka backend: every orderer produces the envelopes it accepts to one partition
//! per channel and cuts blocks from what it consumes there, so all orderers build the
//! same chain. [`core`] is the deterministic part (messages in, blocks out), [`wire`] the
//! bytes on the partition and in a block's metadata; the driver that talks to the
//! brokers builds on them.

pub mod broker;
pub mod core;
pub mod wire;
