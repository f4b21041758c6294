//! Progress lines for long client commands (`ordo block verify`, `ordo block fetch`).
//!
//! A chain of a million blocks takes minutes to fetch and verify; without a sign of life
//! an operator cannot tell a slow command from a hung one. A [`Progress`] prints one line
//! to stderr at most every two seconds (stdout stays the command's result), so a log file
//! or CI output gets a readable trail rather than a flood.

use std::time::{Duration, Instant};

/// How often a progress line is printed, at most.
const EVERY: Duration = Duration::from_secs(2);

/// Counts blocks and envelopes and reports them now and then.
pub struct Progress {
    what: &'static str,
    started: Instant,
    last_print: Instant,
    blocks: u64,
    envelopes: u64,
}

impl Progress {
    /// Starts counting; `what` is the verb of the lines ("verified", "fetched").
    pub fn new(what: &'static str) -> Self {
        let now = Instant::now();
        Self {
            what,
            started: now,
            last_print: now,
            blocks: 0,
            envelopes: 0,
        }
    }

    /// One more block of `envelopes` envelopes; prints a line when it is time.
    pub fn block(&mut self, envelopes: usize) {
        self.blocks += 1;
        self.envelopes += envelopes as u64;
        if self.last_print.elapsed() >= EVERY {
            self.last_print = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    /// The current line: counts, elapsed time and rate.
    pub fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.blocks as f64 / secs
        } else {
            0.0
        };
        format!(
            "{} {} blocks ({} envelopes) in {:.0} s, {:.0} blocks/s",
            self.what, self.blocks, self.envelopes, secs, rate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocks_and_envelopes() {
        let mut p = Progress::new("verified");
        p.block(3);
        p.block(0);
        p.block(5);
        let line = p.line();
        assert!(
            line.starts_with("verified 3 blocks (8 envelopes) in"),
            "{line}"
        );
    }
}
