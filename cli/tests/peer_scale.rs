//! Peers at scale over real processes: 20,000 endorser transactions with deliberate MVCC
//! conflicts, bad endorsement signatures, endorsement-policy failures and duplicate tx
//! ids reach two peers of different orgs; both end with identical codes and commit
//! hashes, and every deliberate failure has its expected code. Then a peer is SIGKILLed
//! again and again while it commits under load and must converge to the state of the
//! peer that never crashed.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ordo_proto::config;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, ChaincodeDefinition, Envelope, Role, Status as Code};
use ordo_proto::pb::peer::TxValidationCode;
use ordo_proto::pb::query::{query_request, GetBlock, QueryRequest};
use ordo_proto::policy::build as policy;
use ordo_sdk::tx::{self, Proposal, RwSetBuilder, Simulation};
use prost::Message;

const CHANNEL: &str = "scale";
const TXS: usize = 20_000;
const STREAMS: usize = 4;

struct Net {
    c: Consortium,
    o: OrdererProcess,
    genesis: std::path::PathBuf,
}

/// An orderer whose duplicate window holds one tx id, so that duplicates reach the peers
/// (the peers are the last line against them), and a channel deploying `bank` (2 of 3).
async fn network() -> Net {
    let c = Consortium::new("BankA,BankB,BankC");
    let admin = c.identity("BankA", "admin");
    let mut o =
        OrdererProcess::start_with(&c, "orderer0", "BankA", "[limits]\ndedupe_window = 1\n");
    o.wait_ready(&admin).await;
    let path = c.genesis(
        CHANNEL,
        &[
            "--orderer-endpoints",
            &o.addr,
            "--batch-timeout-ms",
            "50",
            "--max-message-count",
            "500",
        ],
    );
    let block = Block::decode(std::fs::read(&path).expect("read").as_slice()).expect("block");
    let mut cfg = config::config_from_block(&block).expect("config");
    cfg.chaincodes.push(ChaincodeDefinition {
        name: "bank".into(),
        version: "1".into(),
        endorsement_policy: Some(policy::n_out_of(
            2,
            &[
                ("BankA", Role::Peer),
                ("BankB", Role::Peer),
                ("BankC", Role::Peer),
            ],
        )),
        runtime: "builtin:bank".into(),
        sequence: 1,
        retired: false,
    });
    std::fs::write(
        &path,
        config::genesis_block(&cfg, 0)
            .expect("genesis")
            .encode_to_vec(),
    )
    .expect("write");
    join(&o.addr, &admin, &path).await;
    Net {
        c,
        o,
        genesis: path,
    }
}

async fn start_peer(net: &Net, name: &str, org: &str) -> PeerProcess {
    let admin = net.c.identity(org, "admin");
    let mut p = PeerProcess::start_peer(&net.c, name, org, &[]);
    p.wait_ready(&admin).await;
    join(&p.addr, &admin, &net.genesis).await;
    p
}

/// What a transaction was built to be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Valid,
    MvccConflict,
    BadEndorsementSignature,
    OneEndorser,
    Duplicate,
}

impl Kind {
    fn of(i: usize) -> Kind {
        match i % 10 {
            1 => Kind::MvccConflict,
            3 => Kind::BadEndorsementSignature,
            5 => Kind::OneEndorser,
            7 => Kind::Duplicate,
            _ => Kind::Valid,
        }
    }

    fn expected(self) -> TxValidationCode {
        match self {
            Kind::Valid => TxValidationCode::Valid,
            Kind::MvccConflict => TxValidationCode::MvccReadConflict,
            Kind::BadEndorsementSignature | Kind::OneEndorser => {
                TxValidationCode::EndorsementPolicyFailure
            }
            Kind::Duplicate => TxValidationCode::DuplicateTxid,
        }
    }
}

fn endorsed(
    creator: &Identity,
    endorsers: &[&Identity],
    key: &str,
    read_absent: bool,
    tamper: bool,
) -> (Envelope, String) {
    let p = Proposal::new(
        creator,
        CHANNEL,
        tx::invocation("bank", "set", vec![Bytes::copy_from_slice(key.as_bytes())]),
    );
    let mut rw = RwSetBuilder::new();
    if read_absent {
        rw.read("bank", key, None);
    }
    rw.write("bank", key, Bytes::from_static(b"1"));
    let payload = tx::response_payload(&p, Simulation::succeeded("1", rw.build()));
    let mut endorsements: Vec<_> = endorsers.iter().map(|e| tx::endorse(e, &payload)).collect();
    if tamper {
        let mut sig = endorsements[0].signature.to_vec();
        sig[10] ^= 0x20;
        endorsements[0].signature = sig.into();
    }
    let env =
        tx::assemble(creator, &p, payload, endorsements, ordo_proto::now_ms()).expect("assemble");
    (env, p.tx_id().to_string())
}

/// `n` transactions starting at index `from`, in the pattern of [`Kind::of`]: a conflict
/// reads the key the transaction before it writes, a duplicate repeats the envelope two
/// before it (the orderer remembers only the last id).
fn workload(c: &Consortium, from: usize, n: usize, run: &str) -> Vec<(Kind, Envelope, String)> {
    let client = c.identity("BankC", "client");
    let (pa, pb, pc) = (
        c.identity("BankA", "peer"),
        c.identity("BankB", "peer"),
        c.identity("BankC", "peer"),
    );
    let mut out: Vec<(Kind, Envelope, String)> = Vec::with_capacity(n);
    for i in from..from + n {
        let kind = Kind::of(i);
        let item = match kind {
            Kind::Valid => {
                let (e, id) = endorsed(&client, &[&pa, &pb], &format!("{run}-k{i}"), true, false);
                (kind, e, id)
            }
            Kind::MvccConflict => {
                let (e, id) = endorsed(
                    &client,
                    &[&pb, &pc],
                    &format!("{run}-k{}", i - 1),
                    true,
                    false,
                );
                (kind, e, id)
            }
            Kind::BadEndorsementSignature => {
                let (e, id) = endorsed(&client, &[&pa, &pc], &format!("{run}-k{i}"), false, true);
                (kind, e, id)
            }
            Kind::OneEndorser => {
                let (e, id) = endorsed(&client, &[&pc], &format!("{run}-k{i}"), false, false);
                (kind, e, id)
            }
            Kind::Duplicate => {
                let (_, e, id) = out[out.len() - 2].clone();
                (kind, e, id)
            }
        };
        out.push(item);
    }
    out
}

/// Sends the workload over `STREAMS` streams of contiguous slices (each a multiple of 10
/// long, so every dependency stays on one stream, in order).
async fn send(addr: &str, work: &[(Kind, Envelope, String)]) {
    let per = work.len() / STREAMS;
    assert_eq!(per % 10, 0);
    let mut tasks = Vec::new();
    for chunk in work.chunks(per) {
        let envs: Vec<Envelope> = chunk.iter().map(|(_, e, _)| e.clone()).collect();
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move { broadcast(&addr, envs).await }));
    }
    for t in tasks {
        for r in t.await.expect("sender") {
            assert_eq!(r.status, Code::Success as i32, "{}", r.info);
        }
    }
}

async fn height_of(addr: &str, id: &Identity) -> u64 {
    channel_info(addr, id, CHANNEL).await.height
}

/// Waits until every node reaches the orderer's height (which must stop moving).
async fn settle(o: &str, oid: &Identity, peers: &[(&str, &Identity)]) -> u64 {
    let mut last = 0;
    for _ in 0..600 {
        let h = height_of(o, oid).await;
        let mut all = h == last;
        for (addr, id) in peers {
            all &= height_of(addr, id).await == h;
        }
        if all {
            return h;
        }
        last = h;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nodes did not settle");
}

/// Every committed block of a peer, through its Query service.
async fn blocks_of(addr: &str, id: &Identity, height: u64) -> Vec<Block> {
    let ch = common::connect(addr).await.expect("connect");
    let mut client = ordo_proto::pb::query::query_client::QueryClient::new(ch)
        .max_decoding_message_size(ordo_sdk::orderer::MAX_GRPC_MESSAGE_BYTES);
    let mut out = Vec::new();
    for n in 0..height {
        let req = QueryRequest {
            query: Some(query_request::Query::Block(GetBlock { number: n })),
        };
        let env = ordo_proto::envelope::create_signed(
            id,
            CHANNEL,
            ordo_proto::pb::common::HeaderType::Message,
            req.encode_to_vec().into(),
            ordo_proto::now_ms(),
        )
        .0;
        let resp = client.query(env).await.expect("query").into_inner();
        out.push(resp.block.expect("block"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_transactions_two_peers_identical_codes_and_state() {
    let mut net = network().await;
    let admin_a = net.c.identity("BankA", "admin");
    let admin_b = net.c.identity("BankB", "admin");
    let mut pa = start_peer(&net, "peerA", "BankA").await;
    let mut pb = start_peer(&net, "peerB", "BankB").await;

    let work = workload(&net.c, 0, TXS, "r1");
    send(&net.o.addr, &work).await;
    let h = settle(
        &net.o.addr,
        &admin_a,
        &[(&pa.addr, &admin_a), (&pb.addr, &admin_b)],
    )
    .await;
    let ia = channel_info(&pa.addr, &admin_a, CHANNEL).await;
    let ib = channel_info(&pb.addr, &admin_b, CHANNEL).await;
    assert_eq!(ia.commit_hash, ib.commit_hash, "identical state hashes");

    let reader = net.c.identity("BankC", "client");
    let blocks_a = blocks_of(&pa.addr, &reader, h).await;
    let blocks_b = blocks_of(&pb.addr, &reader, h).await;
    let mut codes: HashMap<String, Vec<u8>> = HashMap::new();
    let mut committed = 0;
    for (a, b) in blocks_a.iter().zip(&blocks_b) {
        let ca = &a
            .metadata
            .as_ref()
            .expect("metadata")
            .transaction_validation_codes;
        let cb = &b
            .metadata
            .as_ref()
            .expect("metadata")
            .transaction_validation_codes;
        assert_eq!(
            ca,
            cb,
            "identical codes in block {}",
            a.header.as_ref().expect("header").number
        );
        if a.header.as_ref().expect("header").number == 0 {
            continue;
        }
        for (tx_id, code) in block_tx_ids(a).into_iter().zip(ca.iter()) {
            codes.entry(tx_id).or_default().push(*code);
            committed += 1;
        }
    }
    assert_eq!(
        committed, TXS,
        "every envelope was ordered and committed once"
    );
    let mut per_kind: HashMap<String, usize> = HashMap::new();
    for (kind, _, tx_id) in &work {
        let seen = &codes[tx_id];
        let code = if *kind == Kind::Duplicate {
            seen[1]
        } else {
            seen[0]
        };
        assert_eq!(
            TxValidationCode::try_from(i32::from(code)).ok(),
            Some(kind.expected()),
            "{kind:?} {tx_id}"
        );
        *per_kind.entry(format!("{kind:?}")).or_default() += 1;
    }
    assert_eq!(per_kind["Duplicate"], TXS / 10);
    pa.stop();
    pb.stop();
    net.o.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_killed_again_and_again_converges_to_the_same_state() {
    let mut net = network().await;
    let admin_a = net.c.identity("BankA", "admin");
    let admin_b = net.c.identity("BankB", "admin");
    let mut steady = start_peer(&net, "steady", "BankA").await;
    let mut victim = start_peer(&net, "victim", "BankB").await;
    let mut killed_behind = 0;
    for round in 0..5 {
        let work = workload(&net.c, 0, 2_000, &format!("crash{round}"));
        let addr = net.o.addr.clone();
        let sender = tokio::spawn(async move { send(&addr, &work).await });
        // Kill the victim while blocks stream in, at a different moment each round.
        tokio::time::sleep(Duration::from_millis(40 + 70 * round)).await;
        let at_kill = height_of(&victim.addr, &admin_b).await;
        victim.kill();
        sender.await.expect("sender");
        if at_kill < height_of(&net.o.addr, &admin_a).await {
            killed_behind += 1;
        }
        victim.restart(&admin_b).await;
    }
    assert!(
        killed_behind > 0,
        "at least one kill landed while the victim still had blocks to commit"
    );
    let h = settle(
        &net.o.addr,
        &admin_a,
        &[(&steady.addr, &admin_a), (&victim.addr, &admin_b)],
    )
    .await;
    let s = channel_info(&steady.addr, &admin_a, CHANNEL).await;
    let v = channel_info(&victim.addr, &admin_b, CHANNEL).await;
    assert_eq!((s.height, v.height), (h, h));
    assert_eq!(
        s.commit_hash, v.commit_hash,
        "the crashed peer converged to the same state"
    );
    steady.stop();
    victim.stop();
    net.o.stop();
}
