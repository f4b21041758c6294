//! Prometheus metrics of the orderer, served on the operations port.
//!
//! One root registry: `ordo_build_info` at its top (the same name on every node, see
//! [`ordo_node::metrics`]) and every orderer metric in the `ordo_orderer` sub-registry,
//! each registered once with its help text. Durations are in seconds; per-event ones
//! (broadcast latency) are histograms, running totals kept by the chains (block write and
//! raft persist time) are counters of seconds refreshed at scrape time.

use std::sync::atomic::AtomicU64;

use ordo_node::metrics::{latency_buckets, Format, NodeKind};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// A family of histograms with the node's [`latency_buckets`].
pub type LatencyFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The prefix of every orderer metric.
const PREFIX: &str = "ordo_orderer";

/// Every metric the orderer exports.
pub struct Metrics {
    /// The root registry (no prefix); the orderer's metrics are in its `ordo_orderer`
    /// sub-registry.
    registry: Registry,
    /// Broadcast responses by channel and status. `channel` is the envelope's channel once
    /// its header is read and the channel is served here, and empty for envelopes refused
    /// before that (too large, undecodable, unknown channel): a label value taken from an
    /// unknown channel name would let any client create series without bound.
    pub broadcast_responses: Family<Labels, Counter>,
    /// Seconds from the moment Broadcast took an envelope off its stream to its response,
    /// by channel (labelled as `broadcast_responses`): the acknowledgement latency clients
    /// see, ordering and — in `committed` mode — the block write included.
    pub broadcast_latency_seconds: LatencyFamily,
    /// Open Broadcast streams.
    pub broadcast_streams: Gauge,
    /// Blocks sent by Deliver, by channel.
    pub deliver_blocks: Family<Labels, Counter>,
    /// Open Deliver streams.
    pub deliver_streams: Gauge,
    /// Deliver requests refused or ended, by status.
    pub deliver_ends: Family<Labels, Counter>,
    /// Ledger height by channel (refreshed at scrape time).
    pub ledger_height: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Config sequence by channel (refreshed at scrape time).
    pub config_sequence: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Blocks written by channel (refreshed at scrape time).
    pub blocks_written: Family<Labels, Counter<u64, AtomicU64>>,
    /// Envelopes written in blocks, by channel (refreshed at scrape time).
    pub envelopes_written: Family<Labels, Counter<u64, AtomicU64>>,
    /// Seconds spent appending blocks (including fsync), by channel.
    pub block_write_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    /// Envelopes per signature-verification batch.
    pub verify_batch_size: Histogram,
    /// Admin requests by command and status.
    pub admin_requests: Family<Labels, Counter>,
    /// Raft: 1 on the channel's leader, 0 elsewhere (refreshed at scrape time).
    pub raft_is_leader: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Raft term by channel.
    pub raft_term: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Raft leader changes seen since start, by channel.
    pub raft_leader_changes: Family<Labels, Counter<u64, AtomicU64>>,
    /// Raft committed index by channel.
    pub raft_committed_index: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Raft index applied to the ledger, by channel.
    pub raft_applied_index: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Seconds spent persisting raft entries and hard state (synced), by channel.
    pub raft_persist_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    /// Consenters the leader heard from recently (0 on followers), by channel.
    pub raft_active_nodes: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Raft index of the last snapshot (log compaction point).
    pub raft_snapshot_index: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Raft messages dropped because a consenter's send queue was full, by channel.
    pub cluster_messages_dropped: Family<Labels, Counter<u64, AtomicU64>>,
    /// Raft streams to other consenters (re)opened, by channel.
    pub cluster_connects: Family<Labels, Counter<u64, AtomicU64>>,
    /// Kafka: 1 while the chain takes envelopes (connected and caught up).
    pub kafka_ready: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Kafka: last partition offset consumed, by channel.
    pub kafka_consumed_offset: Family<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// Kafka: messages in the channel's partition this orderer has not consumed yet (the
    /// partition's high watermark minus the next offset to consume), by channel; absent
    /// until the consumer has heard the high watermark from a broker.
    pub kafka_consumer_lag: Family<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// Kafka: highest offset this orderer produced and had acknowledged.
    pub kafka_produced_offset: Family<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    /// Kafka: produces waiting for their delivery report.
    pub kafka_inflight: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Kafka: failed deliveries since start.
    pub kafka_delivery_failures: Family<Labels, Counter<u64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `ordo_orderer` prefix, and `ordo_build_info`.
    pub fn new() -> Self {
        let mut root = Registry::default();
        ordo_node::metrics::register_build_info(&mut root, NodeKind::Orderer);
        let registry = root.sub_registry_with_prefix(PREFIX);
        let m = Self {
            broadcast_responses: Family::default(),
            broadcast_latency_seconds: Family::new_with_constructor(latency_histogram),
            broadcast_streams: Gauge::default(),
            deliver_blocks: Family::default(),
            deliver_streams: Gauge::default(),
            deliver_ends: Family::default(),
            ledger_height: Family::default(),
            config_sequence: Family::default(),
            blocks_written: Family::default(),
            envelopes_written: Family::default(),
            block_write_seconds: Family::default(),
            verify_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            admin_requests: Family::default(),
            raft_is_leader: Family::default(),
            raft_term: Family::default(),
            raft_leader_changes: Family::default(),
            raft_committed_index: Family::default(),
            raft_applied_index: Family::default(),
            raft_persist_seconds: Family::default(),
            raft_active_nodes: Family::default(),
            raft_snapshot_index: Family::default(),
            cluster_messages_dropped: Family::default(),
            cluster_connects: Family::default(),
            kafka_ready: Family::default(),
            kafka_consumed_offset: Family::default(),
            kafka_consumer_lag: Family::default(),
            kafka_produced_offset: Family::default(),
            kafka_inflight: Family::default(),
            kafka_delivery_failures: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "broadcast_responses",
            "Broadcast responses by channel and status",
            m.broadcast_responses.clone(),
        );
        registry.register(
            "broadcast_latency_seconds",
            "Time from taking an envelope off a Broadcast stream to its response, by channel",
            m.broadcast_latency_seconds.clone(),
        );
        registry.register(
            "broadcast_streams",
            "Open Broadcast streams",
            m.broadcast_streams.clone(),
        );
        registry.register(
            "deliver_blocks",
            "Blocks sent by Deliver",
            m.deliver_blocks.clone(),
        );
        registry.register(
            "deliver_streams",
            "Open Deliver streams",
            m.deliver_streams.clone(),
        );
        registry.register(
            "deliver_ends",
            "Deliver streams ended, by status",
            m.deliver_ends.clone(),
        );
        registry.register(
            "ledger_height",
            "Blocks in the channel's ledger",
            m.ledger_height.clone(),
        );
        registry.register(
            "config_sequence",
            "Sequence of the channel configuration in force",
            m.config_sequence.clone(),
        );
        registry.register(
            "blocks_written",
            "Blocks written to the ledger since start",
            m.blocks_written.clone(),
        );
        registry.register(
            "envelopes_written",
            "Envelopes written in blocks since start",
            m.envelopes_written.clone(),
        );
        registry.register(
            "block_write_seconds",
            "Time spent appending blocks to the ledger, fsync included",
            m.block_write_seconds.clone(),
        );
        registry.register(
            "verify_batch_size",
            "Envelope signatures verified per batch",
            m.verify_batch_size.clone(),
        );
        registry.register(
            "admin_requests",
            "Admin requests by command and status",
            m.admin_requests.clone(),
        );
        registry.register(
            "raft_is_leader",
            "1 if this node is the channel's raft leader",
            m.raft_is_leader.clone(),
        );
        registry.register("raft_term", "Raft term", m.raft_term.clone());
        registry.register(
            "raft_leader_changes",
            "Raft leader changes seen since start",
            m.raft_leader_changes.clone(),
        );
        registry.register(
            "raft_committed_index",
            "Index of the last committed raft entry",
            m.raft_committed_index.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Index of the last raft entry applied to the ledger",
            m.raft_applied_index.clone(),
        );
        registry.register(
            "raft_persist_seconds",
            "Time spent persisting raft entries and hard state, fsync included",
            m.raft_persist_seconds.clone(),
        );
        registry.register(
            "raft_active_nodes",
            "Consenters the leader heard from recently (0 on followers)",
            m.raft_active_nodes.clone(),
        );
        registry.register(
            "raft_snapshot_index",
            "Raft index of the last snapshot; the log holds only entries after it",
            m.raft_snapshot_index.clone(),
        );
        registry.register(
            "cluster_messages_dropped",
            "Raft messages dropped because a consenter's send queue was full",
            m.cluster_messages_dropped.clone(),
        );
        registry.register(
            "cluster_connects",
            "Raft streams to other consenters opened or reopened",
            m.cluster_connects.clone(),
        );
        registry.register(
            "kafka_ready",
            "1 while the kafka chain takes envelopes (connected and caught up)",
            m.kafka_ready.clone(),
        );
        registry.register(
            "kafka_consumed_offset",
            "Last offset of the channel's partition this orderer consumed",
            m.kafka_consumed_offset.clone(),
        );
        registry.register(
            "kafka_consumer_lag",
            "Messages in the channel's partition this orderer has not consumed yet",
            m.kafka_consumer_lag.clone(),
        );
        registry.register(
            "kafka_produced_offset",
            "Highest offset this orderer produced and had acknowledged",
            m.kafka_produced_offset.clone(),
        );
        registry.register(
            "kafka_inflight",
            "Messages produced and waiting for their delivery report",
            m.kafka_inflight.clone(),
        );
        registry.register(
            "kafka_delivery_failures",
            "Produced messages whose delivery failed",
            m.kafka_delivery_failures.clone(),
        );
        Self {
            registry: root,
            ..m
        }
    }

    /// Adds the gRPC listener's connection metrics (`ordo_orderer_transport_*`).
    pub fn register_listener(&mut self, listener: &std::sync::Arc<ordo_node::ListenerMetrics>) {
        listener.register(self.registry.sub_registry_with_prefix(PREFIX));
    }

    /// Adds the expiry of the node's own certificates
    /// (`ordo_orderer_certificate_not_after_seconds`).
    pub fn register_certs(&mut self, certs: &ordo_node::certinfo::CertMetrics) {
        certs.register(self.registry.sub_registry_with_prefix(PREFIX));
    }

    /// Labels for a channel.
    pub fn channel(channel: &str) -> Labels {
        vec![("channel".into(), channel.into())]
    }

    /// Labels for a channel and a status.
    pub fn channel_status(channel: &str, status: &str) -> Labels {
        vec![
            ("channel".into(), channel.into()),
            ("status".into(), status.into()),
        ]
    }

    /// The exposition of every metric in `format` (see [`Format::negotiate`]).
    pub fn render(&self, format: Format) -> String {
        ordo_node::metrics::render(&self.registry, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_the_build_info_is_there() {
        let m = Metrics::new();
        m.broadcast_responses
            .get_or_create(&Metrics::channel_status("c", "SUCCESS"))
            .inc();
        m.broadcast_latency_seconds
            .get_or_create(&Metrics::channel("c"))
            .observe(0.002);
        let text = m.render(Format::Text);
        assert!(
            text.contains(
                "ordo_orderer_broadcast_responses_total{channel=\"c\",status=\"SUCCESS\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("ordo_orderer_broadcast_latency_seconds_count{channel=\"c\"} 1"),
            "{text}"
        );
        assert!(text.contains("node=\"orderer\"} 1"), "{text}");
        let mut declared = 0;
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap_or_default();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has help text"
            );
            declared += 1;
        }
        assert!(declared > 25, "{text}");
    }
}
