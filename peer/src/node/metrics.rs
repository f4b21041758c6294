//! Prometheus metrics of the peer, served on the operations port.
//!
//! The same implementation as the orderer's (see [`ordo_node::metrics`]): one root
//! `prometheus-client` registry with `ordo_build_info`, and the peer's metrics in its
//! `ordo_peer` sub-registry, each registered once with help text and in base units.
//!
//! Two kinds of sources, two kinds of metrics:
//! - What happens per block — a commit, its validation and write times, its valid and
//!   invalid transactions — is recorded by the committer as it happens, into
//!   [`CommitMetrics`]: counters, and histograms for the durations.
//! - What the peer already keeps as state or running totals — each channel's height, the
//!   deliver client's counters — is read when scraped, by a collector over the channels
//!   served now. A removed channel's series go with it, and a re-joined channel's
//!   counters restart from zero, which Prometheus reads as a counter reset.

use std::collections::HashMap;
use std::sync::Arc;

use ordo_node::metrics::{latency_buckets, Format, NodeKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::channels::PeerChannels;
use crate::committer::Committed;
use crate::validator::TxValidationCode;

/// The prefix of every peer metric.
const PREFIX: &str = "ordo_peer";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelCodeLabel {
    channel: String,
    code: String,
}

type LatencyFamily = Family<ChannelLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// What the committer records per block, by channel. Cloning shares the metrics (every
/// channel's committer holds a clone).
#[derive(Debug, Clone)]
pub struct CommitMetrics {
    blocks_committed: Family<ChannelLabel, Counter>,
    transactions_valid: Family<ChannelLabel, Counter>,
    transactions_invalid: Family<ChannelCodeLabel, Counter>,
    block_validate_seconds: LatencyFamily,
    block_commit_seconds: LatencyFamily,
}

impl Default for CommitMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CommitMetrics {
    /// Empty metrics, not registered anywhere yet (see [`PeerMetrics::new`]).
    pub fn new() -> Self {
        Self {
            blocks_committed: Family::default(),
            transactions_valid: Family::default(),
            transactions_invalid: Family::default(),
            block_validate_seconds: Family::new_with_constructor(latency_histogram),
            block_commit_seconds: Family::new_with_constructor(latency_histogram),
        }
    }

    /// Records one committed block of `channel`: called by the committer right after the
    /// block is durable, so the counters never run ahead of the ledger.
    pub fn record(&self, channel: &str, done: &Committed) {
        let label = ChannelLabel {
            channel: channel.to_string(),
        };
        self.blocks_committed.get_or_create(&label).inc();
        self.block_validate_seconds
            .get_or_create(&label)
            .observe(done.validate_time.as_secs_f64());
        self.block_commit_seconds
            .get_or_create(&label)
            .observe(done.write_time.as_secs_f64());
        self.transactions_valid
            .get_or_create(&label)
            .inc_by(done.validation.valid_count() as u64);
        let mut invalid: HashMap<&'static str, u64> = HashMap::new();
        for code in &done.validation.codes {
            if *code != TxValidationCode::Valid {
                *invalid.entry(code.as_str_name()).or_default() += 1;
            }
        }
        for (code, n) in invalid {
            self.transactions_invalid
                .get_or_create(&ChannelCodeLabel {
                    channel: channel.to_string(),
                    code: code.to_string(),
                })
                .inc_by(n);
        }
    }

    /// Drops a removed channel's series, so that a channel the peer left stops being
    /// reported (and a re-join starts from zero).
    pub fn forget(&self, channel: &str) {
        let label = ChannelLabel {
            channel: channel.to_string(),
        };
        self.blocks_committed.remove(&label);
        self.transactions_valid.remove(&label);
        self.block_validate_seconds.remove(&label);
        self.block_commit_seconds.remove(&label);
        // Every code there is: the family cannot list its label sets.
        for code in (0..=u8::MAX).filter_map(|c| TxValidationCode::try_from(i32::from(c)).ok()) {
            self.transactions_invalid.remove(&ChannelCodeLabel {
                channel: channel.to_string(),
                code: code.as_str_name().to_string(),
            });
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "blocks_committed",
            "Blocks validated and committed since start",
            self.blocks_committed.clone(),
        );
        registry.register(
            "transactions_valid",
            "VALID transactions committed since start",
            self.transactions_valid.clone(),
        );
        registry.register(
            "transactions_invalid",
            "Invalid transactions committed since start, by validation code",
            self.transactions_invalid.clone(),
        );
        registry.register(
            "block_validate_seconds",
            "Time spent validating a block's transactions (signatures, policies, MVCC)",
            self.block_validate_seconds.clone(),
        );
        registry.register(
            "block_commit_seconds",
            "Time spent writing a block with its state, history and index, fsync included",
            self.block_commit_seconds.clone(),
        );
    }
}

/// Every metric the peer exports, ready to render.
pub struct PeerMetrics {
    registry: Registry,
}

impl PeerMetrics {
    /// The peer's registry: `ordo_build_info`, the committer's metrics, the channels'
    /// scrape-time values, the gRPC listener's connection metrics and the expiry of the
    /// node's own certificates. Each is registered here, once.
    pub fn new(
        commits: &CommitMetrics,
        channels: Arc<PeerChannels>,
        listener: &Arc<ordo_node::ListenerMetrics>,
        certs: &ordo_node::certinfo::CertMetrics,
        discovery: Arc<super::discovery::Discovery>,
    ) -> Self {
        let mut root = Registry::default();
        ordo_node::metrics::register_build_info(&mut root, NodeKind::Peer);
        let registry = root.sub_registry_with_prefix(PREFIX);
        commits.register(registry);
        registry.register_collector(Box::new(ChannelCollector { channels }));
        registry.register_collector(Box::new(DiscoveryCollector { discovery }));
        listener.register(registry);
        certs.register(registry);
        Self { registry: root }
    }

    /// The exposition of every metric in `format` (see [`Format::negotiate`]).
    pub fn render(&self, format: Format) -> String {
        ordo_node::metrics::render(&self.registry, format)
    }
}

/// Reads how many live peers discovery knows per channel when scraped.
struct DiscoveryCollector {
    discovery: Arc<super::discovery::Discovery>,
}

impl std::fmt::Debug for DiscoveryCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryCollector").finish_non_exhaustive()
    }
}

impl Collector for DiscoveryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut counts = self.discovery.live_counts();
        counts.sort();
        let mut gauge = encoder.encode_descriptor(
            "discovery_peers",
            "Peers of the channel (this one included) whose announcement is live",
            None,
            MetricType::Gauge,
        )?;
        for (channel, n) in counts {
            ConstGauge::new(n as i64).encode(gauge.encode_family(&ChannelLabel { channel })?)?;
        }
        Ok(())
    }
}

/// Reads each channel's height and deliver counters when scraped.
struct ChannelCollector {
    channels: Arc<PeerChannels>,
}

impl std::fmt::Debug for ChannelCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelCollector").finish_non_exhaustive()
    }
}

/// One channel's scrape-time values.
struct ChannelValues {
    label: ChannelLabel,
    height: u64,
    first_block: u64,
    expiry_floor_secs: u64,
    chain_bytes: u64,
    pruned_blocks: u64,
    corrupt: bool,
    scrub_passes: u64,
    scrub_bytes: u64,
    received: u64,
    verified: u64,
    failures: u64,
    reconnects: u64,
    verify_seconds: f64,
}

/// A scrape-time value (counter or gauge): name, help, and its value in a channel's
/// [`ChannelValues`].
type CounterSource = (&'static str, &'static str, fn(&ChannelValues) -> u64);

impl Collector for ChannelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let values: Vec<ChannelValues> = self
            .channels
            .list()
            .iter()
            .map(|c| {
                let counts = c.deliver_stats.snapshot();
                ChannelValues {
                    label: ChannelLabel {
                        channel: c.id().to_string(),
                    },
                    height: c.ledger().height(),
                    first_block: c.ledger().first_block(),
                    expiry_floor_secs: c.ledger().expiry_floor_ms() / 1000,
                    chain_bytes: c.ledger().chain_bytes().unwrap_or(0),
                    pruned_blocks: c.ledger().prune_status().blocks,
                    corrupt: c.ledger().fault().is_some(),
                    scrub_passes: c.ledger().scrub_status().passes,
                    scrub_bytes: c.ledger().scrub_status().bytes,
                    received: counts.blocks_received,
                    verified: counts.blocks_verified,
                    failures: counts.verification_failures,
                    reconnects: counts.reconnects,
                    verify_seconds: c.deliver_stats.verify_time().as_secs_f64(),
                }
            })
            .collect();
        let mut gauge = encoder.encode_descriptor(
            "ledger_height",
            "Blocks in the channel's ledger",
            None,
            MetricType::Gauge,
        )?;
        for v in &values {
            ConstGauge::new(v.height).encode(gauge.encode_family(&v.label)?)?;
        }
        let gauges: [CounterSource; 3] = [
            (
                "ledger_first_block",
                "The lowest block the channel's ledger holds (0 unless pruned or joined above it)",
                |v| v.first_block,
            ),
            (
                "ledger_expiry_floor_timestamp_seconds",
                "The channel's expiry floor: transactions signed before it are EXPIRED and their ids forgotten (0: none expired)",
                |v| v.expiry_floor_secs,
            ),
            (
                "ledger_chain_bytes",
                "Bytes the channel's blocks take on disk (what [ledger] retain_bytes bounds)",
                |v| v.chain_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let mut g = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for v in &values {
                ConstGauge::new(value(v)).encode(g.encode_family(&v.label)?)?;
            }
        }
        let mut corrupt = encoder.encode_descriptor(
            "ledger_corrupt",
            "1 when the channel's ledger found corruption in its stored data since start",
            None,
            MetricType::Gauge,
        )?;
        for v in &values {
            ConstGauge::new(i64::from(v.corrupt)).encode(corrupt.encode_family(&v.label)?)?;
        }
        let counters: [CounterSource; 7] = [
            (
                "ledger_pruned_blocks",
                "Blocks the background pruner removed from the channel's ledger since start",
                |v| v.pruned_blocks,
            ),
            (
                "ledger_scrub_passes",
                "Complete passes of the background scrub over the channel's ledger since start",
                |v| v.scrub_passes,
            ),
            (
                "ledger_scrubbed_bytes",
                "Bytes of blocks the background scrub read and checked since start",
                |v| v.scrub_bytes,
            ),
            (
                "deliver_blocks_received",
                "Blocks received from orderers, verified or not",
                |v| v.received,
            ),
            (
                "deliver_blocks_verified",
                "Blocks received from orderers that verified",
                |v| v.verified,
            ),
            (
                "deliver_verification_failures",
                "Blocks refused: hash chain, data hash or orderer signatures did not verify",
                |v| v.failures,
            ),
            (
                "deliver_reconnects",
                "Deliver streams to orderers replaced after they ended or failed",
                |v| v.reconnects,
            ),
        ];
        for (name, help, value) in counters {
            let mut counter = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for v in &values {
                ConstCounter::new(value(v)).encode(counter.encode_family(&v.label)?)?;
            }
        }
        let mut verify = encoder.encode_descriptor(
            "block_verify_seconds",
            "Time spent verifying blocks from orderers (hash chain, Merkle root, signatures)",
            None,
            MetricType::Counter,
        )?;
        for v in &values {
            ConstCounter::new(v.verify_seconds).encode(verify.encode_family(&v.label)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validator::BlockValidation;

    fn committed(codes: Vec<TxValidationCode>) -> Committed {
        Committed {
            number: 1,
            validation: BlockValidation {
                block_number: 1,
                codes,
                tx_ids: Vec::new(),
                updates: Vec::new(),
                events: Vec::new(),
                config: None,
                expiry_floor_ms: 0,
                record_tx_times: false,
            },
            commit_hash: [0; 32],
            validate_time: std::time::Duration::from_millis(3),
            write_time: std::time::Duration::from_millis(7),
        }
    }

    fn render(m: &CommitMetrics) -> String {
        let mut root = Registry::default();
        m.register(root.sub_registry_with_prefix(PREFIX));
        ordo_node::metrics::render(&root, Format::Text)
    }

    #[test]
    fn each_commit_counts_its_block_its_transactions_and_its_times() {
        let m = CommitMetrics::new();
        m.record(
            "ch",
            &committed(vec![
                TxValidationCode::Valid,
                TxValidationCode::MvccReadConflict,
                TxValidationCode::Valid,
                TxValidationCode::MvccReadConflict,
            ]),
        );
        m.record("ch", &committed(vec![TxValidationCode::Valid]));
        let text = render(&m);
        for want in [
            "ordo_peer_blocks_committed_total{channel=\"ch\"} 2\n",
            "ordo_peer_transactions_valid_total{channel=\"ch\"} 3\n",
            "ordo_peer_transactions_invalid_total{channel=\"ch\",code=\"MVCC_READ_CONFLICT\"} 2\n",
            "ordo_peer_block_validate_seconds_count{channel=\"ch\"} 2\n",
            "ordo_peer_block_commit_seconds_count{channel=\"ch\"} 2\n",
            "ordo_peer_block_commit_seconds_bucket{le=\"0.0128\",channel=\"ch\"} 2\n",
            "ordo_peer_block_commit_seconds_bucket{le=\"0.0064\",channel=\"ch\"} 0\n",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        assert!(
            text.contains("# HELP ordo_peer_blocks_committed_total "),
            "{text}"
        );
    }

    #[test]
    fn a_forgotten_channel_is_no_longer_reported() {
        let m = CommitMetrics::new();
        m.record("gone", &committed(vec![TxValidationCode::BadPayload]));
        m.record("kept", &committed(vec![TxValidationCode::Valid]));
        m.forget("gone");
        let text = render(&m);
        assert!(!text.contains("\"gone\""), "{text}");
        assert!(text.contains("channel=\"kept\""), "{text}");
    }
}
