//! Seeded simulations of the consensus cores: the same code the orderers run, driven by
//! one random seed through faults the protocol must survive. A failure names the seed and
//! the step; `ordo-sim --core <core> --seed <seed>` (or the test with `ORDO_SIM_SEED`)
//! replays it exactly, because nothing but the seed decides what happens.
//!
//! - [`cutter`]: the block cutter under random envelopes, sizes, config envelopes, limit
//!   changes and cuts.
//! - [`kafka`]: three orderers' kafka cores on one simulated partition, with lost
//!   produces and delivery reports, arbitrary consumption interleavings, duplicate
//!   time-to-cut messages, racing config updates, and crashes that keep only written
//!   blocks.
//! - [`raft`]: three consenters running the orderer's raft loop turn by turn over real
//!   ledgers, with messages lost, duplicated and reordered, nodes cut off, crashed
//!   (keeping only synced data) and restarted, and a simulated clock.

use std::fmt;

pub mod cutter;
pub mod kafka;
pub mod raft;

/// A seed whose run broke a property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFailure {
    /// Which core.
    pub core: &'static str,
    /// The seed that replays it.
    pub seed: u64,
    /// The step at which it was seen.
    pub step: usize,
    /// What broke.
    pub what: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} simulation, seed {} (replay: ordo-sim --core {} --seed {}), step {}: {}",
            self.core, self.seed, self.core, self.seed, self.step, self.what
        )
    }
}

/// Runs seeds `from..from + count` of `core`; returns every failure.
pub fn sweep(core: &str, from: u64, count: u64) -> Result<Vec<SimFailure>, String> {
    let run: fn(u64) -> Result<(), SimFailure> = match core {
        "cutter" => |s| cutter::run(s).map(|_| ()),
        "kafka" => |s| kafka::run(s).map(|_| ()),
        "raft" => |s| raft::run(s).map(|_| ()),
        other => return Err(format!("unknown core {other:?} (cutter, kafka, raft)")),
    };
    Ok((from..from.saturating_add(count))
        .filter_map(|seed| run(seed).err())
        .collect())
}
