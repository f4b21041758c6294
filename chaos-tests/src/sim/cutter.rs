//! The block cutter under a seeded stream of envelopes of random sizes, config envelopes,
//! limit changes (as after a config block) and timer cuts.
//!
//! Checked after every call: no batch above `max_message_count` or, unless it is a single
//! envelope, above `preferred_max_bytes`; a config envelope always alone; an envelope
//! larger than `absolute_max_bytes` refused and nothing else; and in the end every
//! accepted envelope in exactly one batch, in submission order.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use ordo_consensus::cutter::{BatchLimits, BlockCutter};

use super::SimFailure;

/// Calls per run.
const STEPS: usize = 2_000;

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CutterSimStats {
    /// Envelopes accepted.
    pub accepted: u64,
    /// Batches cut.
    pub batches: u64,
}

fn random_limits(rng: &mut StdRng) -> BatchLimits {
    let preferred = rng.gen_range(64..4096);
    BatchLimits {
        max_message_count: rng.gen_range(1..20),
        absolute_max_bytes: preferred + rng.gen_range(0..4096),
        preferred_max_bytes: preferred,
    }
}

/// Runs one seed.
pub fn run(seed: u64) -> Result<CutterSimStats, SimFailure> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut limits = random_limits(&mut rng);
    let mut cutter: BlockCutter<Bytes> = BlockCutter::new(limits);
    let mut accepted: Vec<Bytes> = Vec::new();
    let mut batched: Vec<Bytes> = Vec::new();
    let mut stats = CutterSimStats::default();
    let fail = |step: usize, what: String| SimFailure {
        core: "cutter",
        seed,
        step,
        what,
    };
    for step in 0..STEPS {
        // The limits every batch of this step was cut under.
        let in_force = limits;
        let roll = rng.gen_range(0..100);
        let batches = if roll < 80 {
            let is_config = rng.gen_bool(0.03);
            let size = if rng.gen_bool(0.05) {
                rng.gen_range(0..(limits.absolute_max_bytes as usize * 2))
            } else {
                rng.gen_range(1..(limits.preferred_max_bytes as usize / 2).max(2))
            };
            // Unique content: the step number, padded to the size.
            let mut data = format!("{step}:").into_bytes();
            data.resize(size.max(data.len()), b'.');
            let item = Bytes::from(data);
            let too_large = item.len() > limits.absolute_max_bytes as usize;
            match cutter.ordered(item.clone(), is_config) {
                Ok(o) => {
                    if too_large {
                        return Err(fail(
                            step,
                            format!("took {} bytes above the absolute maximum", item.len()),
                        ));
                    }
                    accepted.push(item.clone());
                    if is_config && o.batches.last() != Some(&vec![item.clone()]) {
                        return Err(fail(
                            step,
                            "a config envelope is not alone in the last batch".into(),
                        ));
                    }
                    if o.pending != (cutter.pending_count() > 0) {
                        return Err(fail(
                            step,
                            "pending flag disagrees with the pending count".into(),
                        ));
                    }
                    o.batches
                }
                Err(_) if too_large => Vec::new(),
                Err(e) => return Err(fail(step, format!("refused a valid envelope: {e}"))),
            }
        } else if roll < 95 {
            vec![cutter.cut()]
        } else {
            // A config block was written: new limits from the next envelope on (the
            // pending batch is empty then: the config envelope cut it).
            let pending = cutter.cut();
            limits = random_limits(&mut rng);
            cutter.set_limits(limits);
            vec![pending]
        };
        for b in batches.into_iter().filter(|b| !b.is_empty()) {
            stats.batches += 1;
            let bytes: usize = b.iter().map(Bytes::len).sum();
            if b.len() > 1 {
                if b.len() > in_force.max_message_count as usize {
                    return Err(fail(
                        step,
                        format!(
                            "batch of {} above max_message_count {}",
                            b.len(),
                            in_force.max_message_count
                        ),
                    ));
                }
                if bytes > in_force.preferred_max_bytes as usize {
                    return Err(fail(
                        step,
                        format!(
                            "batch of {bytes} bytes above preferred_max_bytes {}",
                            in_force.preferred_max_bytes
                        ),
                    ));
                }
            }
            batched.extend(b);
        }
    }
    batched.extend(cutter.cut());
    stats.accepted = accepted.len() as u64;
    if batched != accepted {
        return Err(fail(
            STEPS,
            format!(
                "{} envelopes accepted, {} batched (lost, duplicated or reordered)",
                accepted.len(),
                batched.len()
            ),
        ));
    }
    Ok(stats)
}
