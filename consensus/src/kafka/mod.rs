//! The Kafka backend: every orderer produces the envelopes it accepts to one partition
//! per channel and cuts blocks from what it consumes there, so all orderers build the
//! same chain. [`core`] is the deterministic part (messages in, blocks out), [`wire`] the
//! bytes on the partition and in a block's metadata, [`revalidate`] the checks every
//! orderer repeats alike, [`broker`] the partition over rdkafka, and [`driver`] the
//! [`KafkaChain`] that ties them to the ledger.

pub mod broker;
pub mod consenter;
pub mod core;
pub mod driver;
pub mod revalidate;
pub mod wire;

pub use broker::PartitionConfig;
pub use consenter::{KafkaConsenter, KafkaNodeSettings};
pub use driver::{default_topic, KafkaChain, KafkaMetrics, KafkaOptions};
