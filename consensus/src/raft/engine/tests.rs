//! Engine transcripts: exact command sequences for elections, ordering, leader change
//! with blocks in flight, snapshot installation and every answer a waiter can get.
//!
//! Nodes are engines run by an in-memory driver ([`Group`]): messages wait in a queue
//! the test delivers, blocks go to a `Vec`, and every command is rendered as one line of
//! the node's transcript (timers left out), so a test reads like etcd raft's data-driven
//! transcripts: inputs, then exactly what the engine asked for.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use protobuf::Message as _;

use ordo_proto::block;
use ordo_proto::pb::common::Block;

use super::*;
use crate::chain::OrderRequest;
use crate::raft::storage::LogView;
use crate::support::ConfigState;
use crate::testing::{envelope, genesis, CHANNEL};

const TICK: Duration = Duration::from_millis(10);

fn options() -> RaftOptions {
    RaftOptions {
        tick_interval: TICK,
        election_tick: 10,
        heartbeat_tick: 2,
        max_inflight_blocks: 3,
        snapshot_interval_bytes: 64 << 20,
        queue_capacity: 100,
        election_seed: Some(1),
    }
}

/// The raft id of consenter `n` (1-based): transcripts name nodes by `n`.
fn raft_id_of(n: u64) -> u64 {
    crate::raft::raft_id(&format!("orderer{n}"))
}

/// One node: its engine, its ledger, what it was asked to do.
struct Node {
    engine: Engine,
    ledger: Vec<Block>,
    transcript: Vec<String>,
}

/// Engines wired by an in-memory driver; nodes are named `1..=n` (their raft ids are
/// [`raft_id_of`] those).
struct Group {
    nodes: BTreeMap<u64, Node>,
    in_flight: VecDeque<(u64, u64, Vec<u8>)>,
    now: Duration,
    /// Short names of tx ids, for transcripts.
    names: BTreeMap<String, String>,
}

impl Group {
    fn new(size: u64, max_count: u32) -> Self {
        let genesis = genesis(size, max_count);
        let voters: Vec<u64> = (1..=size).map(raft_id_of).collect();
        let config = ordo_proto::config::config_from_block(&genesis).expect("config");
        let state = Arc::new(ConfigState::new(config, 0).expect("state"));
        let mut nodes = BTreeMap::new();
        for id in 1..=size {
            let restored = Restored {
                view: LogView::founding(&voters),
                applied: 0,
                tip: ChainTip {
                    height: 1,
                    last_hash: block::hash(&genesis),
                    state: state.clone(),
                },
                marks: vec![BlockMark {
                    index: 0,
                    number: 0,
                    hash: block::hash(&genesis),
                }],
            };
            let engine = Engine::new(raft_id_of(id), CHANNEL, options(), restored).expect("engine");
            nodes.insert(
                id,
                Node {
                    engine,
                    ledger: vec![genesis.clone()],
                    transcript: Vec::new(),
                },
            );
        }
        Self {
            nodes,
            in_flight: VecDeque::new(),
            now: Duration::ZERO,
            names: BTreeMap::new(),
        }
    }

    /// Steps `input` on node `id` and executes what it asks.
    fn step(&mut self, id: u64, input: Input) {
        let commands = self.node(id).engine.step(input);
        for c in commands {
            self.execute(id, c);
        }
    }

    fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).expect("node")
    }

    fn execute(&mut self, id: u64, command: Command) {
        let line = match &command {
            Command::ArmTimer(_) => None,
            c => Some(self.render(c)),
        };
        if let Some(line) = line {
            self.node(id).transcript.push(line);
        }
        match command {
            Command::Send { to, message } => {
                let to = short(to);
                self.in_flight.push_back((id, to, message));
            }
            Command::WriteBlock(w) => {
                // A block this node built carries its tx ids, exactly; others none.
                let expected = match w.origin {
                    Origin::Replicated => Vec::new(),
                    _ => txs(&w.block),
                };
                assert_eq!(w.tx_ids, expected, "the tx ids a block write carries");
                let mut b = w.block;
                b.metadata = Some(ordo_proto::pb::common::BlockMetadata {
                    consenter_metadata: w.metadata,
                    ..Default::default()
                });
                self.node(id).ledger.push(b);
            }
            Command::CatchUp { to, tx_ids_at, .. } => {
                let source: Vec<Block> = self
                    .nodes
                    .values()
                    .map(|n| n.ledger.clone())
                    .max_by_key(Vec::len)
                    .unwrap_or_default();
                let node = self.node(id);
                while (node.ledger.len() as u64) <= to {
                    node.ledger.push(source[node.ledger.len()].clone());
                }
                let carried = tx_ids_at
                    .iter()
                    .map(|n| (*n, txs(&node.ledger[*n as usize])))
                    .collect();
                let last = node.ledger.last().expect("genesis");
                let state = node.engine.tip.state.clone();
                let report = CaughtUp {
                    tip: ChainTip {
                        height: node.ledger.len() as u64,
                        last_hash: block::hash(last),
                        state,
                    },
                    carried,
                };
                self.step(id, Input::CaughtUp(report));
            }
            _ => {}
        }
    }

    fn name(&self, tx_id: &str) -> String {
        self.names
            .get(tx_id)
            .cloned()
            .unwrap_or_else(|| tx_id[..8].to_string())
    }

    fn render(&self, c: &Command) -> String {
        match c {
            Command::Send { to, message } => {
                let m = raft::eraftpb::Message::parse_from_bytes(message).expect("message");
                let entries = if m.entries.is_empty() {
                    String::new()
                } else {
                    format!(
                        " entries {}..={}",
                        m.entries[0].index,
                        m.index + m.entries.len() as u64
                    )
                };
                format!(
                    "send {} {:?} term {}{entries}",
                    short(*to),
                    m.get_msg_type(),
                    m.term
                )
            }
            Command::Persist(w) => match w {
                LogWrite::Append {
                    entries,
                    hard_state,
                    truncate_from,
                } => {
                    let mut s = "persist".to_string();
                    if let Some(t) = truncate_from {
                        s += &format!(" truncate {t}..");
                    }
                    if let (Some(a), Some(b)) = (entries.first(), entries.last()) {
                        s += &format!(" entries {}..={}", a.index, b.index);
                    }
                    if let Some(hs) = hard_state {
                        s += &format!(
                            " term {} vote {} commit {}",
                            hs.term,
                            short(hs.vote),
                            hs.commit
                        );
                    }
                    s
                }
                LogWrite::Commit(hs) => format!("persist commit {}", hs.commit),
                LogWrite::ConfState(cs) => format!("persist voters {:?}", cs.voters),
                LogWrite::Compact { meta, discard, .. } => {
                    format!("persist snapshot at {} discard {discard:?}", meta.index)
                }
                LogWrite::Restart { meta, keep_to, .. } => {
                    format!("persist restart at {} keep to {keep_to}", meta.index)
                }
            },
            Command::WriteBlock(w) => {
                let txs: Vec<String> = txs(&w.block).iter().map(|t| self.name(t)).collect();
                format!(
                    "write block {} {:?} [{}]{}",
                    block::number(&w.block),
                    w.origin,
                    txs.join(" "),
                    if w.logged_at.is_some() {
                        " by reference"
                    } else {
                        ""
                    }
                )
            }
            Command::CatchUp {
                to,
                sources,
                tx_ids_at,
                ..
            } => {
                let sources: Vec<u64> = sources.iter().map(|s| short(*s)).collect();
                format!("catch up to block {to} from {sources:?} reporting {tx_ids_at:?}")
            }
            Command::Answer { waiter, result } => match result {
                Ok(term) => format!("answer {waiter} taken in term {term}"),
                Err(e) => format!("answer {waiter} {e}"),
            },
            Command::Reject { tx_id, reason } => format!("reject {}: {reason}", self.name(tx_id)),
            Command::ArmTimer(at) => format!("timer {at:?}"),
            Command::Reconfigure(c) => format!("reconfigure {} consenters", c.len()),
            Command::Stop(why) => format!("stop {why:?}"),
        }
    }

    /// Moves time on by `ticks` raft ticks on every node (flushing each).
    fn tick(&mut self, ticks: u32) {
        for _ in 0..ticks {
            self.now += TICK;
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                let now = self.now;
                self.step(id, Input::Time { now, unix_secs: 1 });
                self.step(id, Input::Flush);
            }
        }
    }

    /// Delivers every message in flight (and what they cause) until none is left,
    /// except to or from nodes in `cut`.
    fn deliver_all(&mut self, cut: &[u64]) {
        while let Some((from, to, bytes)) = self.in_flight.pop_front() {
            if cut.contains(&from) || cut.contains(&to) {
                continue;
            }
            let from = raft_id_of(from);
            self.step(to, Input::Message { from, bytes });
            self.step(to, Input::Flush);
        }
    }

    /// Runs until `id` leads and accepts envelopes.
    fn elect(&mut self, id: u64) {
        for _ in 0..100 {
            if self.nodes[&id].engine.status().accepting {
                return;
            }
            if self.nodes.values().all(|n| n.engine.status().leader == 0) {
                let raw = &mut self.node(id).engine.raw;
                let _ = raw.campaign();
                self.step(id, Input::Flush);
            }
            self.deliver_all(&[]);
            self.tick(1);
        }
        panic!("node {id} did not become an accepting leader");
    }

    /// Node `new` campaigns and becomes an accepting leader while node `cut` is cut off.
    fn take_over(&mut self, new: u64, cut: u64) {
        let raw = &mut self.node(new).engine.raw;
        let _ = raw.campaign();
        self.step(new, Input::Flush);
        for _ in 0..20 {
            self.deliver_all(&[cut]);
            if self.nodes[&new].engine.status().accepting {
                return;
            }
            self.tick(1);
        }
        panic!("node {new} did not take over");
    }

    fn propose(&mut self, id: u64, n: u64, waiter: Option<WaiterId>) {
        let (envelope, tx_id) = envelope(n, 10);
        self.names.insert(tx_id.clone(), format!("tx{n}"));
        self.step(
            id,
            Input::Propose(Proposal {
                request: OrderRequest {
                    envelope,
                    tx_id,
                    config_seq: 0,
                },
                is_config: false,
                forwarded: false,
                waiter,
            }),
        );
    }

    /// Takes node `id`'s transcript so far.
    fn take(&mut self, id: u64) -> Vec<String> {
        std::mem::take(&mut self.node(id).transcript)
    }
}

/// The short name (1-based) of the node with raft id `raft`.
fn short(raft: u64) -> u64 {
    (1..=9).find(|n| raft_id_of(*n) == raft).unwrap_or(0)
}

fn txs(b: &Block) -> Vec<String> {
    b.data
        .iter()
        .flat_map(|d| d.data.iter())
        .filter_map(ordo_proto::envelope::tx_id_of)
        .collect()
}

fn lines(expected: &str) -> Vec<String> {
    expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn a_lone_voter_elects_itself_and_writes_each_block_by_reference() {
    let mut g = Group::new(1, 2);
    g.step(1, Input::Flush);
    assert_eq!(
        g.take(1),
        lines("persist entries 1..=1 term 1 vote 1 commit 0\npersist commit 1")
    );
    assert!(g.nodes[&1].engine.status().accepting);
    g.propose(1, 1, Some(7));
    g.propose(1, 2, None);
    assert_eq!(
        g.take(1),
        lines("answer 7 taken in term 1"),
        "the second envelope fills the block; a local one is not answered"
    );
    g.step(1, Input::Flush);
    assert_eq!(
        g.take(1),
        lines(
            "persist entries 2..=2
             persist commit 2
             write block 1 Proposed [tx1 tx2] by reference"
        ),
        "the entry is durable before the block that refers to it"
    );
}

#[test]
fn a_batch_timeout_cuts_what_is_pending() {
    let mut g = Group::new(1, 10);
    g.step(1, Input::Flush);
    g.take(1);
    g.propose(1, 1, None);
    g.step(1, Input::Flush);
    assert!(g.take(1).is_empty(), "nothing is cut before the timeout");
    g.tick(4);
    assert!(g.take(1).is_empty());
    g.tick(1);
    assert_eq!(
        g.take(1),
        lines(
            "persist entries 2..=2
             persist commit 2
             write block 1 Proposed [tx1] by reference"
        )
    );
}

#[test]
fn three_nodes_elect_and_replicate_in_order() {
    let mut g = Group::new(3, 1);
    g.elect(1);
    for id in [1, 2, 3] {
        g.take(id);
    }
    g.propose(1, 1, None);
    assert!(g.take(1).is_empty(), "proposed, not yet flushed");
    g.step(1, Input::Flush);
    assert_eq!(
        g.take(1),
        lines(
            "send 2 MsgAppend term 1 entries 2..=2
             send 3 MsgAppend term 1 entries 2..=2
             persist entries 2..=2"
        ),
        "a leader sends before it persists (raft allows it) and writes nothing yet"
    );
    g.deliver_all(&[]);
    assert_eq!(
        g.take(1),
        lines(
            "send 2 MsgAppend term 1
             send 3 MsgAppend term 1
             write block 1 Proposed [tx1] by reference
             persist term 1 vote 1 commit 2"
        ),
        "a quorum's acks commit the entry (persisted in the previous flush); its block is \
         written before the commit index is recorded, which recovery repairs after a crash"
    );
    assert_eq!(
        g.take(2),
        lines(
            "persist entries 2..=2
             send 1 MsgAppendResponse term 1
             write block 1 Replicated [tx1] by reference
             persist term 1 vote 1 commit 2
             send 1 MsgAppendResponse term 1"
        ),
        "a follower acknowledges only what it persisted"
    );
}

#[test]
fn a_follower_refuses_envelopes_naming_the_leader() {
    let mut g = Group::new(3, 1);
    g.elect(1);
    g.take(2);
    g.propose(2, 1, Some(3));
    g.propose(2, 2, None);
    let t = g.take(2);
    assert_eq!(
        t[0],
        format!(
            "answer 3 not the leader (leader: raft node {:x})",
            raft_id_of(1)
        )
    );
    assert_eq!(t.len(), 2);
    assert!(
        t[1].starts_with("reject tx2: not the leader"),
        "a local envelope's committed-mode waiter hears it: {t:?}"
    );
}

#[test]
fn a_deposed_leader_tells_the_waiters_of_its_lost_block() {
    let mut g = Group::new(3, 1);
    g.elect(1);
    // Node 1 proposes a block nobody receives.
    g.propose(1, 1, None);
    g.step(1, Input::Flush);
    g.in_flight.clear();
    // Node 2 takes over while 1 is cut off and orders its own block at height 1.
    for id in [1, 2, 3] {
        g.take(id);
    }
    g.take_over(2, 1);
    g.propose(2, 2, None);
    g.step(2, Input::Flush);
    g.deliver_all(&[1]);
    g.take(1);
    // Healed: node 1 learns the new term, truncates its entry and applies node 2's.
    g.tick(3);
    g.deliver_all(&[]);
    g.tick(3);
    g.deliver_all(&[]);
    let t = g.take(1);
    let write = t
        .iter()
        .position(|l| l.starts_with("write block 1 Replicated [tx2]"))
        .unwrap_or_else(|| panic!("node 2's block written: {t:?}"));
    let reject = t
        .iter()
        .position(|l| {
            l == "reject tx1: the raft leader changed before the envelope was ordered; resubmit"
        })
        .unwrap_or_else(|| panic!("tx1's waiter told: {t:?}"));
    assert!(
        t.iter().any(|l| l.starts_with("persist truncate 2..")),
        "the stale entry is replaced: {t:?}"
    );
    assert!(
        reject < write,
        "told when the later term's entry applies: {t:?}"
    );
    assert_eq!(g.nodes[&1].ledger.len(), 2);
    assert_eq!(txs(&g.nodes[&1].ledger[1]), txs(&g.nodes[&2].ledger[1]));
}

/// The rule found by the raft simulation (seed 30): once an entry of a later term is
/// applied, a deposed leader's proposals of earlier terms that were not written are
/// lost — even when no block ever takes their height.
#[test]
fn a_deposed_leaders_lost_proposal_is_settled_by_a_later_terms_entry() {
    let mut g = Group::new(3, 1);
    g.elect(1);
    g.propose(1, 1, None);
    g.step(1, Input::Flush);
    g.in_flight.clear();
    g.take_over(2, 1);
    g.take(1);
    for _ in 0..3 {
        g.tick(3);
        g.deliver_all(&[]);
    }
    let t = g.take(1);
    assert!(
        t.contains(
            &"reject tx1: the raft leader changed before the envelope was ordered; resubmit"
                .to_string()
        ),
        "tx1's waiter is told once node 2's empty entry applies: {t:?}"
    );
    assert!(
        !t.iter().any(|l| l.starts_with("write block")),
        "no block took its height: {t:?}"
    );
    assert_eq!(g.nodes[&1].ledger.len(), 1);
}

/// A config block that removes a consenter goes as the context of a raft conf change:
/// every node makes the new voter set durable, then writes the config block; the
/// removed node stops.
#[test]
fn a_membership_change_commits_with_its_config_block() {
    let mut g = Group::new(3, 10);
    g.elect(1);
    let mut config = ordo_proto::config::config_from_block(&genesis(3, 10)).expect("config");
    config.sequence = 1;
    config
        .orderer
        .as_mut()
        .expect("orderer")
        .consenters
        .truncate(2);
    let data = ordo_proto::pb::common::ConfigEnvelope {
        config: config.encode_to_vec().into(),
        last_update: Default::default(),
    };
    let (env, tx_id) = ordo_proto::envelope::create_signed_with_nonce(
        &crate::testing::client(),
        CHANNEL,
        ordo_proto::pb::common::HeaderType::Config,
        data.encode_to_vec().into(),
        1,
        &[9; 24],
    );
    g.names.insert(tx_id.clone(), "cfg".into());
    for id in [1, 2, 3] {
        g.take(id);
    }
    g.step(
        1,
        Input::Propose(Proposal {
            request: OrderRequest {
                envelope: env.encode_to_vec().into(),
                tx_id,
                config_seq: 0,
            },
            is_config: true,
            forwarded: false,
            waiter: Some(4),
        }),
    );
    assert_eq!(g.take(1), lines("answer 4 taken in term 1"));
    g.step(1, Input::Flush);
    for _ in 0..3 {
        g.deliver_all(&[]);
        g.tick(1);
    }
    let voters = format!("persist voters [{}, {}]", raft_id_of(1), raft_id_of(2));
    let voters_alt = format!("persist voters [{}, {}]", raft_id_of(2), raft_id_of(1));
    for (id, origin) in [(1, "ProposedConfig"), (2, "Replicated"), (3, "Replicated")] {
        let t = g.take(id);
        let persisted = t
            .iter()
            .position(|l| *l == voters || *l == voters_alt)
            .unwrap_or_else(|| panic!("node {id} records the new voters: {t:?}"));
        let written = t
            .iter()
            .position(|l| *l == format!("write block 1 {origin} [cfg]"))
            .unwrap_or_else(|| panic!("node {id} writes the config block: {t:?}"));
        assert!(
            persisted < written,
            "node {id}: voters durable before the block"
        );
        if id == 3 {
            assert_eq!(t.last().map(String::as_str), Some("stop Evicted"), "{t:?}");
        }
    }
    assert_eq!(g.nodes[&1].engine.voters().len(), 2);
}

#[test]
fn a_follower_behind_a_snapshot_catches_up_before_its_log_restarts() {
    let mut g = Group::new(3, 1);
    for n in g.nodes.values_mut() {
        n.engine.options.snapshot_interval_bytes = 1;
    }
    g.elect(1);
    // Node 3 misses five blocks and is silent long enough for the leader to stop
    // waiting for it; the others compact past them.
    for n in 1..=5 {
        g.propose(1, n, None);
        g.step(1, Input::Flush);
        g.deliver_all(&[3]);
    }
    for _ in 0..12 {
        g.tick(1);
        g.deliver_all(&[3]);
    }
    g.propose(1, 6, None);
    g.step(1, Input::Flush);
    g.deliver_all(&[3]);
    let t = g.take(1);
    assert!(
        t.iter().any(|l| l.starts_with("persist snapshot at")),
        "the leader compacted: {t:?}"
    );
    g.take(3);
    for _ in 0..6 {
        g.tick(1);
        g.deliver_all(&[]);
    }
    let t = g.take(3);
    let catch_up = t
        .iter()
        .position(|l| l.starts_with("catch up to block"))
        .unwrap_or_else(|| panic!("node 3 catches up: {t:?}"));
    assert!(
        t[catch_up + 1].starts_with("persist restart at"),
        "the log restarts right after the blocks are in: {t:?}"
    );
    assert!(
        t[catch_up + 1].ends_with("keep to 1"),
        "entries node 3 applied stay on disk: {t:?}"
    );
    assert_eq!(g.nodes[&3].ledger.len(), g.nodes[&1].ledger.len());
    assert_eq!(g.nodes[&3].engine.height(), g.nodes[&1].engine.height());
}

#[test]
fn every_answer_a_proposal_can_get() {
    let mut g = Group::new(1, 2);
    g.step(1, Input::Flush);
    g.take(1);
    // Taken.
    g.propose(1, 1, Some(1));
    // A config update validated at another sequence.
    let (env, tx) = envelope(2, 10);
    g.step(
        1,
        Input::Propose(Proposal {
            request: OrderRequest {
                envelope: env,
                tx_id: tx,
                config_seq: 5,
            },
            is_config: true,
            forwarded: false,
            waiter: Some(2),
        }),
    );
    // Too large for the batch: a forwarded one hears it, a local one's waiter does.
    let (big, big_tx) = envelope(3, 8192);
    g.names.insert(big_tx.clone(), "tx3".into());
    for (forwarded, waiter) in [(true, 3), (false, 4)] {
        g.step(
            1,
            Input::Propose(Proposal {
                request: OrderRequest {
                    envelope: big.clone(),
                    tx_id: big_tx.clone(),
                    config_seq: 0,
                },
                is_config: false,
                forwarded,
                waiter: Some(waiter),
            }),
        );
    }
    let t = g.take(1);
    assert_eq!(t[0], "answer 1 taken in term 1");
    assert_eq!(
        t[1],
        "answer 2 rejected after a configuration change: config update validated at sequence 5 but the channel is at 0"
    );
    assert!(
        t[2].starts_with("answer 3 rejected after a configuration change:"),
        "{t:?}"
    );
    assert!(t[3].starts_with("reject tx3:"), "{t:?}");
    assert_eq!(t[4], "answer 4 taken in term 1");
    assert_eq!(t.len(), 5);
    // Pending when the chain stops: told it will not be written.
    let commands = g
        .node(1)
        .engine
        .shut_down("the raft chain is shutting down");
    let rendered: Vec<String> = commands.iter().map(|c| g.render(c)).collect();
    assert_eq!(
        rendered,
        lines("reject tx1: the raft chain is shutting down")
    );
    // After the stop, a proposal is answered at once.
    g.propose(1, 4, Some(9));
    assert_eq!(g.take(1), lines("answer 9 chain is shutting down"));
}

#[test]
fn a_halting_follower_stops_at_once_and_a_leader_drains_first() {
    let mut g = Group::new(3, 10);
    g.elect(1);
    g.take(2);
    g.step(2, Input::Halt);
    assert_eq!(g.take(2), lines("stop Halted"));
    g.take(1);
    g.propose(1, 1, None);
    g.step(1, Input::Halt);
    let t = g.take(1);
    assert!(
        !t.iter().any(|l| l.starts_with("stop")),
        "the leader first orders what it took: {t:?}"
    );
    assert!(!g.nodes[&1].engine.status().drained);
    let mut t = Vec::new();
    for _ in 0..3 {
        g.step(1, Input::Flush);
        g.deliver_all(&[2]);
        t.extend(g.take(1));
    }
    assert!(
        t.iter()
            .any(|l| l.starts_with("write block 1 Proposed [tx1]")),
        "{t:?}"
    );
    assert!(
        !t.iter().any(|l| l.starts_with("stop")),
        "a leader never stops itself: {t:?}"
    );
    assert!(
        g.nodes[&1].engine.status().drained,
        "its block written, the leader has nothing left (the driver stops it once its \
         queue is empty too)"
    );
}

#[test]
fn messages_raft_rs_would_abort_on_are_dropped_and_the_group_goes_on() {
    use protobuf::Message as _;
    use raft::eraftpb::{Entry, Message, MessageType};
    let mut g = Group::new(3, 1);
    g.elect(1);
    g.propose(1, 1, None);
    g.step(1, Input::Flush);
    g.deliver_all(&[]);
    let (leader, follower) = (raft_id_of(1), raft_id_of(2));
    let forged = |t: MessageType, change: &dyn Fn(&mut Message)| {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.from = leader;
        m.to = follower;
        m.term = 1;
        change(&mut m);
        m.write_to_bytes().expect("encodes")
    };
    let hostile = [
        // Found by fuzz/src/targets/raft_message.rs: raft-rs answers a vote request of
        // term 0 with a response it then aborts on.
        forged(MessageType::MsgRequestVote, &|m| m.term = 0),
        // A heartbeat committing past the follower's log.
        forged(MessageType::MsgHeartbeat, &|m| m.commit = 1_000),
        // An append rewriting the follower's committed entry 2 with another term.
        forged(MessageType::MsgAppend, &|m| {
            m.index = 1;
            m.log_term = 1;
            m.commit = 2;
            m.set_entries(
                vec![Entry {
                    term: 7,
                    index: 2,
                    ..Default::default()
                }]
                .into(),
            );
        }),
        // Found by fuzz/src/targets/raft_message.rs: an append "after entry 1,000 of term
        // 0". raft-rs reads the term of an index past its log's end as 0, takes the
        // append as matching, and aborts slicing a log that does not reach it.
        forged(MessageType::MsgAppend, &|m| {
            m.index = 1_000;
            m.log_term = 0;
            m.commit = 1_001;
            m.set_entries(
                vec![Entry {
                    term: 1,
                    index: 1_001,
                    ..Default::default()
                }]
                .into(),
            );
        }),
        // Local inputs: campaign now, propose this entry.
        forged(MessageType::MsgHup, &|_| {}),
        forged(MessageType::MsgPropose, &|m| {
            m.set_entries(vec![Entry::default()].into())
        }),
    ];
    for bytes in hostile {
        g.step(
            2,
            Input::Message {
                from: leader,
                bytes,
            },
        );
        g.step(2, Input::Flush);
    }
    let status = g.nodes[&2].engine.status();
    assert_eq!(status.leader, leader, "the follower still follows node 1");
    g.take(2);
    g.propose(1, 2, None);
    g.step(1, Input::Flush);
    g.deliver_all(&[]);
    assert!(
        g.take(2).iter().any(|l| l.starts_with("write block 2")),
        "the follower still replicates"
    );
}
