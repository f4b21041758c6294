//! The result of `ordo bench orderer`: a serialisable report and its text form.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

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

/// `1234567` → `"1,234,567"`.
fn thousands(n: u64) -> String {
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
            blocks_delivered: 98,
            rejections: [("SERVICE_UNAVAILABLE".to_string(), 12)]
                .into_iter()
                .collect(),
        }
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
    }
}
