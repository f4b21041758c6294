//! The kafka [`Consenter`]: each channel's chain on the partition its configuration
//! names, with this node's own broker list, client properties and timeouts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{default_topic, KafkaChain, KafkaMetrics, KafkaOptions, PartitionConfig};
use crate::chain::{Chain, ChainError, MetricDesc, MetricKind, MetricSample};
use crate::consenter::Consenter;
use crate::support::ChainSupport;

/// This node's side of its kafka channels (the orderer's `[kafka]` section).
#[derive(Debug, Clone)]
pub struct KafkaNodeSettings {
    /// This orderer's name, carried in its `Connect` messages.
    pub node_name: String,
    /// `host:port,...` to use instead of a channel config's broker list; empty: the
    /// channel's list.
    pub brokers: String,
    /// librdkafka properties passed through after Ordo's own.
    pub properties: BTreeMap<String, String>,
    /// How long a produce may wait for the in-sync replicas.
    pub delivery_timeout: Duration,
    /// Wait between attempts to reach the brokers (at least 10 ms).
    pub retry_backoff: Duration,
}

/// Builds kafka chains.
#[derive(Debug, Clone)]
pub struct KafkaConsenter {
    settings: KafkaNodeSettings,
}

impl KafkaConsenter {
    /// A consenter with this node's settings.
    pub fn new(settings: KafkaNodeSettings) -> Self {
        Self { settings }
    }
}

const METRICS: &[MetricDesc] = &[
    MetricDesc {
        name: "kafka_ready",
        help: "1 while the kafka chain takes envelopes (connected and caught up)",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "kafka_consumed_offset",
        help: "Last offset of the channel's partition this orderer consumed",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "kafka_consumer_lag",
        help: "Messages in the channel's partition this orderer has not consumed yet",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "kafka_produced_offset",
        help: "Highest offset this orderer produced and had acknowledged",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "kafka_inflight",
        help: "Messages produced and waiting for their delivery report",
        kind: MetricKind::Gauge,
    },
    MetricDesc {
        name: "kafka_delivery_failures",
        help: "Produced messages whose delivery failed",
        kind: MetricKind::Counter,
    },
];

impl KafkaMetrics {
    /// The readings of [`METRICS`]; the lag only once a broker reported the high
    /// watermark.
    pub fn samples(&self) -> Vec<MetricSample> {
        let mut out = vec![
            sample("kafka_ready", f64::from(u8::from(self.ready))),
            sample("kafka_consumed_offset", self.consumed_offset as f64),
            sample("kafka_produced_offset", self.produced_offset as f64),
            sample("kafka_inflight", self.inflight as f64),
            sample("kafka_delivery_failures", self.delivery_failures as f64),
        ];
        if let Some(lag) = self.consumer_lag() {
            out.push(sample("kafka_consumer_lag", lag as f64));
        }
        out
    }
}

fn sample(name: &'static str, value: f64) -> MetricSample {
    MetricSample { name, value }
}

/// How long a join waits for the brokers to say where the partition starts.
const JOIN_WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

impl KafkaConsenter {
    /// The channel's partition: brokers and topic from the channel config (the node's
    /// broker list replaces the channel's when set), client properties and timeouts from
    /// the node's settings.
    fn partition(
        &self,
        channel_id: &str,
        config: &ordo_proto::pb::common::ChannelConfig,
    ) -> PartitionConfig {
        let channel_kafka = config
            .orderer
            .as_ref()
            .and_then(|o| o.kafka.clone())
            .unwrap_or_default();
        let s = &self.settings;
        let brokers = if s.brokers.is_empty() {
            channel_kafka.brokers.join(",")
        } else {
            s.brokers.clone()
        };
        let topic = if channel_kafka.topic.is_empty() {
            default_topic(channel_id)
        } else {
            channel_kafka.topic
        };
        PartitionConfig {
            properties: s
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            delivery_timeout: s.delivery_timeout,
            ..PartitionConfig::new(brokers, topic)
        }
    }
}

impl Consenter for KafkaConsenter {
    fn consensus_type(&self) -> &'static str {
        "kafka"
    }

    /// The chain on the channel's partition: brokers and topic from the channel config
    /// (the node's broker list replaces the channel's when set), client properties and
    /// timeouts from the node's settings.
    fn handle_chain(
        &self,
        support: Arc<ChainSupport>,
        _closed: CancellationToken,
    ) -> Result<Arc<dyn Chain>, ChainError> {
        let partition = self.partition(support.channel_id(), &support.state().config);
        let s = &self.settings;
        let mut options = KafkaOptions::new(partition, s.node_name.clone());
        options.retry_backoff = s.retry_backoff.max(Duration::from_millis(10));
        Ok(KafkaChain::start(support, options)?)
    }

    fn joins_after_config_block(&self) -> bool {
        true
    }

    /// A kafka orderer resumes from the offsets in the join block's metadata (a config
    /// block is cut alone, so nothing of the partition is half in a block after it). The
    /// join is refused unless that metadata decodes and the partition still holds the
    /// next offset: a node that started without it could never build the next block.
    fn prepare_join(
        &self,
        _ledger: &ordo_ledger::BlockStore,
        join_block: &ordo_proto::pb::common::Block,
    ) -> Result<(), ChainError> {
        let number = ordo_proto::block::number(join_block);
        let resume = super::wire::resume_point(Some(join_block))
            .map_err(|e| ChainError::Unsupported(format!("join block: {e}")))?;
        let config = ordo_proto::config::config_from_block(join_block)
            .map_err(|e| ChainError::Unsupported(format!("join block {number}: {e}")))?;
        let partition = self.partition(&config.channel_id, &config);
        let (low, high) =
            super::broker::watermarks(&partition, JOIN_WATERMARK_TIMEOUT).map_err(|e| {
                ChainError::NotReady {
                    reason: format!(
                        "reading which offsets topic {:?} holds: {e}",
                        partition.topic
                    ),
                }
            })?;
        let next = resume.last_offset + 1;
        if low > next {
            return Err(ChainError::Unsupported(format!(
                "topic {:?} starts at offset {low}, after offset {next} that follows block {number}: \
                 the partition no longer holds what this orderer must read (join from a later \
                 config block, and keep every message: retention.ms=-1)",
                partition.topic
            )));
        }
        if high < next {
            return Err(ChainError::Unsupported(format!(
                "topic {:?} ends at offset {high}, before offset {next} that follows block {number}: \
                 it is not the partition this channel's blocks were cut from (recreated?)",
                partition.topic
            )));
        }
        Ok(())
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        METRICS
    }
}
