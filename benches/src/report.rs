//! The results of `ordo bench orderer` and `ordo bench peer`: serialisable reports and
//! their text forms.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{PercentileCurve, ThroughputSeries};

/// The outcome of one orderer benchmark run. Field names end in their unit; counts are
/// envelopes unless they say otherwise. See the crate docs for what each number means.
#[derive(Debug, Clone, Serialize)]
pub struct OrdererBenchReport {
    /// Consensus type of the channel ("solo", "kafka" or "raft").
    pub consensus: String,
    /// Broadcast ack mode of the channel ("enqueued" or "committed").
    pub ack_mode: String,
    /// Channel id.
    pub channel: String,
    /// Concurrent Broadcast streams used.
    pub clients: usize,
    /// Payload data bytes per envelope.
    pub payload_bytes: usize,
    /// How the envelopes were signed, e.g. "all envelopes signed before the clock started".
    pub signing: String,
    /// Envelopes handed to a Broadcast stream.
    pub txs_sent: u64,
    /// Envelopes answered SUCCESS.
    pub txs_accepted: u64,
    /// Envelopes answered with any other status.
    pub txs_rejected: u64,
    /// Distinct envelopes of ours seen in delivered blocks.
    pub txs_delivered: u64,
    /// Accepted envelopes never delivered before the drain gave up.
    pub txs_lost: u64,
    /// Deliveries of an envelope beyond its first.
    pub txs_duplicated: u64,
    /// Seconds from the first submit to the last delivery (to the end of the drain when
    /// nothing was delivered).
    pub duration_s: f64,
    /// Delivered envelopes per second over `duration_s`.
    pub tx_per_s: f64,
    /// Accepted envelopes per second, from the first submit to the last SUCCESS.
    pub accepted_per_s: f64,
    /// Median submit → delivered latency in milliseconds (0 when nothing was delivered).
    pub latency_ms_p50: f64,
    /// 99th percentile submit → delivered latency in milliseconds.
    pub latency_ms_p99: f64,
    /// Largest submit → delivered latency in milliseconds.
    pub latency_ms_max: f64,
    /// The whole submit → delivered latency distribution, in milliseconds: the tail and
    /// the shape that p50 and p99 alone hide (what `--plot` draws).
    pub latency_ms_percentiles: PercentileCurve,
    /// Delivered envelopes per second over time, from the first submit to the last
    /// delivery: shows warm-up, stalls and the block cadence that the average hides.
    pub throughput: ThroughputSeries,
    /// Blocks delivered while the bench ran (after the block that was newest at the start).
    pub blocks_delivered: u64,
    /// Rejections by status name, e.g. `SERVICE_UNAVAILABLE` → 12.
    pub rejections: BTreeMap<String, u64>,
}

impl OrdererBenchReport {
    /// A multi-line human-readable summary (no trailing newline).
    pub fn human(&self) -> String {
        let mut s = String::new();
        let mut line = |label: &str, text: String| {
            let _ = write!(s, "\n  {label:<12}{text}");
        };
        line(
            "load",
            format!(
                "{} Broadcast streams, {} payload bytes per envelope",
                self.clients,
                thousands(self.payload_bytes as u64)
            ),
        );
        line("signing", self.signing.clone());
        line(
            "broadcast",
            format!(
                "{} sent, {} accepted, {} rejected",
                thousands(self.txs_sent),
                thousands(self.txs_accepted),
                thousands(self.txs_rejected)
            ),
        );
        line(
            "deliver",
            format!(
                "{} delivered in {} blocks, {} lost, {} duplicated",
                thousands(self.txs_delivered),
                thousands(self.blocks_delivered),
                thousands(self.txs_lost),
                thousands(self.txs_duplicated)
            ),
        );
        line(
            "duration",
            format!("{:.3} s (first submit → last delivery)", self.duration_s),
        );
        line(
            "throughput",
            format!(
                "{} tx/s delivered, {} tx/s accepted",
                thousands(self.tx_per_s.round() as u64),
                thousands(self.accepted_per_s.round() as u64)
            ),
        );
        if self.txs_delivered > 0 {
            line(
                "latency",
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (submit → delivered)",
                    self.latency_ms_p50, self.latency_ms_p99, self.latency_ms_max
                ),
            );
        } else {
            line("latency", "n/a (nothing delivered)".to_string());
        }
        if !self.rejections.is_empty() {
            let list: Vec<String> = self
                .rejections
                .iter()
                .map(|(name, n)| format!("{name} {}", thousands(*n)))
                .collect();
            line("rejections", list.join(", "));
        }
        if self.txs_lost > 0 {
            line(
                "WARNING",
                format!(
                    "{} accepted envelopes were never delivered",
                    thousands(self.txs_lost)
                ),
            );
        }
        if self.txs_duplicated > 0 {
            line(
                "WARNING",
                format!(
                    "{} extra deliveries of envelopes already delivered",
                    thousands(self.txs_duplicated)
                ),
            );
        }
        format!(
            "orderer benchmark on channel {:?} ({}, ack {}){s}",
            self.channel, self.consensus, self.ack_mode
        )
    }
}

/// The outcome of one peer benchmark run. Field names end in their unit; counts are
/// transactions unless they say otherwise. See [`crate::run_peer_bench`] for the method.
#[derive(Debug, Clone, Serialize)]
pub struct PeerBenchReport {
    /// Consensus type of the channel.
    pub consensus: String,
    /// Broadcast ack mode of the channel ("enqueued" or "committed").
    pub ack_mode: String,
    /// Channel id.
    pub channel: String,
    /// The chaincode invoked.
    pub chaincode: String,
    /// Concurrent Broadcast streams used.
    pub clients: usize,
    /// The orgs whose peer identities endorsed every transaction.
    pub endorsing_orgs: Vec<String>,
    /// How the transactions were signed.
    pub signing: String,
    /// Transactions handed to a Broadcast stream.
    pub txs_sent: u64,
    /// Transactions the orderer answered SUCCESS.
    pub txs_accepted: u64,
    /// Transactions the orderer answered with any other status.
    pub txs_rejected: u64,
    /// Distinct transactions of ours the orderer delivered in blocks.
    pub txs_ordered: u64,
    /// Distinct transactions of ours found in the blocks committed by the peer the codes
    /// were read from (VALID or not).
    pub txs_committed: u64,
    /// Transactions built to conflict (MVCC_READ_CONFLICT expected for exactly these many).
    pub conflicts_planned: u64,
    /// Validation code name → transactions of ours with that code.
    pub codes: BTreeMap<String, u64>,
    /// Rejections by Broadcast status name.
    pub rejections: BTreeMap<String, u64>,
    /// The peer the codes were read from.
    pub codes_from: String,
    /// The channel's height when the clock started.
    pub start_height: u64,
    /// The height at which every transaction of ours is in a block: one past the last
    /// block holding one.
    pub final_height: u64,
    /// Blocks holding transactions of ours.
    pub blocks: u64,
    /// Transactions ordered per second, from the first submit to the last delivery by the
    /// orderer.
    pub ordered_per_s: f64,
    /// Seconds from the first submit until the slowest peer reached `final_height` (until
    /// the end of the run if one never did).
    pub duration_s: f64,
    /// `txs_committed / duration_s`: transactions validated and committed per second on
    /// the slowest peer; 0 when some peer never reached `final_height`.
    pub tx_per_s: f64,
    /// Median latency from submit until every peer had committed the transaction's block,
    /// in milliseconds (peers polled every 10 ms; 0 when no block reached every peer).
    pub latency_ms_p50: f64,
    /// 99th percentile of the same.
    pub latency_ms_p99: f64,
    /// Largest of the same.
    pub latency_ms_max: f64,
    /// The whole distribution of the same latency, in milliseconds (what `--plot` draws).
    pub latency_ms_percentiles: PercentileCurve,
    /// Transactions of ours committed on every peer per second over time, from the first
    /// submit to `duration_s` (the live progress line's figure, counted exactly after the
    /// run): shows warm-up, stalls and the commit cadence.
    pub throughput: ThroughputSeries,
    /// Every peer reached `final_height`, all are at the same height afterwards, and all
    /// their commit hashes are equal there.
    pub commit_hashes_agree: bool,
    /// Per peer, in network order.
    pub peers: Vec<PeerFigures>,
}

/// One peer's figures in a [`PeerBenchReport`].
#[derive(Debug, Clone, Serialize)]
pub struct PeerFigures {
    /// Node name, e.g. `peer0.BankA`.
    pub name: String,
    /// Its org.
    pub org: String,
    /// Its height after the run.
    pub height: u64,
    /// Whether it reached the run's final height.
    pub reached_final_height: bool,
    /// Seconds from the first submit until it was first seen at the final height (0 when
    /// it never was).
    pub duration_s: f64,
    /// Transactions committed per second on this peer over `duration_s` (0 when it never
    /// reached the final height).
    pub tx_per_s: f64,
    /// Hex commit hash at `height`.
    pub commit_hash: String,
}

impl PeerBenchReport {
    /// A multi-line human-readable summary (no trailing newline).
    pub fn human(&self) -> String {
        let mut s = String::new();
        let mut line = |label: &str, text: String| {
            let _ = write!(s, "\n  {label:<12}{text}");
        };
        line(
            "load",
            format!(
                "{} Broadcast streams; {} conflicting on purpose; endorsed by the peers of {}",
                self.clients,
                thousands(self.conflicts_planned),
                self.endorsing_orgs.join(", ")
            ),
        );
        line("signing", self.signing.clone());
        line(
            "broadcast",
            format!(
                "{} sent, {} accepted, {} rejected",
                thousands(self.txs_sent),
                thousands(self.txs_accepted),
                thousands(self.txs_rejected)
            ),
        );
        line(
            "ordered",
            format!(
                "{} in {} blocks (height {} → {}), {} tx/s",
                thousands(self.txs_ordered),
                thousands(self.blocks),
                self.start_height,
                self.final_height,
                thousands(self.ordered_per_s.round() as u64)
            ),
        );
        line(
            "committed",
            format!(
                "{} in {:.3} s (first submit → slowest peer at height {}): {} tx/s",
                thousands(self.txs_committed),
                self.duration_s,
                self.final_height,
                thousands(self.tx_per_s.round() as u64)
            ),
        );
        if self.latency_ms_percentiles.value.is_empty() {
            line("latency", "n/a (no block reached every peer)".to_string());
        } else {
            line(
                "latency",
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (submit → committed on every peer)",
                    self.latency_ms_p50, self.latency_ms_p99, self.latency_ms_max
                ),
            );
        }
        let codes: Vec<String> = self
            .codes
            .iter()
            .map(|(name, n)| format!("{name} {}", thousands(*n)))
            .collect();
        line(
            "codes",
            format!("{} (read from {})", codes.join(", "), self.codes_from),
        );
        for p in &self.peers {
            let speed = if p.reached_final_height {
                format!(
                    "{} tx/s ({:.3} s)",
                    thousands(p.tx_per_s.round() as u64),
                    p.duration_s
                )
            } else {
                "never reached the final height".to_string()
            };
            line(
                &p.name,
                format!(
                    "height {}, {speed}, commit hash {}",
                    p.height,
                    p.commit_hash.get(..16).unwrap_or(&p.commit_hash)
                ),
            );
        }
        line(
            "agreement",
            if self.commit_hashes_agree {
                "every peer has the same commit hash at the same height".to_string()
            } else {
                "NO: the peers' heights or commit hashes differ".to_string()
            },
        );
        if !self.rejections.is_empty() {
            let list: Vec<String> = self
                .rejections
                .iter()
                .map(|(name, n)| format!("{name} {}", thousands(*n)))
                .collect();
            line("rejections", list.join(", "));
        }
        if self.txs_committed < self.txs_accepted {
            line(
                "WARNING",
                format!(
                    "{} accepted transactions were not found committed",
                    thousands(self.txs_accepted - self.txs_committed)
                ),
            );
        }
        let conflicts = self.codes.get("MVCC_READ_CONFLICT").copied().unwrap_or(0);
        if self.txs_rejected == 0 && conflicts != self.conflicts_planned {
            line(
                "WARNING",
                format!(
                    "{} MVCC_READ_CONFLICTs, {} planned",
                    thousands(conflicts),
                    thousands(self.conflicts_planned)
                ),
            );
        }
        format!(
            "peer benchmark on channel {:?} ({}, ack {}), chaincode {}, {} transactions{s}",
            self.channel,
            self.consensus,
            self.ack_mode,
            self.chaincode,
            thousands(self.txs_sent),
        )
    }
}

/// `1234567` → `"1,234,567"`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> OrdererBenchReport {
        OrdererBenchReport {
            consensus: "solo".into(),
            ack_mode: "enqueued".into(),
            channel: "bench".into(),
            clients: 4,
            payload_bytes: 1024,
            signing: "all envelopes signed before the clock started".into(),
            txs_sent: 100_000,
            txs_accepted: 99_988,
            txs_rejected: 12,
            txs_delivered: 99_985,
            txs_lost: 3,
            txs_duplicated: 0,
            duration_s: 1.6341,
            tx_per_s: 61_186.59,
            accepted_per_s: 63_000.4,
            latency_ms_p50: 21.404,
            latency_ms_p99: 48.0,
            latency_ms_max: 60.196,
            latency_ms_percentiles: PercentileCurve::from_sorted(&[10.0, 21.404, 48.0, 60.196]),
            throughput: ThroughputSeries {
                interval_s: 0.2,
                tx_per_s: vec![50_000.0, 65_000.0],
            },
            blocks_delivered: 98,
            rejections: [("SERVICE_UNAVAILABLE".to_string(), 12)]
                .into_iter()
                .collect(),
        }
    }

    fn peer_report() -> PeerBenchReport {
        let peer = |name: &str, tx_per_s: f64| PeerFigures {
            name: name.into(),
            org: "BankA".into(),
            height: 23,
            reached_final_height: tx_per_s > 0.0,
            duration_s: if tx_per_s > 0.0 {
                20_000.0 / tx_per_s
            } else {
                0.0
            },
            tx_per_s,
            commit_hash: "00112233445566778899aabbccddeeff".into(),
        };
        PeerBenchReport {
            consensus: "solo".into(),
            ack_mode: "enqueued".into(),
            channel: "ordo-channel".into(),
            chaincode: "bank".into(),
            clients: 4,
            endorsing_orgs: vec!["BankA".into(), "BankB".into()],
            signing: "signed".into(),
            txs_sent: 20_000,
            txs_accepted: 20_000,
            txs_rejected: 0,
            txs_ordered: 20_000,
            txs_committed: 20_000,
            conflicts_planned: 2_000,
            codes: [
                ("MVCC_READ_CONFLICT".to_string(), 2_000),
                ("VALID".to_string(), 18_000),
            ]
            .into_iter()
            .collect(),
            rejections: BTreeMap::new(),
            codes_from: "peer0.BankA".into(),
            start_height: 3,
            final_height: 23,
            blocks: 20,
            ordered_per_s: 30_000.4,
            duration_s: 4.0,
            tx_per_s: 5_000.0,
            latency_ms_p50: 800.0,
            latency_ms_p99: 1_900.5,
            latency_ms_max: 2_000.0,
            latency_ms_percentiles: PercentileCurve::from_sorted(&[10.0, 800.0, 1_900.5, 2_000.0]),
            throughput: ThroughputSeries {
                interval_s: 0.1,
                tx_per_s: vec![0.0, 5_000.0],
            },
            commit_hashes_agree: true,
            peers: vec![peer("peer0.BankA", 6_250.0), peer("peer0.BankB", 5_000.0)],
        }
    }

    #[test]
    fn peer_human_summary() {
        let expected = "\
peer benchmark on channel \"ordo-channel\" (solo, ack enqueued), chaincode bank, 20,000 transactions
  load        4 Broadcast streams; 2,000 conflicting on purpose; endorsed by the peers of BankA, BankB
  signing     signed
  broadcast   20,000 sent, 20,000 accepted, 0 rejected
  ordered     20,000 in 20 blocks (height 3 → 23), 30,000 tx/s
  committed   20,000 in 4.000 s (first submit → slowest peer at height 23): 5,000 tx/s
  latency     p50 800.00 ms, p99 1900.50 ms, max 2000.00 ms (submit → committed on every peer)
  codes       MVCC_READ_CONFLICT 2,000, VALID 18,000 (read from peer0.BankA)
  peer0.BankA height 23, 6,250 tx/s (3.200 s), commit hash 0011223344556677
  peer0.BankB height 23, 5,000 tx/s (4.000 s), commit hash 0011223344556677
  agreement   every peer has the same commit hash at the same height";
        assert_eq!(peer_report().human(), expected);
    }

    #[test]
    fn peer_human_summary_warns() {
        let mut r = peer_report();
        r.txs_committed = 19_000;
        r.codes.insert("MVCC_READ_CONFLICT".into(), 1_999);
        r.commit_hashes_agree = false;
        r.peers[1] = PeerFigures {
            reached_final_height: false,
            tx_per_s: 0.0,
            ..r.peers[1].clone()
        };
        let text = r.human();
        assert!(
            text.contains("\n  peer0.BankB height 23, never reached the final height,"),
            "{text}"
        );
        assert!(text.contains("\n  agreement   NO:"), "{text}");
        assert!(
            text.contains("\n  WARNING     1,000 accepted transactions were not found committed"),
            "{text}"
        );
        assert!(
            text.ends_with("\n  WARNING     1,999 MVCC_READ_CONFLICTs, 2,000 planned"),
            "{text}"
        );
    }

    #[test]
    fn peer_report_serialises_with_the_documented_field_names() {
        let json = match serde_json::to_value(peer_report()) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(json["tx_per_s"], 5_000.0);
        assert_eq!(json["txs_committed"], 20_000);
        assert_eq!(json["codes"]["VALID"], 18_000);
        assert_eq!(json["commit_hashes_agree"], true);
        assert_eq!(json["peers"][1]["name"], "peer0.BankB");
        assert_eq!(json["peers"][1]["tx_per_s"], 5_000.0);
        assert_eq!(json["consensus"], "solo");
        assert_eq!(json["clients"], 4);
        assert_eq!(json["latency_ms_p99"], 1_900.5);
        assert_eq!(json["throughput"]["interval_s"], 0.1);
        assert_eq!(json["throughput"]["tx_per_s"][1], 5_000.0);
        assert_eq!(json["latency_ms_percentiles"]["percent"][103], 100.0);
        assert_eq!(json["latency_ms_percentiles"]["value"][103], 2_000.0);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn human_summary() {
        let expected = "\
orderer benchmark on channel \"bench\" (solo, ack enqueued)
  load        4 Broadcast streams, 1,024 payload bytes per envelope
  signing     all envelopes signed before the clock started
  broadcast   100,000 sent, 99,988 accepted, 12 rejected
  deliver     99,985 delivered in 98 blocks, 3 lost, 0 duplicated
  duration    1.634 s (first submit → last delivery)
  throughput  61,187 tx/s delivered, 63,000 tx/s accepted
  latency     p50 21.40 ms, p99 48.00 ms, max 60.20 ms (submit → delivered)
  rejections  SERVICE_UNAVAILABLE 12
  WARNING     3 accepted envelopes were never delivered";
        assert_eq!(report().human(), expected);
    }

    #[test]
    fn human_summary_when_nothing_was_delivered() {
        let r = OrdererBenchReport {
            txs_accepted: 0,
            txs_rejected: 100_000,
            txs_delivered: 0,
            txs_lost: 0,
            txs_duplicated: 2,
            rejections: [
                ("FORBIDDEN".to_string(), 99_000),
                ("NOT_FOUND".to_string(), 1_000),
            ]
            .into_iter()
            .collect(),
            ..report()
        };
        let text = r.human();
        assert!(
            text.contains("\n  latency     n/a (nothing delivered)\n"),
            "{text}"
        );
        assert!(
            text.contains("\n  rejections  FORBIDDEN 99,000, NOT_FOUND 1,000\n"),
            "{text}"
        );
        assert!(
            text.ends_with("\n  WARNING     2 extra deliveries of envelopes already delivered"),
            "{text}"
        );
        assert!(!text.contains("never delivered"), "{text}");
    }

    #[test]
    fn serialises_with_the_documented_field_names() {
        let json = match serde_json::to_value(report()) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(json["txs_lost"], 3);
        assert_eq!(json["latency_ms_p99"], 48.0);
        assert_eq!(json["rejections"]["SERVICE_UNAVAILABLE"], 12);
        assert_eq!(json["ack_mode"], "enqueued");
        assert_eq!(json["throughput"]["tx_per_s"][0], 50_000.0);
        assert_eq!(json["latency_ms_percentiles"]["value"][50], 21.404);
    }
}
