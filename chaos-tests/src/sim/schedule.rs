//! The fault schedule both raft simulations run: what happens at each step of the safety
//! phase (a message delivered or lost, time passing, a client submitting, a crash, a
//! restart, a node cut off or healed) and the liveness phase that follows (faults stop,
//! every node restarts, the cluster must settle).
//!
//! One schedule for both means a seed exercises the same kinds of fault in the same
//! proportions on the engine-over-memory simulation and on the RocksDB one. The draws
//! from the run's generator are made here, in a fixed order, and each simulation's own
//! hooks draw only where said: a seed replays exactly.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::Rng;

use super::SimFailure;

/// Nodes in a simulated cluster.
pub(super) const NODES: usize = 3;
/// Steps with faults.
pub(super) const SAFETY_STEPS: usize = 1_500;
/// Steps without faults in which the cluster must settle.
pub(super) const LIVENESS_STEPS: usize = 20_000;
/// Consecutive settled rounds that count as settled: no block cut by a timer is still on
/// its way.
const QUIET_ROUNDS: usize = 20;

/// What the schedule needs of a simulated cluster.
pub(super) trait SimCluster {
    /// The run's generator.
    fn rng(&mut self) -> &mut StdRng;
    /// Records the step (for failure reports).
    fn set_step(&mut self, step: usize);
    /// Delivers (or, if `lossy`, maybe loses) one message in flight.
    fn deliver_one(&mut self, lossy: bool) -> Result<(), SimFailure>;
    /// Lets one tick of time pass on every running node.
    fn advance(&mut self) -> Result<(), SimFailure>;
    /// Whether a message is still in flight.
    fn in_flight(&self) -> bool;
    /// The running nodes.
    fn up_nodes(&self) -> Vec<usize>;
    /// Whether node `i` runs and is a leader that takes proposals.
    fn accepting(&self, i: usize) -> bool;
    /// A client submits one envelope to node `i`.
    fn submit(&mut self, i: usize) -> Result<(), SimFailure>;
    /// Whether crashes may tear (stop a node mid-way instead of between steps).
    fn torn(&self) -> bool;
    /// Arms a torn crash of node `i` (the simulation draws where it tears).
    fn arm_torn_crash(&mut self, i: usize);
    /// Crashes node `i` between steps.
    fn crash(&mut self, i: usize);
    /// Disarms every torn crash.
    fn disarm_torn_crashes(&mut self);
    /// Whether node `i` is down.
    fn is_down(&self, i: usize) -> bool;
    /// Starts node `i` again from what it persisted.
    fn restart(&mut self, i: usize) -> Result<(), SimFailure>;
    /// The raft ids cut off from the others.
    fn cut(&mut self) -> &mut BTreeSet<u64>;
    /// The raft id of node `i`.
    fn node_id(&self, i: usize) -> u64;
    /// Runs after every step (collects acknowledgements).
    fn after_step(&mut self) {}
    /// Whether the cluster has settled: same heights, nothing waiting (and whatever more
    /// the simulation requires).
    fn settled(&self) -> bool;
    /// The failure to report when the cluster never settled.
    fn not_settled(&self) -> SimFailure;
}

/// One step of the safety phase.
pub(super) fn safety_step(sim: &mut impl SimCluster) -> Result<(), SimFailure> {
    match sim.rng().gen_range(0..100) {
        0..=44 => sim.deliver_one(true)?,
        45..=64 => sim.advance()?,
        65..=84 => {
            // A client picks a node, the accepting leader nine times in ten; only an
            // accepting leader takes the envelope.
            let up = sim.up_nodes();
            if !up.is_empty() {
                let leader = up.iter().copied().find(|i| sim.accepting(*i));
                let pick = match leader {
                    Some(l) if sim.rng().gen_bool(0.9) => l,
                    _ => up[sim.rng().gen_range(0..up.len())],
                };
                sim.submit(pick)?;
            }
        }
        85..=86 => {
            let up = sim.up_nodes();
            if up.len() > 1 {
                let i = up[sim.rng().gen_range(0..up.len())];
                if sim.torn() && sim.rng().gen_bool(0.5) {
                    sim.arm_torn_crash(i);
                } else {
                    sim.crash(i);
                }
            }
        }
        87..=94 => {
            let down: Vec<usize> = (0..NODES).filter(|i| sim.is_down(*i)).collect();
            if !down.is_empty() {
                let i = down[sim.rng().gen_range(0..down.len())];
                sim.restart(i)?;
            }
        }
        _ => {
            if sim.cut().is_empty() && sim.rng().gen_bool(0.5) {
                let i = sim.rng().gen_range(0..NODES);
                let id = sim.node_id(i);
                sim.cut().insert(id);
            } else {
                sim.cut().clear();
            }
        }
    }
    sim.after_step();
    Ok(())
}

/// The liveness phase: faults stop, every node runs, messages flow without loss; the
/// cluster must settle within [`LIVENESS_STEPS`].
pub(super) fn liveness(sim: &mut impl SimCluster) -> Result<(), SimFailure> {
    sim.cut().clear();
    sim.disarm_torn_crashes();
    for i in 0..NODES {
        if sim.is_down(i) {
            sim.restart(i)?;
        }
    }
    let mut quiet = 0;
    for step in 0..LIVENESS_STEPS {
        sim.set_step(SAFETY_STEPS + step);
        while sim.in_flight() {
            sim.deliver_one(false)?;
        }
        sim.advance()?;
        sim.after_step();
        quiet = if sim.settled() { quiet + 1 } else { 0 };
        if quiet > QUIET_ROUNDS {
            return Ok(());
        }
    }
    Err(sim.not_settled())
}

/// Both phases.
pub(super) fn run(sim: &mut impl SimCluster) -> Result<(), SimFailure> {
    for step in 0..SAFETY_STEPS {
        sim.set_step(step);
        safety_step(sim)?;
    }
    liveness(sim)
}
