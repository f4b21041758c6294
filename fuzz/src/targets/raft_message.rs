//! Raft messages as an orderer receives them from the other consenters of a channel
//! (`ordo.cluster.Cluster/Step` carries them once the sender's proof checked): each is
//! handed to a real raft node ([`SteppedRaft`], the driver the orderer runs, on a real
//! ledger) which decodes it (rust-protobuf `eraftpb.Message`), checks sender and term,
//! steps raft-rs, and acts on what raft decides (persisting entries, applying committed
//! blocks, answering votes). Ticks interleave, so elections and heartbeats happen too.
//!
//! Input: up to 32 length-prefixed pieces. A piece's first byte picks the sender (one of
//! the two other consenters, or an id the channel does not know), or, with the top bit
//! set, a raft tick instead of a message; the rest is the message's bytes.
//!
//! Raft tolerates crashes, not lies: a consenter that sends well-formed but false messages
//! is outside its fault model (the BFT backend's job). What must hold here for any bytes
//! is that the node never panics and its ledger only grows; a node the messages stopped
//! (its storage refused what raft asked) is started again from its directories.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ordo_consensus::chain::{BoxFuture, ChainError, OrderRequest};
use ordo_consensus::raft::{
    raft_id, ManualClock, RaftOptions, RaftSetup, RaftTransport, SteppedRaft,
};
use ordo_consensus::ChainSupport;
use ordo_ledger::BlockStore;
use ordo_proto::pb::common::{Block, Consenter};
use ordo_testkit::org::consenter_entry;

use crate::fixture::{self, members, runtime};

/// Pieces per input at most.
const MAX_PIECES: usize = 32;

/// One raft tick.
const TICK: Duration = Duration::from_millis(100);

/// The consenters' names; the node under test is the first.
const NAMES: [&str; 3] = ["orderer0", "orderer1", "orderer2"];

/// A network that reaches nobody: what the node sends is dropped, forwards and pulls fail.
pub struct Nowhere;

impl RaftTransport for Nowhere {
    fn send(&self, _to: u64, _message: Vec<u8>) {}

    fn submit(
        &self,
        _to: u64,
        _request: OrderRequest,
        _is_config: bool,
    ) -> BoxFuture<'_, Result<u64, ChainError>> {
        Box::pin(async {
            Err(ChainError::Unsupported(
                "no network in the fuzz harness".into(),
            ))
        })
    }

    fn pull_blocks(
        &self,
        _from: u64,
        _start: u64,
        _end: u64,
    ) -> BoxFuture<'_, Result<Vec<Block>, ChainError>> {
        Box::pin(async {
            Err(ChainError::Unsupported(
                "no network in the fuzz harness".into(),
            ))
        })
    }
}

struct Node {
    raft: SteppedRaft,
    support: Arc<ChainSupport>,
    clock: ManualClock,
}

/// The raft genesis block: the fixture channel ordered by three raft consenters (org A's
/// orderer first; the others' keys do not matter, they never sign here).
fn genesis() -> &'static Block {
    static GENESIS: OnceLock<Block> = OnceLock::new();
    GENESIS.get_or_init(|| {
        let a = ordo_testkit::TestOrg::with_ca("A", members().ca_a.clone());
        let mut consenters: Vec<Consenter> = vec![consenter_entry(
            &members().orderer,
            NAMES[0],
            "orderer0:7050",
        )];
        for (i, name) in NAMES.iter().enumerate().skip(1) {
            let key = ed25519_dalek::SigningKey::from_bytes(&[0xd0 + i as u8; 32]);
            consenters.push(a.consenter(name, &format!("{name}:7050"), key).1);
        }
        let mut config = fixture::config().clone();
        if let Some(o) = config.orderer.as_mut() {
            o.consensus_type = "raft".into();
            o.consenters = consenters;
        }
        ordo_proto::config::genesis_block(&config, fixture::NOW_MS)
            .expect("the raft fixture config")
    })
}

fn start(generation: u64) -> Node {
    let _rt = runtime().enter();
    let dir = fixture::scratch(&format!("raft-{generation}"));
    let store = BlockStore::open(dir).expect("a block store");
    if store.height() == 0 {
        store.append(genesis()).expect("genesis appended");
    }
    let support =
        Arc::new(ChainSupport::new(store, members().orderer.clone()).expect("chain support"));
    let clock = ManualClock::new();
    let setup = RaftSetup {
        id: raft_id(NAMES[0]),
        voters: NAMES.iter().map(|n| raft_id(n)).collect(),
        names: NAMES.iter().map(|n| (raft_id(n), n.to_string())).collect(),
        transport: Arc::new(Nowhere),
        options: RaftOptions {
            tick_interval: TICK,
            election_tick: 10,
            heartbeat_tick: 2,
            max_inflight_blocks: 3,
            snapshot_interval_bytes: 16 * 1024,
            queue_capacity: 100,
            election_seed: Some(1),
        },
    };
    let raft =
        SteppedRaft::start(support.clone(), setup, clock.clone()).expect("the raft node starts");
    Node {
        raft,
        support,
        clock,
    }
}

fn node() -> &'static Mutex<(u64, Node)> {
    static NODE: OnceLock<Mutex<(u64, Node)>> = OnceLock::new();
    NODE.get_or_init(|| Mutex::new((0, start(0))))
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut guard = node().lock().unwrap_or_else(|e| e.into_inner());
    let _rt = runtime().enter();
    for piece in fixture::pieces(data, MAX_PIECES) {
        let Some((mode, rest)) = fixture::split(piece) else {
            continue;
        };
        let (generation, node) = &mut *guard;
        let height = node.support.height();
        let alive = if mode & 0x80 != 0 {
            node.clock.advance(TICK);
            node.raft.tick()
        } else {
            let from = match mode % 3 {
                0 => raft_id(NAMES[1]),
                1 => raft_id(NAMES[2]),
                _ => u64::from(mode),
            };
            node.raft.receive(from, rest.to_vec())
        };
        assert!(node.support.height() >= height, "the ledger shrank");
        if !alive {
            *generation += 1;
            let fresh = start(*generation);
            *node = fresh;
        }
    }
}

/// A vote request, a heartbeat and an append from consenter 1 (raft-rs messages encoded
/// with rust-protobuf), with ticks between.
pub fn seeds() -> Vec<Vec<u8>> {
    use protobuf::Message as _;
    use raft::eraftpb::{Entry, Message, MessageType};
    let me = raft_id(NAMES[0]);
    let from = raft_id(NAMES[1]);
    let message = |t: MessageType, term: u64, index: u64, commit: u64, entries: Vec<Entry>| {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.to = me;
        m.from = from;
        m.term = term;
        m.index = index;
        m.log_term = term.saturating_sub(1);
        m.commit = commit;
        m.set_entries(entries.into());
        m.write_to_bytes().expect("a raft message encodes")
    };
    let entry = Entry {
        term: 2,
        index: 2,
        data: b"not a block".to_vec().into(),
        ..Default::default()
    };
    let tick = vec![0x80u8];
    let with_sender = |m: Vec<u8>| [&[0u8][..], &m].concat();
    vec![
        fixture::join_pieces([
            with_sender(message(MessageType::MsgRequestVote, 2, 1, 0, vec![])),
            tick.clone(),
            with_sender(message(MessageType::MsgHeartbeat, 2, 0, 1, vec![])),
            with_sender(message(MessageType::MsgAppend, 2, 1, 2, vec![entry])),
        ]),
        fixture::join_pieces(std::iter::repeat_n(tick, 25)),
    ]
}
