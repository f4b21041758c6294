//! Validate + commit of 500-transaction blocks with 2 endorsements each, on the peer's own
//! [`Committer`] over a real RocksDB [`BlockStore`] in a temporary directory (one synced
//! write batch per block, as in production).
//!
//! Each transaction is a `bank` invocation by org A's client that reads one fresh key as
//! absent and writes it, endorsed by the peers of A and B (the 2-of-3 policy), so every
//! transaction is VALID and each block costs 1,500 Ed25519 verifications (envelope + two
//! endorsements per transaction) plus MVCC reads of 500 keys and 500 writes.
//!
//! - `validate_commit/500tx_2endorsements`: [`Committer::commit`] — validation against
//!   the ledger's state and tx index, commit hash, and the synced write batch. Only the
//!   commit is timed; the transactions are signed and the block built outside the clock,
//!   a fresh block each iteration (new keys and tx ids), on a ledger that keeps growing.
//! - `validate_commit_pipelined/500tx_2endorsements`: the same blocks through the peer's
//!   pipeline — block n+1's state-free checks ([`Committer::prechecker`]) on one thread
//!   while block n is finished and written ([`Committer::commit_prechecked`]) on another,
//!   as the peer's deliver client does. Timed over a run of consecutive blocks, so the
//!   overlap counts; blocks are signed and built outside the clock.
//! - `validate_only/500tx_2endorsements`: [`validate_block`] alone over an in-memory
//!   empty state, the same block each iteration: the CPU part of the above.
//!
//! Throughput is reported in transactions per second. Run with
//! `cargo bench -p ordo-bench --bench validate_commit`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_main, Criterion, SamplingMode, Throughput};
use prost::Message;

use ordo_ledger::BlockStore;
use ordo_peer::committer::Committer;
use ordo_peer::validator::{validate_block, TxValidationCode, ValidationContext, Version};
use ordo_proto::block;
use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::common::{AckMode, ChaincodeDefinition, ChannelConfig, Role};
use ordo_proto::policy::build as policy;
use ordo_sdk::tx::{self, Proposal, RwSetBuilder};
use ordo_testkit::{ChannelBuilder, TestOrg};

const CHANNEL: &str = "bench";
const CHAINCODE: &str = "bank";
const TXS_PER_BLOCK: usize = 500;
const ORGS: [&str; 3] = ["A", "B", "C"];

/// Three orgs with a peer each, org A's client, and a channel whose `bank` chaincode
/// needs the peers of 2 of the 3 orgs.
struct Consortium {
    config: ChannelConfig,
    client: Identity,
    /// The peers of A and B.
    endorsers: [Identity; 2],
}

/// A member of `org` with a fresh key, enrolled by the org's CA key `ca`.
fn member(org: &TestOrg, role: Role, serial: u64) -> Identity {
    let name = role.as_str_name().to_lowercase();
    let enrollment = Enrollment::new(org.name(), role, &name).serial(serial);
    org.enroll(ordo_testkit::keys::random(), &enrollment)
}

fn consortium() -> Consortium {
    let mut builder = ChannelBuilder::new(CHANNEL)
        .max_count(TXS_PER_BLOCK as u32)
        .batch_bytes(16 << 20, 4 << 20)
        .timeout_ms(200)
        .ack(AckMode::Enqueued)
        .writers(policy::any_member(&[], &[Role::Client, Role::Admin]))
        .chaincodes(vec![ChaincodeDefinition {
            name: CHAINCODE.into(),
            version: "1".into(),
            endorsement_policy: Some(policy::n_out_of(
                2,
                &[("A", Role::Peer), ("B", Role::Peer), ("C", Role::Peer)],
            )),
            runtime: "builtin:bank".into(),
            sequence: 1,
            retired: false,
        }]);
    let mut peers = Vec::new();
    let mut client = None;
    for (i, name) in ORGS.iter().enumerate() {
        let org = TestOrg::new(name);
        peers.push(member(&org, Role::Peer, 1));
        if i == 0 {
            client = Some(member(&org, Role::Client, 2));
        }
        builder = builder.org(&org);
    }
    let config = builder.build();
    ordo_proto::config::validate(&config).expect("bench config is valid");
    let mut peers = peers.into_iter();
    let endorsers = [
        peers.next().expect("peer of A"),
        peers.next().expect("peer of B"),
    ];
    Consortium {
        config,
        client: client.expect("org A's client"),
        endorsers,
    }
}

impl Consortium {
    /// Transaction `i` of block set `set`: reads `k-<set>-<i>` as absent and writes it.
    fn tx(&self, set: u64, i: usize) -> Bytes {
        let key = format!("k-{set}-{i}");
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&set.to_be_bytes());
        nonce[8..].copy_from_slice(&(i as u64).to_be_bytes());
        let proposal = Proposal::with_nonce(
            self.client.cert_bytes().clone(),
            CHANNEL,
            tx::invocation(CHAINCODE, "put", vec![Bytes::from(key.clone())]),
            &nonce,
        )
        .expect("nonce");
        let mut rw = RwSetBuilder::new();
        rw.read(CHAINCODE, &key, None)
            .write(CHAINCODE, &key, Bytes::from(format!("{i:08}")));
        tx::endorse_known(&self.client, &proposal, "1", rw.build(), &self.endorsers)
            .expect("creator")
            .encode_to_vec()
            .into()
    }

    /// The [`TXS_PER_BLOCK`] envelopes of set `set`, signed on every core.
    fn envelopes(&self, set: u64) -> Vec<Bytes> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let per = TXS_PER_BLOCK.div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * per).min(TXS_PER_BLOCK)..((t + 1) * per).min(TXS_PER_BLOCK);
                    s.spawn(move || range.map(|i| self.tx(set, i)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("signing thread"))
                .collect()
        })
    }
}

fn validate_commit(c: &mut Criterion) {
    let net = consortium();
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = BlockStore::open(dir.path()).expect("ledger");
    let genesis =
        ordo_proto::config::genesis_block(&net.config, ordo_proto::now_ms()).expect("genesis");
    let mut committer = Committer::join(ledger, genesis).expect("join");
    let mut set = 0u64;

    let mut group = c.benchmark_group("validate_commit");
    group
        .throughput(Throughput::Elements(TXS_PER_BLOCK as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("500tx_2endorsements", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                set += 1;
                let envelopes = net.envelopes(set);
                let prev = committer.ledger().last_hash().expect("has blocks");
                let block = block::build(committer.height(), prev, envelopes);
                let start = Instant::now();
                let done = committer.commit(block).expect("commit");
                timed += start.elapsed();
                assert_eq!(done.validation.valid_count(), TXS_PER_BLOCK, "all valid");
            }
            timed
        })
    });
    group.finish();

    let mut group = c.benchmark_group("validate_commit_pipelined");
    group
        .throughput(Throughput::Elements(TXS_PER_BLOCK as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("500tx_2endorsements", |b| {
        b.iter_custom(|iters| {
            // A chain of `iters` blocks after the ledger's tip, built ahead.
            let mut prev = committer.ledger().last_hash().expect("has blocks");
            let mut blocks = Vec::new();
            for k in 0..iters {
                set += 1;
                let block = block::build(committer.height() + k, prev, net.envelopes(set));
                prev = block::hash(&block);
                blocks.push(block);
            }
            // One writer thread for the whole run, as the peer's blocking pool keeps its
            // threads: block n is finished and written there while this thread makes
            // block n+1's checks.
            let start = Instant::now();
            std::thread::scope(|s| {
                let (to_writer, jobs) = std::sync::mpsc::sync_channel::<(
                    ordo_peer::committer::PrecheckedBlock,
                    ordo_proto::Block,
                )>(1);
                let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
                let committer = &mut committer;
                let prechecker = committer.prechecker();
                s.spawn(move || {
                    for (checks, block) in jobs {
                        let done = committer.commit_prechecked(block, checks).expect("commit");
                        if done_tx.send(done.validation.valid_count()).is_err() {
                            return;
                        }
                    }
                });
                let mut sent = 0usize;
                for block in blocks {
                    let checks = prechecker.precheck(&block);
                    if sent > 0 {
                        let valid = done_rx.recv().expect("writer");
                        assert_eq!(valid, TXS_PER_BLOCK, "all valid");
                    }
                    to_writer.send((checks, block)).expect("writer");
                    sent += 1;
                }
                drop(to_writer);
                if sent > 0 {
                    assert_eq!(done_rx.recv().expect("writer"), TXS_PER_BLOCK);
                }
            });
            start.elapsed()
        })
    });
    group.finish();

    let ctx =
        ValidationContext::new(net.config.clone(), ordo_proto::now_ms() / 1000).expect("context");
    let block = block::build(1, [0u8; 32], net.envelopes(u64::MAX));
    let state: HashMap<(String, String), Version> = HashMap::new();
    let index: HashSet<String> = HashSet::new();
    let mut group = c.benchmark_group("validate_only");
    group
        .throughput(Throughput::Elements(TXS_PER_BLOCK as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("500tx_2endorsements", |b| {
        b.iter(|| {
            let v = validate_block(&block, &ctx, &state, &index);
            assert!(v.codes.iter().all(|c| *c == TxValidationCode::Valid));
            v
        })
    });
    group.finish();
}

// The macro's `pub fn benches` has no doc comment of its own.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::validate_commit);
}
criterion_main!(group::benches);
