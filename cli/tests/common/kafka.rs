//! Kafka helpers for the multi-process kafka tests: the cluster under test (librdkafka's
//! mock cluster in this process, which the orderer processes reach over real sockets; or
//! a real broker when `ORDO_KAFKA_BROKERS` is set), topics, and reading the partition.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use ordo_consensus::kafka::broker::{PartitionConfig, PartitionConsumer};
use ordo_consensus::kafka::core::KafkaMessage;
use ordo_consensus::kafka::wire;

/// The Kafka cluster a test runs against.
pub enum Cluster {
    /// librdkafka's mock cluster (three brokers), controllable from the test.
    Mock(MockCluster<'static, DefaultProducerContext>),
    /// A real broker at this bootstrap address (`ORDO_KAFKA_BROKERS`).
    Real(String),
}

impl Cluster {
    /// The mock cluster, or the real broker when `ORDO_KAFKA_BROKERS` is set.
    pub fn from_env() -> Self {
        match std::env::var("ORDO_KAFKA_BROKERS") {
            Ok(b) if !b.is_empty() => Self::Real(b),
            _ => Self::mock(),
        }
    }

    /// Always the mock cluster (tests that take brokers down).
    pub fn mock() -> Self {
        Self::Mock(MockCluster::new(3).expect("mock cluster"))
    }

    pub fn brokers(&self) -> String {
        match self {
            Self::Mock(m) => m.bootstrap_servers(),
            Self::Real(b) => b.clone(),
        }
    }

    /// Creates `topic` with one partition (replicated on every mock broker).
    pub async fn create_topic(&self, topic: &str) {
        match self {
            Self::Mock(m) => m.create_topic(topic, 1, 3).expect("topic"),
            Self::Real(b) => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", b)
                    .create()
                    .expect("admin client");
                let results = admin
                    .create_topics(
                        &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
                        &AdminOptions::new(),
                    )
                    .await
                    .expect("create topics");
                for r in results {
                    r.expect("topic created");
                }
            }
        }
    }

    /// Takes every broker down (mock only).
    pub fn all_down(&self) {
        if let Self::Mock(m) = self {
            for id in 1..=3 {
                m.broker_down(id).expect("broker down");
            }
        }
    }

    /// Makes `broker` the partition's leader (mock only).
    pub fn move_leader(&self, topic: &str, broker: i32) {
        if let Self::Mock(m) = self {
            m.partition_leader(topic, 0, Some(broker))
                .expect("leader moved");
        }
    }

    /// Makes the next requests of kind `api` fail with `errors`, in order (mock only).
    pub fn inject_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
        if let Self::Mock(m) = self {
            m.request_errors(api, errors);
        }
    }

    /// Brings every broker back (mock only).
    pub fn all_up(&self) {
        if let Self::Mock(m) = self {
            for id in 1..=3 {
                m.broker_up(id).expect("broker up");
            }
        }
    }
}

/// A topic name no other test run uses (a real broker keeps topics between runs).
pub fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}.{}.{nanos}", std::process::id())
}

/// Every message of the partition up to and including `last_offset`, decoded.
pub async fn read_partition(brokers: &str, topic: &str, last_offset: i64) -> Vec<KafkaMessage> {
    let mut consumer =
        PartitionConsumer::new(&PartitionConfig::new(brokers, topic), 0).expect("consumer");
    let mut out = Vec::new();
    loop {
        let (offset, payload) = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("partition readable")
            .expect("message");
        out.push(wire::decode(payload).expect("Ordo's message"));
        if offset >= last_offset {
            return out;
        }
    }
}
