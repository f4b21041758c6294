//! Three orderers on one simulated Kafka partition, each running the real
//! [`KafkaCore`], under a seeded schedule.
//!
//! What the simulation may do, because the protocol allows it: a produce that never
//! reaches the partition; a delivery report that is lost although the message is there
//! (the client learns nothing); any interleaving of the orderers' consumption; timers
//! firing on any orderer at any time (duplicate time-to-cut messages); config updates that
//! race with each other and with normal envelopes (stale ones are re-validated; a stale
//! config is refused, by every orderer alike); crashes that
//! lose an orderer's core and every block it had not written yet, and restarts that
//! resume from its ledger's last block. What it may not do is what the brokers rule out:
//! reorder or duplicate messages of the partition (acks=all, idempotent producer).
//!
//! Safety, checked at every block written: every orderer writes the same block at each
//! height; no envelope twice in a ledger; a config envelope alone in its block and applied
//! once; nothing in a block that was not produced; the core never reports an error. Then
//! the liveness phase (no more faults, every orderer up, timers firing) must end with every
//! orderer holding the same chain and every envelope whose delivery was reported in it
//! exactly once.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use ordo_consensus::cutter::BatchLimits;
use ordo_consensus::kafka::core::{Action, KafkaCore, KafkaMessage, ResumePoint};

use super::SimFailure;

/// Orderers in the simulation.
const ORDERERS: usize = 3;
/// Steps of the safety phase.
const SAFETY_STEPS: usize = 2_000;
/// Most steps the liveness phase may take.
const LIVENESS_STEPS: usize = 50_000;
/// Ticks from a timer's start to its firing.
const BATCH_TIMEOUT_TICKS: u64 = 5;

/// A block as an orderer's ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SimBlock {
    envelopes: Vec<Bytes>,
    last_offset: i64,
    last_original_offset: i64,
    config: bool,
}

/// One orderer.
struct Orderer {
    core: Option<KafkaCore>,
    /// Durable blocks.
    ledger: Vec<SimBlock>,
    /// Blocks the core produced that the writer has not written yet (lost on a crash).
    unwritten: Vec<SimBlock>,
    /// Next offset to consume.
    next_offset: i64,
    /// (block, tick it fires at).
    timer: Option<(u64, u64)>,
}

impl Orderer {
    fn new() -> Self {
        let mut o = Self {
            core: None,
            ledger: Vec::new(),
            unwritten: Vec::new(),
            next_offset: 0,
            timer: None,
        };
        o.restart();
        o
    }

    /// Config sequence after every block it has produced (config blocks are written
    /// before the next message is read, so this is the durable sequence too).
    fn config_seq(&self) -> u64 {
        self.ledger
            .iter()
            .chain(self.unwritten.iter())
            .filter(|b| b.config)
            .count() as u64
    }

    /// Starts the core from the ledger's last block.
    fn restart(&mut self) {
        self.unwritten.clear();
        self.timer = None;
        let at = match self.ledger.last() {
            None => ResumePoint {
                next_block: 0,
                last_offset: -1,
                last_original_offset: 0,
            },
            Some(b) => ResumePoint {
                next_block: self.ledger.len() as u64,
                last_offset: b.last_offset,
                last_original_offset: b.last_original_offset,
            },
        };
        let core = KafkaCore::resume(limits(self.config_seq()), at);
        self.next_offset = core.start_offset();
        self.core = Some(core);
    }
}

/// The batch limits in force at config sequence `seq`: every config update changes them,
/// so a block cut under the wrong limits shows.
fn limits(seq: u64) -> BatchLimits {
    BatchLimits {
        max_message_count: if seq % 2 == 0 { 4 } else { 2 },
        absolute_max_bytes: 1 << 20,
        preferred_max_bytes: 1 << 20,
    }
}

/// What happened to produced envelopes, for the final check.
#[derive(Default)]
struct Ledgerless {
    /// Envelopes in the partition whose delivery was reported (they must be ordered).
    reported: BTreeSet<Bytes>,
    /// Every envelope in the partition.
    appended: BTreeSet<Bytes>,
}

/// Counts of what a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct KafkaSimStats {
    /// Envelopes submitted.
    pub submitted: u64,
    /// Crashes.
    pub crashes: u64,
    /// Blocks in the final chain.
    pub blocks: u64,
    /// Messages in the partition.
    pub messages: u64,
}

struct Sim {
    rng: StdRng,
    seed: u64,
    step: usize,
    tick: u64,
    partition: Vec<KafkaMessage>,
    orderers: Vec<Orderer>,
    /// The first block written at each height: every later write must equal it.
    canonical: BTreeMap<u64, SimBlock>,
    produced: Ledgerless,
    /// Refused config envelopes and the offset they were refused at.
    refused: BTreeMap<Bytes, i64>,
    next_envelope: u64,
    stats: KafkaSimStats,
}

/// Runs one seed.
pub fn run(seed: u64) -> Result<KafkaSimStats, SimFailure> {
    let mut sim = Sim {
        rng: StdRng::seed_from_u64(seed),
        seed,
        step: 0,
        tick: 0,
        partition: Vec::new(),
        orderers: (0..ORDERERS).map(|_| Orderer::new()).collect(),
        canonical: BTreeMap::new(),
        produced: Ledgerless::default(),
        refused: BTreeMap::new(),
        next_envelope: 0,
        stats: KafkaSimStats::default(),
    };
    for step in 0..SAFETY_STEPS {
        sim.step = step;
        sim.safety_step()?;
    }
    sim.liveness()?;
    sim.final_check()?;
    sim.stats.blocks = sim.orderers[0].ledger.len() as u64;
    sim.stats.messages = sim.partition.len() as u64;
    Ok(sim.stats)
}

impl Sim {
    fn fail(&self, what: String) -> SimFailure {
        SimFailure {
            core: "kafka",
            seed: self.seed,
            step: self.step,
            what,
        }
    }

    fn up(&self) -> Vec<usize> {
        (0..ORDERERS)
            .filter(|i| self.orderers[*i].core.is_some())
            .collect()
    }

    fn pick(&mut self, among: &[usize]) -> Option<usize> {
        if among.is_empty() {
            None
        } else {
            Some(among[self.rng.gen_range(0..among.len())])
        }
    }

    fn safety_step(&mut self) -> Result<(), SimFailure> {
        let up = self.up();
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=29 => {
                if let Some(i) = self.pick(&up) {
                    self.submit(i, false);
                }
            }
            30..=32 => {
                if let Some(i) = self.pick(&up) {
                    self.submit(i, true);
                }
            }
            33..=72 => {
                if let Some(i) = self.pick(&up) {
                    self.consume(i)?;
                }
            }
            73..=84 => {
                if let Some(i) = self.pick(&up) {
                    self.flush_one(i)?;
                }
            }
            85..=94 => self.advance_clock(),
            95..=96 => {
                if let Some(i) = self.pick(&up) {
                    self.crash(i);
                }
            }
            _ => {
                let down: Vec<usize> = (0..ORDERERS).filter(|i| !up.contains(i)).collect();
                if let Some(i) = self.pick(&down) {
                    self.orderers[i].restart();
                    self.partition.push(KafkaMessage::Connect);
                }
            }
        }
        Ok(())
    }

    /// A client hands orderer `i` an envelope; it produces it.
    fn submit(&mut self, i: usize, config: bool) {
        self.next_envelope += 1;
        self.stats.submitted += 1;
        let kind = if config { "config" } else { "tx" };
        let envelope = Bytes::from(format!("{kind}-{}", self.next_envelope));
        let message = KafkaMessage::Regular {
            envelope: envelope.clone(),
            config_seq: self.orderers[i].config_seq(),
            original_offset: 0,
            is_config: config,
        };
        // 5%: the produce fails (nothing appended, the client is told so).
        if self.rng.gen_bool(0.05) {
            return;
        }
        self.partition.push(message);
        self.produced.appended.insert(envelope.clone());
        // 5%: appended, but the delivery report is lost (the client learns nothing).
        if !self.rng.gen_bool(0.05) && !config {
            self.produced.reported.insert(envelope);
        }
    }

    /// Orderer `i` reads its next message.
    fn consume(&mut self, i: usize) -> Result<(), SimFailure> {
        let offset = self.orderers[i].next_offset;
        let Some(message) = usize::try_from(offset)
            .ok()
            .and_then(|o| self.partition.get(o))
            .cloned()
        else {
            return Ok(());
        };
        let seq = self.orderers[i].config_seq();
        let revalidate = |_: &[u8], _: bool| -> Result<(), String> { Ok(()) };
        let actions = match self.orderers[i].core.as_mut() {
            None => return Ok(()),
            Some(core) => core
                .on_message(offset, message, seq, &revalidate)
                .map_err(|e| self.fail(format!("orderer{i} at offset {offset}: {e}")))?,
        };
        self.orderers[i].next_offset = offset + 1;
        for action in actions {
            match action {
                Action::Block {
                    envelopes,
                    last_offset,
                    last_original_offset,
                    config,
                } => {
                    let block = SimBlock {
                        envelopes,
                        last_offset,
                        last_original_offset,
                        config,
                    };
                    self.orderers[i].unwritten.push(block);
                    if config {
                        // Config blocks are written before the next message is read; the
                        // new limits apply from the next envelope.
                        while !self.orderers[i].unwritten.is_empty() {
                            self.flush_one(i)?;
                        }
                        let seq = self.orderers[i].config_seq();
                        if let Some(core) = self.orderers[i].core.as_mut() {
                            core.set_limits(limits(seq));
                        }
                    }
                }
                Action::StartTimer { block } => {
                    self.orderers[i].timer = Some((block, self.tick + BATCH_TIMEOUT_TICKS));
                }
                Action::StopTimer => self.orderers[i].timer = None,
                Action::Refused { envelope, reason } => {
                    // Only a config validated against an older sequence may be refused
                    // (every other check passes here); every orderer must refuse the
                    // same ones.
                    if !envelope.starts_with(b"config-") {
                        return Err(self.fail(format!(
                            "orderer{i} refused {:?}, which every check accepts: {reason}",
                            String::from_utf8_lossy(&envelope)
                        )));
                    }
                    let first = *self.refused.entry(envelope.clone()).or_insert(offset);
                    if first != offset {
                        return Err(self.fail(format!(
                            "{envelope:?} refused at offset {offset} by orderer{i}, at {first} by another"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Orderer `i`'s writer makes its oldest unwritten block durable.
    fn flush_one(&mut self, i: usize) -> Result<(), SimFailure> {
        if self.orderers[i].unwritten.is_empty() {
            return Ok(());
        }
        let block = self.orderers[i].unwritten.remove(0);
        let number = self.orderers[i].ledger.len() as u64;
        self.check_block(i, number, &block)?;
        self.orderers[i].ledger.push(block);
        Ok(())
    }

    fn check_block(&mut self, i: usize, number: u64, block: &SimBlock) -> Result<(), SimFailure> {
        if let Some(first) = self.canonical.get(&number) {
            if first != block {
                return Err(self.fail(format!(
                    "fork at block {number}: orderer{i} wrote {:?}, another orderer {:?}",
                    block.envelopes, first.envelopes
                )));
            }
            return Ok(());
        }
        if block.envelopes.is_empty() {
            return Err(self.fail(format!("orderer{i} cut an empty block {number}")));
        }
        if block.config && block.envelopes.len() != 1 {
            return Err(self.fail(format!(
                "config block {number} holds {} envelopes",
                block.envelopes.len()
            )));
        }
        let seq_before = self.orderers[i].ledger.iter().filter(|b| b.config).count() as u64;
        let max = limits(seq_before).max_message_count as usize;
        if block.envelopes.len() > max {
            return Err(self.fail(format!(
                "block {number} holds {} envelopes, above the {max} in force",
                block.envelopes.len()
            )));
        }
        let earlier: BTreeSet<&Bytes> = self.orderers[i]
            .ledger
            .iter()
            .flat_map(|b| b.envelopes.iter())
            .collect();
        let mut seen = BTreeSet::new();
        for e in &block.envelopes {
            if !self.produced.appended.contains(e) {
                return Err(self.fail(format!("block {number} holds {e:?}, never produced")));
            }
            if earlier.contains(e) || !seen.insert(e) {
                return Err(self.fail(format!("{e:?} ordered twice (again in block {number})")));
            }
        }
        self.canonical.insert(number, block.clone());
        Ok(())
    }

    /// One tick passes; due timers produce time-to-cut messages and re-arm.
    fn advance_clock(&mut self) {
        self.tick += 1;
        for i in 0..ORDERERS {
            let o = &mut self.orderers[i];
            if o.core.is_none() {
                continue;
            }
            if let Some((block, due)) = o.timer {
                if due <= self.tick {
                    o.timer = Some((block, self.tick + BATCH_TIMEOUT_TICKS));
                    self.partition.push(KafkaMessage::TimeToCut {
                        block_number: block,
                    });
                }
            }
        }
    }

    fn crash(&mut self, i: usize) {
        self.stats.crashes += 1;
        let o = &mut self.orderers[i];
        o.core = None;
        o.unwritten.clear();
        o.timer = None;
    }

    /// No more faults: every orderer up, reading and writing everything, timers firing,
    /// until all agree and nothing is pending.
    fn liveness(&mut self) -> Result<(), SimFailure> {
        for i in 0..ORDERERS {
            if self.orderers[i].core.is_none() {
                self.orderers[i].restart();
                self.partition.push(KafkaMessage::Connect);
            }
        }
        for step in 0..LIVENESS_STEPS {
            self.step = SAFETY_STEPS + step;
            for i in 0..ORDERERS {
                while (self.orderers[i].next_offset as usize) < self.partition.len() {
                    self.consume(i)?;
                }
                while !self.orderers[i].unwritten.is_empty() {
                    self.flush_one(i)?;
                }
            }
            let settled = self.orderers.iter().all(|o| {
                o.next_offset as usize == self.partition.len()
                    && o.core.as_ref().is_some_and(|c| c.pending() == 0)
            });
            if settled {
                return Ok(());
            }
            self.advance_clock();
        }
        Err(self.fail(format!(
            "no progress: not settled after {LIVENESS_STEPS} liveness steps"
        )))
    }

    fn final_check(&self) -> Result<(), SimFailure> {
        let reference = &self.orderers[0].ledger;
        for (i, o) in self.orderers.iter().enumerate() {
            if &o.ledger != reference {
                return Err(self.fail(format!(
                    "after liveness orderer{i} has {} blocks, orderer0 {}",
                    o.ledger.len(),
                    reference.len()
                )));
            }
        }
        let ordered: Vec<&Bytes> = reference.iter().flat_map(|b| b.envelopes.iter()).collect();
        let ordered_set: BTreeSet<&Bytes> = ordered.iter().copied().collect();
        for (e, offset) in &self.refused {
            if ordered_set.contains(e) {
                return Err(self.fail(format!("{e:?} was refused at offset {offset} but ordered")));
            }
        }
        for e in &self.produced.reported {
            if !ordered_set.contains(e) {
                return Err(self.fail(format!("{e:?} was reported delivered but never ordered")));
            }
        }
        // Normal envelopes in the partition are all ordered, reported or not: the
        // partition is the order.
        for e in self
            .produced
            .appended
            .iter()
            .filter(|e| e.starts_with(b"tx-"))
        {
            if !ordered_set.contains(e) {
                return Err(self.fail(format!("{e:?} is in the partition but not in the chain")));
            }
        }
        Ok(())
    }
}
