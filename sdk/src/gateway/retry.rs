//! When and how often to submit a transaction again.
//!
//! A transaction that lost an MVCC race (another one changed what it read) succeeds when
//! proposed afresh — unless every loser retries at the same moment and collides again.
//! Waits therefore grow exponentially and are *jittered*: each wait is drawn uniformly
//! from `[0, ceiling]` ("full jitter"), where the ceiling doubles per attempt up to a
//! maximum, so contending clients spread over time instead of marching in lockstep.

use std::time::Duration;

use rand::Rng;

/// How a submission is retried: attempts and backoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The ceiling of the first wait.
    pub initial_backoff: Duration,
    /// The largest ceiling any wait may have.
    pub max_backoff: Duration,
    /// How much the ceiling grows per attempt (≥ 1).
    pub multiplier: f64,
    /// Draw each wait from `[0, ceiling]` (true, the default) or wait the full ceiling.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// 10 attempts, waits up to 100 ms, 200 ms, 400 ms, … capped at 5 s, jittered: under
    /// heavy contention (200 concurrent transfers over 20 accounts) that spreads retries
    /// thinly enough for every one to commit; uncontended, a retry comes within 100 ms.
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The default policy with `attempts` attempts in all.
    pub fn with_attempts(attempts: u32) -> Self {
        Self {
            max_attempts: attempts,
            ..Self::default()
        }
    }

    /// The ceiling of the wait after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let growth = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let secs =
            (self.initial_backoff.as_secs_f64() * growth).min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// The wait after failed attempt `attempt` (1-based), drawn from `rng`.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        if self.jitter && !ceiling.is_zero() {
            Duration::from_secs_f64(rng.gen_range(0.0..=ceiling.as_secs_f64()))
        } else {
            ceiling
        }
    }

    /// Attempts in all, at least 1.
    pub fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ceilings_grow_by_the_multiplier_up_to_the_maximum() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(7), Duration::from_secs(5));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(5));
        let flat = RetryPolicy {
            multiplier: 0.5,
            ..p
        };
        assert_eq!(flat.ceiling(5), Duration::from_millis(100), "never shrinks");
        assert_eq!(RetryPolicy::with_attempts(0).attempts(), 1);
    }

    #[test]
    fn jittered_waits_spread_over_the_whole_range() {
        let p = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let waits: Vec<Duration> = (0..1000).map(|_| p.backoff(3, &mut rng)).collect();
        let ceiling = p.ceiling(3);
        assert!(waits.iter().all(|w| *w <= ceiling));
        let low = waits.iter().filter(|w| **w < ceiling / 4).count();
        let high = waits.iter().filter(|w| **w > ceiling * 3 / 4).count();
        assert!(low > 150 && high > 150, "uniform: {low} low, {high} high");
        let fixed = RetryPolicy { jitter: false, ..p };
        assert_eq!(fixed.backoff(3, &mut rng), ceiling);
    }
}
