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
//! - [`raft`]: three raft engines (every decision of the orderer's raft consenter) over
//!   memory, with messages lost, duplicated and reordered, nodes cut off, crashed
//!   (keeping only their disks) and restarted through the orderer's recovery, and a
//!   simulated clock; `raft-torn` also crashes nodes between two of their commands. Fast
//!   enough for 100,000 seeds.
//! - [`raft_disk`]: the same faults against the orderer's raft driver over real ledgers
//!   and raft logs in RocksDB (`raft-disk`, and `raft-disk-torn` with crashes between
//!   two writes): slower, it checks the driver's execution against real storage.

use std::fmt;

pub mod cutter;
pub mod kafka;
pub mod raft;
mod raft_check;
pub mod raft_disk;
mod schedule;

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

/// One seed of one core.
type RunSeed = fn(u64) -> Result<(), SimFailure>;

/// Runs seeds `from..from + count` of `core`; returns every failure. A seed whose run
/// panics (in the simulator or in the code under test) is a failure like any other, named
/// by its seed, and the sweep goes on.
pub fn sweep(core: &str, from: u64, count: u64) -> Result<Vec<SimFailure>, String> {
    let (name, run): (&'static str, RunSeed) = match core {
        "cutter" => ("cutter", |s| cutter::run(s).map(|_| ())),
        "kafka" => ("kafka", |s| kafka::run(s).map(|_| ())),
        "raft" => ("raft", |s| raft::run(s).map(|_| ())),
        "raft-torn" => ("raft-torn", |s| raft::run_torn(s).map(|_| ())),
        "raft-disk" => ("raft-disk", |s| raft_disk::run(s).map(|_| ())),
        "raft-disk-torn" => ("raft-disk-torn", |s| raft_disk::run_torn(s).map(|_| ())),
        other => {
            return Err(format!(
                "unknown core {other:?} (cutter, kafka, raft, raft-torn, raft-disk, raft-disk-torn)"
            ))
        }
    };
    Ok((from..from.saturating_add(count))
        .filter_map(|seed| match std::panic::catch_unwind(|| run(seed)) {
            Ok(outcome) => outcome.err(),
            Err(panic) => Some(SimFailure {
                core: name,
                seed,
                step: 0,
                what: format!("panicked: {}", panic_message(panic.as_ref())),
            }),
        })
        .collect())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}
