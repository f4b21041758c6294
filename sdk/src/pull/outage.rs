//! Which failures of a pull are worth a WARN line.
//!
//! A source that is down makes a pull retry every few seconds; logging each retry at
//! WARN would bury the one line that says what is wrong. So the first failure is a WARN,
//! repeats are DEBUG with a WARN reminder every [`OUTAGE_REMINDER`], and the stream that
//! opens again says how long it took. Pure: the caller passes the instants.

use std::time::{Duration, Instant};

/// How often a continuing outage is logged at WARN again.
pub const OUTAGE_REMINDER: Duration = Duration::from_secs(300);

/// Failed streams since the last one that opened.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    since: Option<Instant>,
    failures: u32,
    last_warned: Option<Instant>,
}

impl Outage {
    /// Records a failure at `now`; whether to log it at WARN.
    pub(crate) fn failed(&mut self, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.since.get_or_insert(now);
        let warn = self
            .last_warned
            .is_none_or(|last| now.duration_since(last) >= OUTAGE_REMINDER);
        if warn {
            self.last_warned = Some(now);
        }
        warn
    }

    /// Failures since the last stream that opened.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// A stream opened: the outage's failure count and start, if there was one.
    pub(crate) fn recovered(&mut self) -> Option<(u32, Instant)> {
        let since = self.since.take()?;
        let failures = std::mem::take(&mut self.failures);
        self.last_warned = None;
        Some((failures, since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_warns_once_then_reminds_and_its_end_reports_its_length() {
        let t0 = Instant::now();
        let mut o = Outage::default();
        assert_eq!(o.recovered(), None, "no outage yet");
        assert!(o.failed(t0), "the first failure is a warning");
        for i in 1..10 {
            assert!(!o.failed(t0 + Duration::from_secs(i)), "repeats are not");
        }
        assert!(
            o.failed(t0 + OUTAGE_REMINDER),
            "a reminder after the interval"
        );
        assert!(!o.failed(t0 + OUTAGE_REMINDER + Duration::from_secs(1)));
        assert_eq!(o.failures(), 12);
        assert_eq!(o.recovered(), Some((12, t0)));
        assert_eq!(o.recovered(), None, "reported once");
        assert!(
            o.failed(t0 + OUTAGE_REMINDER * 2),
            "a new outage warns again"
        );
    }
}
