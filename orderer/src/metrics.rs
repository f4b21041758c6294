//! Prometheus metrics of the orderer, served on the operations port.
//!
//! One root registry: `ordo_build_info` at its top (the same name on every node, see
//! [`ordo_node::metrics`]) and every orderer metric in the `ordo_orderer` sub-registry,
//! each registered once with its help text. Durations are in seconds; per-event ones
//! (broadcast latency) are histograms, running totals kept by the chains (block write and
//! raft persist time) are counters of seconds refreshed at scrape time.

use std::sync::atomic::AtomicU64;

use ordo_consensus::chain::{MetricDesc, MetricKind};
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
    /// Bytes of Broadcast envelopes received and not yet checked, partial messages
    /// included (bounded by `[limits] broadcast_buffer_bytes`; see `crate::inflight`).
    pub broadcast_buffered_bytes: Gauge,
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
    /// 1 when the channel's ledger found corruption in its stored data since start, else
    /// 0 (refreshed at scrape time; see `ordo_ledger::fault` for the remedy).
    pub ledger_corrupt: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Complete passes of the background scrub over the channel's ledger since start
    /// (refreshed at scrape time; `ordo_ledger::scrub`).
    pub ledger_scrub_passes: Family<Labels, Counter<u64, AtomicU64>>,
    /// Bytes of blocks the background scrub read and checked since start (refreshed at
    /// scrape time).
    pub ledger_scrubbed_bytes: Family<Labels, Counter<u64, AtomicU64>>,
    /// The lowest block the channel's ledger holds (0 unless pruned or joined above it;
    /// refreshed at scrape time).
    pub ledger_first_block: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Bytes the channel's blocks take on disk, what `[ledger] retain_bytes` bounds
    /// (refreshed at scrape time).
    pub ledger_chain_bytes: Family<Labels, Gauge<u64, AtomicU64>>,
    /// Blocks the background pruner removed since start (refreshed at scrape time).
    pub ledger_pruned_blocks: Family<Labels, Counter<u64, AtomicU64>>,
    /// Envelopes whose Broadcast waits for their block (`committed` ack mode), by
    /// channel (refreshed at scrape time): bounded by the channel's waiter registry.
    pub commit_waiters: Family<Labels, Gauge<u64, AtomicU64>>,
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
    /// The backends' own metrics (raft, kafka, ...), by name, as their consenters
    /// declared them; refreshed at scrape time from each chain.
    pub backend: std::collections::BTreeMap<&'static str, BackendFamily>,
}

/// One backend metric's family, by its [`MetricKind`].
pub enum BackendFamily {
    /// [`MetricKind::Gauge`].
    Gauge(Family<Labels, Gauge<i64, std::sync::atomic::AtomicI64>>),
    /// [`MetricKind::Counter`].
    Counter(Family<Labels, Counter<u64, AtomicU64>>),
    /// [`MetricKind::SecondsCounter`].
    Seconds(Family<Labels, Counter<f64, AtomicU64>>),
}

impl BackendFamily {
    /// Records `value` for `labels`: gauges are set; counters, which the chains keep as
    /// running totals, are brought up to it.
    pub fn record(&self, labels: &Labels, value: f64) {
        match self {
            BackendFamily::Gauge(f) => {
                f.get_or_create(labels).set(value as i64);
            }
            BackendFamily::Counter(f) => {
                let c = f.get_or_create(labels);
                let target = value as u64;
                let now = c.get();
                if target > now {
                    c.inc_by(target - now);
                }
            }
            BackendFamily::Seconds(f) => {
                let c = f.get_or_create(labels);
                let delta = value - c.get();
                if delta > 0.0 {
                    c.inc_by(delta);
                }
            }
        }
    }
}

impl Metrics {
    /// Registers every metric under the `ordo_orderer` prefix, and `ordo_build_info`;
    /// `backend` are the metrics the node's consenters declared.
    pub fn new(backend: &[MetricDesc]) -> Self {
        let mut root = Registry::default();
        ordo_node::metrics::register_build_info(&mut root, NodeKind::Orderer);
        let registry = root.sub_registry_with_prefix(PREFIX);
        let m = Self {
            broadcast_responses: Family::default(),
            broadcast_latency_seconds: Family::new_with_constructor(latency_histogram),
            broadcast_streams: Gauge::default(),
            deliver_blocks: Family::default(),
            deliver_streams: Gauge::default(),
            broadcast_buffered_bytes: Gauge::default(),
            deliver_ends: Family::default(),
            ledger_height: Family::default(),
            config_sequence: Family::default(),
            ledger_corrupt: Family::default(),
            ledger_scrub_passes: Family::default(),
            ledger_scrubbed_bytes: Family::default(),
            ledger_first_block: Family::default(),
            ledger_chain_bytes: Family::default(),
            ledger_pruned_blocks: Family::default(),
            commit_waiters: Family::default(),
            blocks_written: Family::default(),
            envelopes_written: Family::default(),
            block_write_seconds: Family::default(),
            verify_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            admin_requests: Family::default(),
            backend: Default::default(),
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
            "broadcast_buffered_bytes",
            "Bytes of Broadcast envelopes received and not yet checked, partial messages included",
            m.broadcast_buffered_bytes.clone(),
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
            "ledger_corrupt",
            "1 when the channel's ledger found corruption in its stored data since start",
            m.ledger_corrupt.clone(),
        );
        registry.register(
            "ledger_scrub_passes",
            "Complete passes of the background scrub over the channel's ledger since start",
            m.ledger_scrub_passes.clone(),
        );
        registry.register(
            "ledger_scrubbed_bytes",
            "Bytes of blocks the background scrub read and checked since start",
            m.ledger_scrubbed_bytes.clone(),
        );
        registry.register(
            "ledger_first_block",
            "The lowest block the channel's ledger holds (0 unless pruned or joined above it)",
            m.ledger_first_block.clone(),
        );
        registry.register(
            "ledger_chain_bytes",
            "Bytes the channel's blocks take on disk (what [ledger] retain_bytes bounds)",
            m.ledger_chain_bytes.clone(),
        );
        registry.register(
            "ledger_pruned_blocks",
            "Blocks the background pruner removed from the channel's ledger since start",
            m.ledger_pruned_blocks.clone(),
        );
        registry.register(
            "commit_waiters",
            "Envelopes waiting for their block to be written (committed ack mode)",
            m.commit_waiters.clone(),
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
        let mut m = m;
        for d in backend {
            let family = match d.kind {
                MetricKind::Gauge => {
                    let f = Family::default();
                    registry.register(d.name, d.help, f.clone());
                    BackendFamily::Gauge(f)
                }
                MetricKind::Counter => {
                    let f = Family::default();
                    registry.register(d.name, d.help, f.clone());
                    BackendFamily::Counter(f)
                }
                MetricKind::SecondsCounter => {
                    let f = Family::default();
                    registry.register(d.name, d.help, f.clone());
                    BackendFamily::Seconds(f)
                }
            };
            m.backend.insert(d.name, family);
        }
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
        let backend = [
            MetricDesc {
                name: "backend_things",
                help: "Things a backend counts",
                kind: MetricKind::Counter,
            },
            MetricDesc {
                name: "backend_level",
                help: "A backend's level",
                kind: MetricKind::Gauge,
            },
        ];
        let m = Metrics::new(&backend);
        for total in [3.0, 2.0, 5.0] {
            m.backend["backend_things"].record(&Metrics::channel("c"), total);
        }
        m.backend["backend_level"].record(&Metrics::channel("c"), -4.0);
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
        assert!(
            text.contains("ordo_orderer_backend_things_total{channel=\"c\"} 5"),
            "a running total is brought up to the chain's, never down: {text}"
        );
        assert!(
            text.contains("ordo_orderer_backend_level{channel=\"c\"} -4"),
            "{text}"
        );
        let mut declared = 0;
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap_or_default();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has help text"
            );
            declared += 1;
        }
        assert!(declared > 15, "{text}");
    }
}
