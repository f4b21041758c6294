//! Latency statistics: nearest-rank percentiles over exact samples.
//!
//! A run keeps one latency per delivered envelope (8 bytes each), so percentiles are
//! exact rather than estimated from a histogram.

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
}
