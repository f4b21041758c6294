//! Endurance figures: a long run cut into fixed windows (throughput and latency per
//! minute, say), and how the end of the run compares with its beginning.
//!
//! A run that loses speed over hours — compaction debt, a growing index, a leak — hides
//! in a whole-run average: the first hour's speed pays for the last one's slowness. Each
//! [`Window`] is computed only from the transactions that *finished* in it, so a window
//! shows what a client saw then; [`Drift`] puts the first and the last stretch of the run
//! side by side, the comparison an endurance target is stated in ("the last 10 minutes
//! within 10% of the first 10").
//!
//! Everything here is a pure function of the samples the run recorded, so the same JSON
//! report can be re-cut after the fact and the functions are tested without a network.

use std::time::Duration;

use serde::Serialize;

use crate::stats::LatencySummary;

/// One finished transaction as a window needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finished {
    /// When it finished, in milliseconds since the load started.
    pub at_ms: u32,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
    /// It counts towards throughput (for `ordo bench e2e`: its code was VALID).
    pub counted: bool,
}

/// What happened in one window of a run: the transactions that finished in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Start of the window, in seconds since the load started.
    pub start_s: f64,
    /// End of the window (the last one ends with the run and may be shorter).
    pub end_s: f64,
    /// Transactions that finished in it, counted or not.
    pub finished: u64,
    /// Counted transactions that finished in it.
    pub counted: u64,
    /// `counted` per second of the window.
    pub tx_per_s: f64,
    /// Median latency of the transactions that finished in it (0 when none did).
    pub latency_ms_p50: f64,
    /// 99th percentile of the same.
    pub latency_ms_p99: f64,
}

/// The first and the last stretch of a run, side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// Length of each stretch, in seconds.
    pub span_s: f64,
    /// Counted transactions per second in the first stretch.
    pub first_tx_per_s: f64,
    /// The same in the last stretch.
    pub last_tx_per_s: f64,
    /// `last / first − 1`, in percent: negative when the run slowed down.
    pub throughput_change_pct: f64,
    /// 99th percentile latency in the first stretch, in milliseconds.
    pub first_p99_ms: f64,
    /// The same in the last stretch.
    pub last_p99_ms: f64,
    /// `last / first − 1`, in percent: positive when latency grew.
    pub p99_change_pct: f64,
}

/// The stretch [`drift`] compares: 10 minutes, the span endurance targets are stated in.
pub const DRIFT_SPAN: Duration = Duration::from_secs(600);

/// Cuts a run lasting `run` into windows of `width` (the last one cut short by the end of
/// the run), each summarising the transactions that finished in it. Transactions that
/// finished at or after `run` count in the last window. No windows for a zero width.
pub fn windows(run: Duration, width: Duration, finished: &[Finished]) -> Vec<Window> {
    let width_ms = width.as_millis();
    if width_ms == 0 {
        return Vec::new();
    }
    let run_ms = run.as_millis().max(1);
    let n = usize::try_from(run_ms.div_ceil(width_ms)).unwrap_or(usize::MAX);
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut counted = vec![0u64; n];
    for f in finished {
        let k = usize::try_from(u128::from(f.at_ms) / width_ms)
            .unwrap_or(n - 1)
            .min(n - 1);
        latencies[k].push(f.latency_ms);
        counted[k] += u64::from(f.counted);
    }
    latencies
        .into_iter()
        .zip(counted)
        .enumerate()
        .map(|(k, (mut lat, counted))| {
            let start_ms = k as u128 * width_ms;
            let end_ms = (start_ms + width_ms).min(run_ms);
            let seconds = (end_ms - start_ms) as f64 / 1000.0;
            let summary = LatencySummary::from_samples(&mut lat);
            Window {
                start_s: start_ms as f64 / 1000.0,
                end_s: end_ms as f64 / 1000.0,
                finished: summary.count as u64,
                counted,
                tx_per_s: if seconds > 0.0 {
                    counted as f64 / seconds
                } else {
                    0.0
                },
                latency_ms_p50: summary.p50,
                latency_ms_p99: summary.p99,
            }
        })
        .collect()
}

/// The first `span` of a run lasting `run` against its last `span`, or `None` when the
/// run is shorter than two spans (the stretches would overlap and the comparison mean
/// nothing) or either stretch has no transactions.
pub fn drift(run: Duration, span: Duration, finished: &[Finished]) -> Option<Drift> {
    if span.is_zero() || run < span * 2 {
        return None;
    }
    let first_end = span.as_millis();
    let last_start = (run - span).as_millis();
    let stretch = |inside: &dyn Fn(u128) -> bool| {
        let mut latencies = Vec::new();
        let mut counted = 0u64;
        for f in finished.iter().filter(|f| inside(u128::from(f.at_ms))) {
            latencies.push(f.latency_ms);
            counted += u64::from(f.counted);
        }
        let summary = LatencySummary::from_samples(&mut latencies);
        (summary.count > 0).then(|| (counted as f64 / span.as_secs_f64(), summary.p99))
    };
    let (first_tx_per_s, first_p99_ms) = stretch(&|ms| ms < first_end)?;
    let (last_tx_per_s, last_p99_ms) = stretch(&|ms| ms >= last_start)?;
    Some(Drift {
        span_s: span.as_secs_f64(),
        first_tx_per_s,
        last_tx_per_s,
        throughput_change_pct: change_pct(first_tx_per_s, last_tx_per_s),
        first_p99_ms,
        last_p99_ms,
        p99_change_pct: change_pct(first_p99_ms, last_p99_ms),
    })
}

/// `after / before − 1` in percent; 0 when both are 0, infinite when only `before` is.
fn change_pct(before: f64, after: f64) -> f64 {
    if before == 0.0 {
        return if after == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (after / before - 1.0) * 100.0
}

/// The windows as a text table, one line per window (for the human report).
pub fn table(windows: &[Window], disk_bytes: &dyn Fn(f64) -> Option<u64>) -> String {
    let mut s = String::from("  window (s)      tx/s   p50 ms   p99 ms        disk");
    for w in windows {
        let disk = disk_bytes(w.end_s).map_or_else(|| "-".to_string(), crate::disk::human_bytes);
        s.push_str(&format!(
            "\n  {:>5.0}–{:<5.0} {:>9.0} {:>8.1} {:>8.1} {:>11}",
            w.start_s, w.end_s, w.tx_per_s, w.latency_ms_p50, w.latency_ms_p99, disk
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(at_ms: u32, latency_ms: f64, counted: bool) -> Finished {
        Finished {
            at_ms,
            latency_ms,
            counted,
        }
    }

    #[test]
    fn each_transaction_lands_in_the_window_it_finished_in() {
        let finished = [
            tx(0, 10.0, true),
            tx(59_999, 30.0, true),
            tx(60_000, 50.0, false),
            tx(150_000, 70.0, true),
            // Finished after the clock stopped: counts in the last window.
            tx(170_000, 90.0, true),
        ];
        let w = windows(Duration::from_secs(150), Duration::from_secs(60), &finished);
        assert_eq!(w.len(), 3);
        assert_eq!((w[0].start_s, w[0].end_s), (0.0, 60.0));
        assert_eq!((w[2].start_s, w[2].end_s), (120.0, 150.0));
        assert_eq!((w[0].finished, w[0].counted), (2, 2));
        assert_eq!((w[1].finished, w[1].counted), (1, 0));
        assert_eq!((w[2].finished, w[2].counted), (2, 2));
        assert!((w[0].tx_per_s - 2.0 / 60.0).abs() < 1e-12);
        assert_eq!(w[1].tx_per_s, 0.0);
        // The short last window is divided by its own 30 s.
        assert!((w[2].tx_per_s - 2.0 / 30.0).abs() < 1e-12);
        assert_eq!((w[0].latency_ms_p50, w[0].latency_ms_p99), (10.0, 30.0));
        assert_eq!((w[1].latency_ms_p50, w[1].latency_ms_p99), (50.0, 50.0));
        assert_eq!((w[2].latency_ms_p50, w[2].latency_ms_p99), (70.0, 90.0));
    }

    #[test]
    fn an_empty_window_reads_zero_and_no_width_gives_no_windows() {
        let w = windows(Duration::from_secs(120), Duration::from_secs(60), &[]);
        assert_eq!(w.len(), 2);
        assert!(w
            .iter()
            .all(|w| w.finished == 0 && w.tx_per_s == 0.0 && w.latency_ms_p99 == 0.0));
        assert!(windows(Duration::from_secs(120), Duration::ZERO, &[]).is_empty());
    }

    /// A run of `minutes` at `rate(minute)` tx/s, every transaction taking
    /// `latency(minute)` ms.
    fn run(minutes: u32, rate: impl Fn(u32) -> u32, latency: impl Fn(u32) -> f64) -> Vec<Finished> {
        (0..minutes)
            .flat_map(|m| {
                let n = rate(m) * 60;
                let latency = latency(m);
                (0..n).map(move |i| tx(m * 60_000 + i * 60_000 / n, latency, true))
            })
            .collect()
    }

    #[test]
    fn drift_compares_the_first_and_last_stretch() {
        // 30 minutes: 100 tx/s at 20 ms for the first 10, 80 tx/s at 30 ms for the last.
        let finished = run(
            30,
            |m| if m < 20 { 100 } else { 80 },
            |m| if m < 20 { 20.0 } else { 30.0 },
        );
        let d = drift(Duration::from_secs(1800), DRIFT_SPAN, &finished).expect("long enough");
        assert_eq!(d.span_s, 600.0);
        assert!((d.first_tx_per_s - 100.0).abs() < 1e-9, "{d:?}");
        assert!((d.last_tx_per_s - 80.0).abs() < 1e-9, "{d:?}");
        assert!((d.throughput_change_pct + 20.0).abs() < 1e-9, "{d:?}");
        assert_eq!((d.first_p99_ms, d.last_p99_ms), (20.0, 30.0));
        assert!((d.p99_change_pct - 50.0).abs() < 1e-9, "{d:?}");
    }

    #[test]
    fn a_steady_run_shows_no_drift() {
        let finished = run(20, |_| 50, |_| 12.0);
        let d = drift(Duration::from_secs(1200), DRIFT_SPAN, &finished).expect("two spans");
        assert!(d.throughput_change_pct.abs() < 1e-9, "{d:?}");
        assert_eq!(d.p99_change_pct, 0.0);
    }

    #[test]
    fn drift_needs_two_spans_with_transactions_in_both() {
        let finished = run(19, |_| 50, |_| 12.0);
        assert_eq!(
            drift(Duration::from_secs(1140), DRIFT_SPAN, &finished),
            None
        );
        // Nothing finished in the last 10 minutes: no comparison, not a 100% drop.
        let stalled = run(10, |_| 50, |_| 12.0);
        assert_eq!(drift(Duration::from_secs(1200), DRIFT_SPAN, &stalled), None);
        assert_eq!(
            drift(Duration::from_secs(1200), Duration::ZERO, &stalled),
            None
        );
    }

    #[test]
    fn change_in_percent() {
        assert_eq!(change_pct(0.0, 0.0), 0.0);
        assert_eq!(change_pct(0.0, 1.0), f64::INFINITY);
        assert!((change_pct(200.0, 150.0) + 25.0).abs() < 1e-12);
    }

    #[test]
    fn the_table_has_a_line_per_window_with_its_disk_use() {
        let w = windows(
            Duration::from_secs(120),
            Duration::from_secs(60),
            &[tx(1_000, 5.0, true)],
        );
        let t = table(&w, &|end_s| (end_s < 100.0).then_some(3 << 20));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[1].contains("3.0 MiB"), "{t}");
        assert!(lines[2].trim_end().ends_with('-'), "{t}");
    }
}
