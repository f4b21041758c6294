//! Capped exponential backoff with jitter, from a caller-supplied RNG.
//!
//! Pure: the caller seeds the RNG (so a run replays exactly under a seed) and sleeps for
//! the delays itself.

use rand::Rng;

/// Delays between reconnection attempts.
///
/// The `n`-th consecutive failure (from 0) waits a delay drawn uniformly from
/// `[c / 2, c]` where `c = min(max_ms, base_ms · 2ⁿ)` ("equal jitter"): it grows
/// exponentially up to the cap, never exceeds it, and never drops to zero, while peers
/// that lost the same orderer at the same moment spread their reconnects apart.
/// [`Backoff::reset`] (after a block verified) starts again from `base_ms`.
#[derive(Debug, Clone)]
pub struct Backoff<R> {
    base_ms: u64,
    max_ms: u64,
    failures: u32,
    rng: R,
}

impl<R: Rng> Backoff<R> {
    /// A backoff from `base_ms` up to `max_ms` (raised to `base_ms` if below it); `rng`
    /// draws the jitter.
    pub fn new(base_ms: u64, max_ms: u64, rng: R) -> Self {
        Self {
            base_ms,
            max_ms: max_ms.max(base_ms),
            failures: 0,
            rng,
        }
    }

    /// The delay before the next attempt, in milliseconds; counts one more failure.
    pub fn next_delay_ms(&mut self) -> u64 {
        let ceiling = self.ceiling_ms();
        self.failures = self.failures.saturating_add(1);
        let floor = ceiling / 2;
        floor + self.rng.gen_range(0..=ceiling - floor)
    }

    /// The delay before the next attempt without jitter (the ceiling itself), in
    /// milliseconds; counts one more failure. For pulls whose retries need no spreading
    /// and whose tests want exact instants.
    pub fn next_ceiling_ms(&mut self) -> u64 {
        let ceiling = self.ceiling_ms();
        self.failures = self.failures.saturating_add(1);
        ceiling
    }

    /// Forgets the failures: the next delay is drawn from the base again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// `min(max_ms, base_ms · 2^failures)` without overflow.
    fn ceiling_ms(&self) -> u64 {
        let factor = 1u64.checked_shl(self.failures).unwrap_or(u64::MAX);
        self.base_ms.saturating_mul(factor).min(self.max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn delays_double_up_to_the_cap_within_their_jitter_range() {
        let mut b = Backoff::new(100, 10_000, StdRng::seed_from_u64(7));
        let ceilings = [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000];
        for (n, c) in ceilings.into_iter().enumerate() {
            let d = b.next_delay_ms();
            assert!(
                (c / 2..=c).contains(&d),
                "failure {n}: delay {d} not in [{}, {c}]",
                c / 2
            );
        }
        assert_eq!(b.failures(), 10);
        for _ in 0..200 {
            assert!(b.next_delay_ms() <= 10_000, "never above the cap");
        }
        assert_eq!(b.ceiling_ms(), 10_000, "no overflow after many failures");
    }

    #[test]
    fn reset_starts_again_from_the_base() {
        let mut b = Backoff::new(100, 10_000, StdRng::seed_from_u64(1));
        for _ in 0..20 {
            b.next_delay_ms();
        }
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!((50..=100).contains(&b.next_delay_ms()));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let run = |seed| {
            let mut b = Backoff::new(100, 10_000, StdRng::seed_from_u64(seed));
            (0..12).map(|_| b.next_delay_ms()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43), "the jitter depends on the seed");
    }

    #[test]
    fn a_cap_below_the_base_is_raised_to_it() {
        let mut b = Backoff::new(500, 10, StdRng::seed_from_u64(3));
        assert!((250..=500).contains(&b.next_delay_ms()));
        assert!((250..=500).contains(&b.next_delay_ms()));
    }

    #[test]
    fn without_jitter_the_delay_is_the_ceiling() {
        let mut b = Backoff::new(500, 2_000, StdRng::seed_from_u64(3));
        let delays: Vec<u64> = (0..4).map(|_| b.next_ceiling_ms()).collect();
        assert_eq!(delays, vec![500, 1_000, 2_000, 2_000]);
        b.reset();
        assert_eq!(b.next_ceiling_ms(), 500);
    }

    #[test]
    fn a_zero_base_means_no_delay() {
        let mut b = Backoff::new(0, 0, StdRng::seed_from_u64(3));
        assert_eq!(b.next_delay_ms(), 0);
    }
}
