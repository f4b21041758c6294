//! Live counters shared by the streams, and the once-a-second progress line.
//!
//! Each counter is a relaxed atomic add per envelope (per block for deliveries): the only
//! state the hot paths share, and only for display; the report is computed from what
//! each task owns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::peers::CommitProgress;

/// Running totals across all streams.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub delivered: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What the live line reports besides the Broadcast counters.
pub(crate) enum Live {
    /// `ordo bench orderer`: envelopes delivered by the orderer.
    Orderer,
    /// `ordo bench peer`: envelopes ordered, and committed on every peer.
    Peer(Arc<CommitProgress>),
}

/// One progress line of `ordo bench orderer`.
pub(crate) fn line(elapsed: Duration, c: &Counters, delivered_last_second: u64) -> String {
    format!(
        "[{:>6.1}s] sent {}  accepted {}  rejected {}  delivered {}  ({} tx/s delivered)",
        elapsed.as_secs_f64(),
        Counters::get(&c.sent),
        Counters::get(&c.accepted),
        Counters::get(&c.rejected),
        Counters::get(&c.delivered),
        delivered_last_second,
    )
}

/// One progress line of `ordo bench peer`: `committed` is the transactions of ours in
/// blocks that every peer has committed.
pub(crate) fn peer_line(
    elapsed: Duration,
    c: &Counters,
    committed: u64,
    committed_last_second: u64,
) -> String {
    format!(
        "[{:>6.1}s] sent {}  accepted {}  rejected {}  ordered {}  committed on every peer {}  ({} tx/s committed)",
        elapsed.as_secs_f64(),
        Counters::get(&c.sent),
        Counters::get(&c.accepted),
        Counters::get(&c.rejected),
        Counters::get(&c.delivered),
        committed,
        committed_last_second,
    )
}

/// Prints a progress line to stderr about once a second, forever (abort the task to stop).
pub(crate) async fn print_every_second(counters: Arc<Counters>, start: Instant, live: Live) {
    let done = |live: &Live| match live {
        Live::Orderer => Counters::get(&counters.delivered),
        Live::Peer(p) => p.committed_on_every_peer(),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    let mut last = (Instant::now(), 0u64);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let count = done(&live);
        let secs = now.duration_since(last.0).as_secs_f64();
        let rate = if secs > 0.0 {
            (count.saturating_sub(last.1) as f64 / secs).round() as u64
        } else {
            0
        };
        last = (now, count);
        let elapsed = now.duration_since(start);
        let text = match &live {
            Live::Orderer => line(elapsed, &counters, rate),
            Live::Peer(_) => peer_line(elapsed, &counters, count, rate),
        };
        eprintln!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line() {
        let c = Counters::default();
        Counters::add(&c.sent, 10);
        Counters::add(&c.accepted, 8);
        Counters::add(&c.rejected, 1);
        Counters::add(&c.delivered, 5);
        assert_eq!(
            line(Duration::from_millis(2500), &c, 42),
            "[   2.5s] sent 10  accepted 8  rejected 1  delivered 5  (42 tx/s delivered)"
        );
        assert_eq!(
            peer_line(Duration::from_millis(2500), &c, 3, 7),
            "[   2.5s] sent 10  accepted 8  rejected 1  ordered 5  committed on every peer 3  (7 tx/s committed)"
        );
    }
}
