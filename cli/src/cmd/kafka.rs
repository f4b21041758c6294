//! `ordo kafka mock`: librdkafka's mock cluster as a process of its own, so that kafka
//! channels can be developed and tested with no broker installed. It speaks the real
//! Kafka protocol on loopback sockets; it keeps everything in memory and forgets it on
//! exit, so it is for development and tests only.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rdkafka::mocking::MockCluster;

/// `ordo kafka ...`
#[derive(Subcommand)]
pub enum KafkaCommand {
    /// Run an in-memory Kafka-protocol cluster (librdkafka's mock) until Ctrl-C; prints
    /// its bootstrap address. For development and tests only.
    Mock(MockArgs),
}

/// `ordo kafka mock`
#[derive(Args)]
pub struct MockArgs {
    /// Brokers in the cluster.
    #[arg(long, default_value_t = 3)]
    pub brokers: i32,
    /// Topics to create up front, one partition each, replicated on every broker
    /// (the mock cannot create topics through the admin API).
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,
}

/// Runs a kafka command.
pub async fn run(cmd: KafkaCommand) -> anyhow::Result<()> {
    match cmd {
        KafkaCommand::Mock(a) => {
            if !(1..=9).contains(&a.brokers) {
                bail!("--brokers {}: choose 1 to 9", a.brokers);
            }
            let cluster = MockCluster::new(a.brokers).context("starting the mock cluster")?;
            for t in &a.topics {
                cluster
                    .create_topic(t, 1, a.brokers)
                    .with_context(|| format!("creating topic {t}"))?;
            }
            // The first line is the contract for scripts and tests: the address alone.
            println!("{}", cluster.bootstrap_servers());
            eprintln!(
                "kafka mock cluster with {} broker(s) on {} (in memory, development only); topics: {}; Ctrl-C to stop",
                a.brokers,
                cluster.bootstrap_servers(),
                if a.topics.is_empty() { "none".to_string() } else { a.topics.join(", ") }
            );
            crate::cmd::orderer::shutdown_signal().await;
            eprintln!("kafka mock cluster stopped");
            Ok(())
        }
    }
}
