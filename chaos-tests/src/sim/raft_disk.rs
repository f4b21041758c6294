//! Three raft consenters — the orderer's own raft driver ([`SteppedRaft`]) over real
//! ledgers and raft logs in RocksDB — under a seeded simulator that owns the network and
//! the clock. Slower than [`super::raft`] (the engine over memory), it covers what that
//! one cannot: the driver's execution of commands against real storage, and the seeds
//! that found bugs before the engine existed.
//!
//! The simulator holds every message in flight and delivers them in any order, loses
//! some, delivers some twice, cuts nodes off (partitions, healed later), crashes nodes
//! (the node is dropped: only what its ledger and raft log synced survives) and restarts
//! them, moves a shared [`ManualClock`] so that ticks and batch timeouts fire, and
//! submits envelopes to whichever node it likes (a follower refuses them, the leader takes
//! them; `committed`-mode waiters learn their block). The ledgers live on tmpfs
//! (`/dev/shm`) when there is one, so a run takes milliseconds of fsync, not seconds.
//!
//! Safety, checked after every turn: every node writes the same block at each height;
//! no tx id twice in a chain; a block holds only submitted envelopes. Liveness: after the
//! faults stop (all nodes up, no loss, no partition), the nodes converge on one chain
//! that holds every envelope whose waiter was told a block — in that block, once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;

use ordo_consensus::chain::{ChainError, OrderRequest};
use ordo_consensus::raft::{raft_id, CrashPoint, ManualClock, RaftSetup, SteppedRaft};
use ordo_consensus::ChainSupport;
use ordo_ledger::BlockStore;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, Role};
use ordo_testkit::{envelopes, keys, TestOrg};

use super::raft_check::{channel_config, check_acked, options, ChainCheck, CHANNEL, TICK};
use super::schedule::{self, SimCluster, NODES};
use super::SimFailure;

pub use super::raft::RaftSimStats;

mod net;
use net::{SimNet, Transport};

/// One consenter of the simulation.
struct Node {
    id: u64,
    name: String,
    identity: Identity,
    dir: std::path::PathBuf,
    /// `None` while crashed.
    up: Option<(Arc<ChainSupport>, SteppedRaft)>,
    /// Blocks of its ledger already checked.
    checked: u64,
    /// Tx ids in its chain.
    txs: BTreeSet<String>,
}

struct Sim {
    seed: u64,
    /// Crashes may also stop a node inside a turn, between two writes.
    torn: bool,
    step: usize,
    rng: StdRng,
    clock: ManualClock,
    net: Arc<SimNet>,
    nodes: Vec<Node>,
    genesis: Block,
    client: Identity,
    /// The safety checks, and every envelope submitted.
    check: ChainCheck,
    /// Envelopes handed to a node: tx id, the node's answer (taken or not), the
    /// committed-mode waiter (its block).
    waiters: Vec<Waiter>,
    /// tx id → block number a waiter was told.
    acked: BTreeMap<String, u64>,
    /// Nodes cut off from the others.
    cut: BTreeSet<u64>,
    stats: RaftSimStats,
    _dir: tempfile::TempDir,
}

/// One submitted envelope whose fate is not known yet.
struct Waiter {
    tx: String,
    node: usize,
    taken: Option<oneshot::Receiver<Result<u64, ChainError>>>,
    block: oneshot::Receiver<ordo_consensus::support::CommitOutcome>,
}

/// Runs one seed; crashes come between turns.
pub fn run(seed: u64) -> Result<RaftSimStats, SimFailure> {
    run_with(seed, false)
}

/// Runs one seed where half the crashes stop a node inside a turn instead, at one of the
/// [`CrashPoint`]s between two of its writes (the `raft-torn` core): a crash between turns
/// always finds a turn's writes complete, and the bug of a ledger ahead of the raft state
/// after a restart (found by the `raft_leader_kill_loop` chaos scenario) hid there.
pub fn run_torn(seed: u64) -> Result<RaftSimStats, SimFailure> {
    run_with(seed, true)
}

fn run_with(seed: u64, torn: bool) -> Result<RaftSimStats, SimFailure> {
    let core = if torn { "raft-disk-torn" } else { "raft-disk" };
    let fail = |what: String| SimFailure {
        core,
        seed,
        step: 0,
        what,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("runtime: {e}")))?;
    let _context = runtime.enter();
    let mut sim = Sim::new(seed, torn).map_err(fail)?;
    schedule::run(&mut sim)?;
    sim.final_check()?;
    Ok(sim.stats)
}

impl Sim {
    fn new(seed: u64, torn: bool) -> Result<Self, String> {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new().prefix("ordo-sim").tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .map_err(|e| e.to_string())?;
        let org = TestOrg::new("A");
        let client = org.member(Role::Client, "client");
        let mut nodes = Vec::new();
        let mut consenters = Vec::new();
        for i in 1..=NODES {
            let name = format!("orderer{i}");
            let (identity, entry) = org.consenter(&name, &format!("sim:{i}"), keys::random());
            consenters.push(entry);
            nodes.push(Node {
                id: raft_id(&name),
                dir: dir.path().join(&name),
                name,
                identity,
                up: None,
                checked: 0,
                txs: BTreeSet::new(),
            });
        }
        let config = channel_config(&org, consenters.clone());
        let genesis = ordo_proto::config::genesis_block(&config, 1).map_err(|e| e.to_string())?;
        let mut sim = Self {
            seed,
            torn,
            step: 0,
            rng: StdRng::seed_from_u64(seed),
            clock: ManualClock::new(),
            net: Arc::new(SimNet::default()),
            nodes,
            genesis,
            client,
            check: ChainCheck::default(),
            waiters: Vec::new(),
            acked: BTreeMap::new(),
            cut: BTreeSet::new(),
            stats: RaftSimStats::default(),
            _dir: dir,
        };
        {
            let mut dirs = sim.net.dirs.lock().unwrap_or_else(PoisonError::into_inner);
            for n in &sim.nodes {
                dirs.insert(n.id, n.dir.clone());
            }
        }
        for i in 0..NODES {
            sim.start(i)?;
        }
        Ok(sim)
    }

    fn fail(&self, what: String) -> SimFailure {
        SimFailure {
            core: if self.torn {
                "raft-disk-torn"
            } else {
                "raft-disk"
            },
            seed: self.seed,
            step: self.step,
            what,
        }
    }

    /// Starts node `i` on its directories (first start: with the genesis block).
    fn start(&mut self, i: usize) -> Result<(), String> {
        let node = &self.nodes[i];
        let store = BlockStore::open(&node.dir).map_err(|e| e.to_string())?;
        if store.height() == 0 {
            store.append(&self.genesis).map_err(|e| e.to_string())?;
        }
        let support = Arc::new(
            ChainSupport::new(store.clone(), node.identity.clone()).map_err(|e| e.to_string())?,
        );
        let setup = RaftSetup {
            id: node.id,
            voters: self.nodes.iter().map(|n| n.id).collect(),
            names: self.nodes.iter().map(|n| (n.id, n.name.clone())).collect(),
            transport: Arc::new(Transport {
                me: node.id,
                net: self.net.clone(),
            }),
            options: options(self.seed),
        };
        let raft = SteppedRaft::start(support.clone(), setup, self.clock.clone())
            .map_err(|e| e.to_string())?;
        self.net
            .ledgers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.id, store);
        self.nodes[i].up = Some((support, raft));
        Ok(())
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Runs `f` on node `i` if it is up, then checks what it wrote.
    fn turn(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut SteppedRaft) -> bool,
    ) -> Result<(), SimFailure> {
        let Some((_, raft)) = self.nodes[i].up.as_mut() else {
            return Ok(());
        };
        let alive = f(raft);
        self.check_node(i)?;
        if !alive && self.nodes[i].up.as_ref().is_some_and(|(_, r)| r.crashed()) {
            // An armed crash point stopped it mid-turn: it is dead like any crashed node.
            self.crash(i);
            return Ok(());
        }
        if !alive && self.nodes[i].up.as_ref().is_some_and(|(_, r)| r.stopped()) {
            return Err(self.fail(format!("{} stopped (storage failure)", self.nodes[i].name)));
        }
        Ok(())
    }

    /// Collects what the nodes told the clients: a refusal ends the wait (as Broadcast
    /// cancels the waiter), a block is an acknowledgement, a crash leaves it unknown.
    fn collect_acks(&mut self) {
        let mut still = Vec::new();
        for mut w in std::mem::take(&mut self.waiters) {
            if let Some(taken) = w.taken.as_mut() {
                match taken.try_recv() {
                    Ok(Ok(_)) => w.taken = None,
                    Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                        if let Some((support, _)) = self.nodes[w.node].up.as_ref() {
                            support.cancel_commit_waiter(&w.tx);
                        }
                        continue;
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                }
            }
            match w.block.try_recv() {
                Ok(Ok(block)) => {
                    self.stats.acked += 1;
                    self.acked.insert(w.tx, block);
                }
                Ok(Err(_)) => {} // told it was not ordered
                Err(oneshot::error::TryRecvError::Empty) => still.push(w),
                Err(oneshot::error::TryRecvError::Closed) => {} // its node crashed
            }
        }
        self.waiters = still;
    }

    /// Checks node `i`'s newly written blocks against the canonical chain.
    fn check_node(&mut self, i: usize) -> Result<(), SimFailure> {
        let Some((support, _)) = self.nodes[i].up.as_ref() else {
            return Ok(());
        };
        let ledger = support.ledger().clone();
        let height = ledger.height();
        let from = self.nodes[i].checked;
        for number in from..height {
            let block = ledger
                .block(number)
                .map_err(|e| {
                    self.fail(format!("{}: read block {number}: {e}", self.nodes[i].name))
                })?
                .ok_or_else(|| {
                    self.fail(format!("{}: block {number} missing", self.nodes[i].name))
                })?;
            let node = &mut self.nodes[i];
            if let Err(what) = self.check.block(&node.name, &mut node.txs, number, &block) {
                return Err(self.fail(what));
            }
        }
        self.nodes[i].checked = height;
        Ok(())
    }

    fn final_check(&mut self) -> Result<(), SimFailure> {
        let Some((reference, _)) = self.nodes[0].up.as_ref() else {
            return Err(self.fail("node 1 is down after liveness".into()));
        };
        let reference = reference.ledger().clone();
        self.stats.blocks = reference.height();
        let blocks: Vec<Block> = reference
            .blocks(0, reference.height())
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail(format!("final chain unreadable: {e}")))?;
        check_acked(blocks.into_iter(), &self.acked).map_err(|what| self.fail(what))
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
        let message = {
            let mut q = self
                .net
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if q.is_empty() {
                return Ok(());
            }
            let k = self.rng.gen_range(0..q.len());
            let duplicate = lossy && self.rng.gen_bool(0.03);
            if duplicate {
                q[k].clone()
            } else {
                q.swap_remove(k)
            }
        };
        let (from, to, bytes) = message;
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
        self.turn(i, |r| r.receive(from, bytes))
    }

    fn advance(&mut self) -> Result<(), SimFailure> {
        self.clock.advance(TICK);
        for i in 0..NODES {
            self.turn(i, SteppedRaft::tick)?;
        }
        Ok(())
    }

    fn in_flight(&self) -> bool {
        !self
            .net
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    fn up_nodes(&self) -> Vec<usize> {
        (0..NODES).filter(|i| self.nodes[*i].up.is_some()).collect()
    }

    fn accepting(&self, i: usize) -> bool {
        self.nodes[i]
            .up
            .as_ref()
            .is_some_and(|(_, r)| r.accepting())
    }

    fn submit(&mut self, i: usize) -> Result<(), SimFailure> {
        let n = self.check.submitted.len();
        let (env, tx_id) = envelopes::seeded(&self.client, CHANNEL, self.seed, n as u64);
        let Some((support, raft)) = self.nodes[i].up.as_mut() else {
            return Ok(());
        };
        self.stats.submitted += 1;
        self.check.submitted.insert(tx_id.clone());
        let block = match support.register_commit_waiter(&tx_id) {
            Ok(block) => block,
            Err(e) => return Err(self.fail(format!("waiter for {tx_id} refused: {e}"))),
        };
        let taken = raft.submit(OrderRequest {
            envelope: Bytes::from(env.encode_to_vec()),
            tx_id: tx_id.clone(),
            config_seq: 0,
        });
        self.waiters.push(Waiter {
            tx: tx_id,
            node: i,
            taken: Some(taken),
            block,
        });
        self.turn(i, SteppedRaft::tick)
    }

    fn torn(&self) -> bool {
        self.torn
    }

    /// The node stops after its next apply, persist or block pull.
    fn arm_torn_crash(&mut self, i: usize) {
        let point = match self.rng.gen_range(0..3) {
            0 => CrashPoint::AfterApply,
            1 => CrashPoint::AfterPersist,
            _ => CrashPoint::AfterBlockPull,
        };
        if let Some((_, raft)) = self.nodes[i].up.as_mut() {
            raft.set_crash_point(Some(point));
        }
    }

    fn crash(&mut self, i: usize) {
        self.stats.crashes += 1;
        let id = self.nodes[i].id;
        self.net
            .ledgers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        // Dropping the node closes its ledger and raft log: what was synced survives.
        self.nodes[i].up = None;
    }

    fn disarm_torn_crashes(&mut self) {
        for n in &mut self.nodes {
            if let Some((_, raft)) = n.up.as_mut() {
                raft.set_crash_point(None);
            }
        }
    }

    fn is_down(&self, i: usize) -> bool {
        self.nodes[i].up.is_none()
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

    fn after_step(&mut self) {
        self.collect_acks();
    }

    /// Same heights and nothing waiting.
    fn settled(&self) -> bool {
        let heights: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.up.as_ref().map_or(0, |(s, _)| s.height()))
            .collect();
        heights.iter().all(|h| *h == heights[0]) && self.waiters.is_empty()
    }

    fn not_settled(&self) -> SimFailure {
        let heights: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.up.as_ref().map_or(0, |(s, _)| s.height()))
            .collect();
        let leaders: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| n.up.as_ref().is_some_and(|(_, r)| r.is_leader()))
            .collect();
        let waiting: Vec<String> = self
            .waiters
            .iter()
            .take(5)
            .map(|w| {
                let in_chain = self.nodes.iter().any(|n| n.txs.contains(&w.tx));
                format!(
                    "{} on {} (taken answer {}, in a chain: {in_chain})",
                    &w.tx[..8],
                    self.nodes[w.node].name,
                    if w.taken.is_some() {
                        "pending"
                    } else {
                        "received"
                    }
                )
            })
            .collect();
        self.fail(format!(
            "no convergence after the faults stopped: heights {heights:?}, leaders {leaders:?}, {} envelopes still waiting: {}",
            self.waiters.len(),
            waiting.join("; ")
        ))
    }
}
