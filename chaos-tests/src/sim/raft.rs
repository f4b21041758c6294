//! Three raft engines ([`Engine`]) — every decision the orderer's raft consenter makes —
//! run over memory by a seeded simulator that owns the network, the clock, the disks and
//! the clients. Everything comes from the seed, keys included, so a seed replays exactly.
//!
//! The simulator is the engines' driver: it executes their commands in order (a raft
//! write goes to the node's "disk", a block to its ledger, a catch-up pulls from the
//! others' ledgers) and plays the committed-mode waiters (a block tells the envelopes'
//! waiters on the node that wrote it, a rejection tells them they were not ordered). It
//! holds every message in flight and delivers them in any order, loses some, delivers
//! some twice, cuts nodes off and heals them, crashes nodes (only the disk survives) and
//! restarts them through the same recovery the orderer runs. `raft-torn` also crashes a
//! node between any two commands of a step — a process killed between two writes.
//!
//! Safety, checked after every step: every node writes the same block at each height;
//! no tx id twice in a chain; a block holds only submitted envelopes. Liveness: after the
//! faults stop, a leader takes envelopes, the nodes converge on one chain and every
//! waiter is answered; every envelope whose waiter was told a block is in that block,
//! once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use ordo_consensus::chain::OrderRequest;
use ordo_consensus::raft::engine::{
    BlockMark, ChainTip, Engine, Input, Proposal, Restored, WaiterId,
};
use ordo_consensus::raft::storage::LogView;
use ordo_consensus::raft::{raft_id, raft_position, recovery, RaftOptions};
use ordo_consensus::support::ConfigState;
use ordo_proto::block;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, Role};
use ordo_testkit::{envelopes, keys, TestOrg};

use super::raft_check::{channel_config, check_acked, options, ChainCheck, CHANNEL, TICK};
use super::schedule::{self, SimCluster, NODES};
use super::SimFailure;

mod exec;

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RaftSimStats {
    /// Envelopes submitted.
    pub submitted: u64,
    /// Envelopes whose committed-mode waiter learned a block.
    pub acked: u64,
    /// Crashes.
    pub crashes: u64,
    /// Messages lost.
    pub lost: u64,
    /// Blocks in the final chain.
    pub blocks: u64,
}

/// What survives a crash.
#[derive(Clone)]
struct Disk {
    log: LogView,
    ledger: Vec<Block>,
}

/// One consenter.
struct Node {
    id: u64,
    name: String,
    disk: Disk,
    /// `None` while crashed.
    engine: Option<Engine>,
    /// Blocks of its ledger already checked.
    checked: u64,
    /// Tx ids in its chain.
    txs: BTreeSet<String>,
}

struct Sim {
    seed: u64,
    core: &'static str,
    /// Crashes may also stop a node between two commands.
    torn: bool,
    step: usize,
    rng: StdRng,
    now: Duration,
    options: RaftOptions,
    state: Arc<ConfigState>,
    nodes: Vec<Node>,
    /// (from, to, message) sent and not yet delivered or lost.
    in_flight: Vec<(u64, u64, Vec<u8>)>,
    client: Identity,
    /// The safety checks, and every envelope submitted.
    check: ChainCheck,
    /// Committed-mode waiters not answered yet: tx id → the node it waits on.
    waiting: BTreeMap<String, usize>,
    /// Proposals whose sender waits for the engine's answer: waiter → tx id.
    answers: BTreeMap<WaiterId, String>,
    next_waiter: WaiterId,
    /// tx id → block number a waiter was told.
    acked: BTreeMap<String, u64>,
    /// Nodes cut off from the others.
    cut: BTreeSet<u64>,
    /// A torn crash armed: (node, commands it still executes).
    torn_at: Option<(usize, u32)>,
    stats: RaftSimStats,
}

/// Runs one seed; crashes come between steps.
pub fn run(seed: u64) -> Result<RaftSimStats, SimFailure> {
    run_with(seed, false)
}

/// Runs one seed where half the crashes stop a node between two commands instead.
pub fn run_torn(seed: u64) -> Result<RaftSimStats, SimFailure> {
    run_with(seed, true)
}

fn run_with(seed: u64, torn: bool) -> Result<RaftSimStats, SimFailure> {
    let core = if torn { "raft-torn" } else { "raft" };
    let mut sim = Sim::new(seed, torn, core).map_err(|what| SimFailure {
        core,
        seed,
        step: 0,
        what,
    })?;
    schedule::run(&mut sim)?;
    sim.final_check()?;
    Ok(sim.stats)
}

impl Sim {
    fn new(seed: u64, torn: bool, core: &'static str) -> Result<Self, String> {
        let org = TestOrg::with_ca("A", keys::seeded(seed, 1));
        let client = org.member_with_key(Role::Client, "client", keys::seeded(seed, 2));
        let mut consenters = Vec::new();
        let mut names = Vec::new();
        for i in 1..=NODES {
            let name = format!("orderer{i}");
            let key = keys::seeded(seed, 10 + i as u64);
            let (_, entry) = org.consenter(&name, &format!("sim:{i}"), key);
            consenters.push(entry);
            names.push(name);
        }
        let config = channel_config(&org, consenters);
        let genesis = ordo_proto::config::genesis_block(&config, 1).map_err(|e| e.to_string())?;
        let state = Arc::new(ConfigState::new(config, 0).map_err(|e| e.to_string())?);
        let ids: Vec<u64> = names.iter().map(|n| raft_id(n)).collect();
        let nodes = names
            .into_iter()
            .map(|name| Node {
                id: raft_id(&name),
                name,
                disk: Disk {
                    log: LogView::founding(&ids),
                    ledger: vec![genesis.clone()],
                },
                engine: None,
                checked: 0,
                txs: BTreeSet::new(),
            })
            .collect();
        let mut sim = Self {
            seed,
            core,
            torn,
            step: 0,
            rng: StdRng::seed_from_u64(seed),
            now: Duration::ZERO,
            options: options(seed),
            state,
            nodes,
            in_flight: Vec::new(),
            client,
            check: ChainCheck::default(),
            waiting: BTreeMap::new(),
            answers: BTreeMap::new(),
            next_waiter: 0,
            acked: BTreeMap::new(),
            cut: BTreeSet::new(),
            torn_at: None,
            stats: RaftSimStats::default(),
        };
        for i in 0..NODES {
            sim.start(i)?;
        }
        Ok(sim)
    }

    fn fail(&self, what: String) -> SimFailure {
        SimFailure {
            core: self.core,
            seed: self.seed,
            step: self.step,
            what,
        }
    }

    /// Starts node `i` from its disk, through the orderer's recovery.
    fn start(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let ledger = &node.disk.ledger;
        let height = ledger.len() as u64;
        let tip = ledger.last().ok_or("an empty ledger")?;
        let repair = recovery::reconcile(
            CHANNEL,
            &node.disk.log,
            Some((height - 1, tip)),
            &self.state.config,
        );
        if let Some(w) = &repair.write {
            node.disk.log.apply(w);
        }
        let mut marks = Vec::new();
        for (n, b) in ledger.iter().enumerate().rev() {
            let index = raft_position(b).map(|(i, _)| i).unwrap_or(0);
            marks.push(BlockMark {
                index,
                number: n as u64,
                hash: block::hash(b),
            });
            if index <= node.disk.log.snapshot_index() {
                break;
            }
        }
        marks.reverse();
        let restored = Restored {
            view: node.disk.log.clone(),
            applied: repair.applied,
            tip: ChainTip {
                height,
                last_hash: block::hash(tip),
                state: self.state.clone(),
            },
            marks,
        };
        let engine =
            Engine::new(node.id, CHANNEL, self.options, restored).map_err(|e| e.to_string())?;
        node.engine = Some(engine);
        Ok(())
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// One step of node `i`: `input`, the time, a flush — then checks what it wrote.
    fn turn(&mut self, i: usize, input: Input) -> Result<(), SimFailure> {
        let time = Input::Time {
            now: self.now,
            unix_secs: 1,
        };
        for input in [input, time, Input::Flush] {
            let Some(engine) = self.nodes[i].engine.as_mut() else {
                break;
            };
            let commands = engine.step(input);
            self.execute(i, commands)?;
        }
        self.check_node(i)
    }

    fn heights(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.disk.ledger.len() as u64)
            .collect()
    }

    /// Checks node `i`'s newly written blocks against the canonical chain.
    fn check_node(&mut self, i: usize) -> Result<(), SimFailure> {
        let node = &mut self.nodes[i];
        let height = node.disk.ledger.len() as u64;
        let mut broken = None;
        for number in node.checked..height {
            let block = &node.disk.ledger[number as usize];
            if let Err(what) = self.check.block(&node.name, &mut node.txs, number, block) {
                broken = Some(what);
                break;
            }
        }
        node.checked = height;
        match broken {
            Some(what) => Err(self.fail(what)),
            None => Ok(()),
        }
    }

    fn final_check(&mut self) -> Result<(), SimFailure> {
        let reference = &self.nodes[0].disk.ledger;
        self.stats.blocks = reference.len() as u64;
        check_acked(reference.iter().cloned(), &self.acked).map_err(|what| self.fail(what))
    }
}

impl SimCluster for Sim {
    fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    fn set_step(&mut self, step: usize) {
        self.step = step;
    }

    fn deliver_one(&mut self, lossy: bool) -> Result<(), SimFailure> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        let k = self.rng.gen_range(0..self.in_flight.len());
        let duplicate = lossy && self.rng.gen_bool(0.03);
        let (from, to, bytes) = if duplicate {
            self.in_flight[k].clone()
        } else {
            self.in_flight.swap_remove(k)
        };
        if lossy && self.rng.gen_bool(0.05) {
            self.stats.lost += 1;
            return Ok(());
        }
        if self.cut.contains(&from) || self.cut.contains(&to) {
            self.stats.lost += 1;
            return Ok(());
        }
        let Some(i) = self.index_of(to) else {
            return Ok(());
        };
        self.turn(i, Input::Message { from, bytes })
    }

    fn advance(&mut self) -> Result<(), SimFailure> {
        self.now += TICK;
        for i in 0..NODES {
            self.turn(i, Input::Flush)?;
        }
        Ok(())
    }

    fn in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    fn up_nodes(&self) -> Vec<usize> {
        (0..NODES)
            .filter(|i| self.nodes[*i].engine.is_some())
            .collect()
    }

    fn accepting(&self, i: usize) -> bool {
        self.nodes[i]
            .engine
            .as_ref()
            .is_some_and(|e| e.status().accepting)
    }

    fn submit(&mut self, i: usize) -> Result<(), SimFailure> {
        if self.nodes[i].engine.is_none() {
            return Ok(());
        }
        let n = self.check.submitted.len();
        let (env, tx_id) = envelopes::seeded(&self.client, CHANNEL, self.seed, n as u64);
        self.stats.submitted += 1;
        self.check.submitted.insert(tx_id.clone());
        self.waiting.insert(tx_id.clone(), i);
        self.next_waiter += 1;
        self.answers.insert(self.next_waiter, tx_id.clone());
        let proposal = Proposal {
            request: OrderRequest {
                envelope: Bytes::from(env.encode_to_vec()),
                tx_id,
                config_seq: 0,
            },
            is_config: false,
            forwarded: false,
            waiter: Some(self.next_waiter),
        };
        self.turn(i, Input::Propose(proposal))
    }

    fn torn(&self) -> bool {
        self.torn
    }

    /// The node executes 0 to 7 more commands, then stops.
    fn arm_torn_crash(&mut self, i: usize) {
        let left = self.rng.gen_range(0..8);
        self.torn_at = Some((i, left));
    }

    fn crash(&mut self, i: usize) {
        self.stats.crashes += 1;
        self.nodes[i].engine = None;
        // Its waiters' fate is unknown to their clients.
        self.waiting.retain(|_, n| *n != i);
        if self.torn_at.is_some_and(|(n, _)| n == i) {
            self.torn_at = None;
        }
    }

    fn disarm_torn_crashes(&mut self) {
        self.torn_at = None;
    }

    fn is_down(&self, i: usize) -> bool {
        self.nodes[i].engine.is_none()
    }

    fn restart(&mut self, i: usize) -> Result<(), SimFailure> {
        self.start(i)
            .map_err(|e| self.fail(format!("restart: {e}")))
    }

    fn cut(&mut self) -> &mut BTreeSet<u64> {
        &mut self.cut
    }

    fn node_id(&self, i: usize) -> u64 {
        self.nodes[i].id
    }

    /// Same heights, nothing waiting, and an accepting leader.
    fn settled(&self) -> bool {
        let heights = self.heights();
        let led = (0..NODES).any(|i| self.accepting(i));
        led && heights.iter().all(|h| *h == heights[0]) && self.waiting.is_empty()
    }

    fn not_settled(&self) -> SimFailure {
        let leaders: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| n.engine.as_ref().is_some_and(|e| e.status().accepting))
            .collect();
        let waiting: Vec<String> = self
            .waiting
            .iter()
            .take(5)
            .map(|(tx, i)| {
                let in_chain = self.nodes.iter().any(|n| n.txs.contains(tx));
                format!(
                    "{} on {} (in a chain: {in_chain})",
                    &tx[..8],
                    self.nodes[*i].name
                )
            })
            .collect();
        self.fail(format!(
            "no convergence after the faults stopped: heights {:?}, accepting leaders {leaders:?}, {} envelopes still waiting: {}",
            self.heights(),
            self.waiting.len(),
            waiting.join("; ")
        ))
    }
}
