//! Latency statistics — nearest-rank percentiles over exact samples — and throughput over
//! time.
//!
//! A run keeps one latency per delivered envelope (8 bytes each), so percentiles are
//! exact rather than estimated from a histogram. Throughput over time is counted after
//! the run from the times the run already recorded (a delivery time per envelope, a
//! commit time per block), so it costs the hot paths nothing.

use std::time::Duration;

use serde::Serialize;

/// The nearest-rank percentile `p` (0–100) of an ascending slice: the smallest sample such
/// that at least `p`% of the samples are less than or equal to it. `None` when empty.
///
/// `p` 0 gives the minimum, 100 the maximum; `p` outside 0–100 is clamped.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
    // Rank is 1-based. The small epsilon keeps an exact rank (e.g. 99.9% of 1000 = 999)
    // from being pushed up by one by floating-point rounding of `p`.
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil();
    let rank = (rank.max(1.0) as usize).min(sorted.len());
    Some(sorted[rank - 1])
}

/// A summary of latency samples, in the samples' unit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl LatencySummary {
    /// Sorts `samples` in place and summarises them; all zero when there are none.
    /// NaN samples sort last (they cannot come from durations).
    pub fn from_samples(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable_by(f64::total_cmp);
        let pct = |p| percentile(samples, p).unwrap_or(0.0);
        Self {
            count: samples.len(),
            p50: pct(50.0),
            p99: pct(99.0),
            max: pct(100.0),
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
        }
    }
}

/// The percentiles a [`PercentileCurve`] samples: every whole percent, then the tail in
/// finer steps, where latency distributions differ most.
const CURVE_PERCENTS: [f64; 4] = [99.5, 99.9, 99.99, 100.0];

/// A distribution as (percentile, value) points, dense enough to draw as a curve (about
/// a hundred points, whatever the number of samples), so that a report can carry it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PercentileCurve {
    /// Percentiles, ascending: 0, 1, …, 99, then 99.5, 99.9, 99.99 and 100 (the
    /// largest sample). Empty when there were no samples.
    pub percent: Vec<f64>,
    /// The nearest-rank sample at each of `percent`, in the samples' unit (ascending).
    pub value: Vec<f64>,
}

impl PercentileCurve {
    /// The curve of `sorted`, which must be ascending (as [`LatencySummary::from_samples`]
    /// leaves its samples).
    pub fn from_sorted(sorted: &[f64]) -> Self {
        assert!(
            sorted.is_sorted_by(|a, b| a.total_cmp(b).is_le()),
            "percentiles need ascending samples"
        );
        if sorted.is_empty() {
            return Self::default();
        }
        let percent: Vec<f64> = (0..100u32).map(f64::from).chain(CURVE_PERCENTS).collect();
        let value = percent
            .iter()
            .map(|&p| percentile(sorted, p).unwrap_or(0.0))
            .collect();
        Self { percent, value }
    }
}

/// Throughput over time: how many transactions per second a run achieved in each of
/// consecutive intervals of equal width, the first starting when its clock started.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ThroughputSeries {
    /// Width of every interval, in seconds (see [`ThroughputSeries::interval_for`]).
    pub interval_s: f64,
    /// Transactions per second in each interval: its count divided by `interval_s`. The
    /// last interval may be cut short by the end of the run and then reads low; in
    /// exchange, `sum(tx_per_s) × interval_s` is exactly the number counted.
    pub tx_per_s: Vec<f64>,
}

impl ThroughputSeries {
    /// The interval for a run lasting `span`: 1 s, like the progress line, for runs over
    /// 50 s; finer for shorter runs (0.5, 0.2 or 0.1 s), so that they still have at least
    /// about 50 points to draw. Finer intervals show the block cadence as spikes.
    pub fn interval_for(span: Duration) -> Duration {
        let ms = match span.as_secs_f64() {
            s if s <= 10.0 => 100,
            s if s <= 20.0 => 200,
            s if s <= 50.0 => 500,
            _ => 1000,
        };
        Duration::from_millis(ms)
    }

    /// Counts `events` — (time since the start of the clock, transactions) — into the
    /// intervals of a run lasting `span` (at least one interval). Events at or after
    /// `span` count in the last interval.
    pub fn from_events(span: Duration, events: impl IntoIterator<Item = (Duration, u64)>) -> Self {
        let interval = Self::interval_for(span);
        let width = interval.as_secs_f64();
        let n = span.as_nanos().div_ceil(interval.as_nanos()).max(1);
        let mut counts = vec![0u64; usize::try_from(n).unwrap_or(usize::MAX)];
        let last = counts.len() - 1;
        for (at, txs) in events {
            let k = usize::try_from(at.as_nanos() / interval.as_nanos()).unwrap_or(last);
            counts[k.min(last)] += txs;
        }
        Self {
            interval_s: width,
            tx_per_s: counts.into_iter().map(|c| c as f64 / width).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_one_to_hundred() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 1.0), Some(1.0));
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 50.5), Some(51.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 99.1), Some(100.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 250.0), Some(100.0));
        assert_eq!(percentile(&v, -3.0), Some(1.0));
    }

    #[test]
    fn percentile_small_and_exact_ranks() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.5], 0.0), Some(7.5));
        assert_eq!(percentile(&[7.5], 99.0), Some(7.5));
        let four = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&four, 25.0), Some(1.0));
        assert_eq!(percentile(&four, 50.0), Some(2.0));
        assert_eq!(percentile(&four, 50.1), Some(3.0));
        assert_eq!(percentile(&four, 75.0), Some(3.0));
        assert_eq!(percentile(&four, 99.0), Some(4.0));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 99.0), Some(10.0));
        assert_eq!(percentile(&ten, 90.0), Some(9.0));
        let thousand: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&thousand, 99.9), Some(999.0));
        assert_eq!(percentile(&thousand, 99.0), Some(990.0));
        assert_eq!(percentile(&thousand, 0.1), Some(1.0));
        assert_eq!(percentile(&thousand, 0.3), Some(3.0));
    }

    #[test]
    fn summary_sorts_and_summarises() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        let s = LatencySummary::from_samples(&mut v);
        assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(
            s,
            LatencySummary {
                count: 5,
                p50: 3.0,
                p99: 5.0,
                max: 5.0,
                mean: 3.0
            }
        );
        assert_eq!(
            LatencySummary::from_samples(&mut []),
            LatencySummary::default()
        );
    }

    #[test]
    fn curve_samples_every_percent_and_the_tail() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let c = PercentileCurve::from_sorted(&v);
        assert_eq!(c.percent.len(), 104);
        assert_eq!(c.value.len(), 104);
        assert_eq!((c.percent[0], c.value[0]), (0.0, 1.0));
        assert_eq!((c.percent[50], c.value[50]), (50.0, 500.0));
        assert_eq!((c.percent[99], c.value[99]), (99.0, 990.0));
        assert_eq!(&c.percent[100..], &[99.5, 99.9, 99.99, 100.0]);
        assert_eq!(&c.value[100..], &[995.0, 999.0, 1000.0, 1000.0]);
        assert!(c.percent.windows(2).all(|w| w[0] < w[1]));
        assert!(c.value.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            PercentileCurve::from_sorted(&[]),
            PercentileCurve::default()
        );
    }

    #[test]
    #[should_panic(expected = "ascending")]
    fn curve_refuses_unsorted_samples() {
        let _ = PercentileCurve::from_sorted(&[2.0, 1.0]);
    }

    #[test]
    fn interval_grows_with_the_run() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(ThroughputSeries::interval_for(ms(0)), ms(100));
        assert_eq!(ThroughputSeries::interval_for(s(10)), ms(100));
        assert_eq!(ThroughputSeries::interval_for(s(11)), ms(200));
        assert_eq!(ThroughputSeries::interval_for(s(50)), ms(500));
        assert_eq!(ThroughputSeries::interval_for(s(51)), ms(1000));
        assert_eq!(ThroughputSeries::interval_for(s(7200)), ms(1000));
    }

    #[test]
    fn series_counts_events_per_interval() {
        let ms = Duration::from_millis;
        // 0.45 s: five intervals of 0.1 s, the last one cut short.
        let events = [
            (ms(0), 2),
            (ms(99), 1),
            (ms(100), 4),
            (ms(350), 1),
            (ms(450), 3),
            (ms(900), 1),
        ];
        let t = ThroughputSeries::from_events(ms(450), events);
        assert_eq!(t.interval_s, 0.1);
        assert_eq!(t.tx_per_s, vec![30.0, 40.0, 0.0, 10.0, 40.0]);
        let total: f64 = t.tx_per_s.iter().sum::<f64>() * t.interval_s;
        assert!((total - 12.0).abs() < 1e-9, "{total}");
        // Nothing happened: one empty interval.
        assert_eq!(ThroughputSeries::from_events(ms(0), []).tx_per_s, vec![0.0]);
        // A long run counts whole seconds.
        let t = ThroughputSeries::from_events(Duration::from_secs(60), [(ms(59_999), 7)]);
        assert_eq!(
            (t.interval_s, t.tx_per_s.len(), t.tx_per_s[59]),
            (1.0, 60, 7.0)
        );
    }
}
