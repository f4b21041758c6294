use super::*;
use crate::deliver::OursInBlock;
use std::collections::BTreeMap;

fn header() -> PeerReportHeader {
    PeerReportHeader {
        consensus: "solo".into(),
        ack_mode: "enqueued".into(),
        channel: "ch".into(),
        clients: 2,
        endorsing_orgs: vec!["A".into(), "B".into()],
        signing: "signed".into(),
        conflicts_planned: 1,
        codes_from: "p0".into(),
    }
}

/// Transactions 0–2 delivered in block 5 at 100 ms, transaction 3 in block 6 at 200 ms.
fn delivered(t0: Instant) -> DeliverOutcome {
    let ms = |n| t0 + Duration::from_millis(n);
    DeliverOutcome {
        delivered_at: vec![Some(ms(100)), Some(ms(100)), Some(ms(100)), Some(ms(200))],
        delivered: 4,
        duplicates: 0,
        blocks: 2,
        last_delivery: Some(ms(200)),
        ours_per_block: vec![
            OursInBlock {
                number: 5,
                txs: 3,
                at: ms(100),
            },
            OursInBlock {
                number: 6,
                txs: 1,
                at: ms(200),
            },
        ],
        lost: 0,
    }
}

/// One stream: transactions 0 and 1 submitted at 0 ms, 2 and 3 at 50 ms.
fn streams(t0: Instant) -> Vec<StreamOutcome> {
    let ms = |n| t0 + Duration::from_millis(n);
    vec![StreamOutcome {
        first_index: 0,
        submitted_at: vec![ms(0), ms(0), ms(50), ms(50)],
        accepted: vec![true; 4],
        rejections: BTreeMap::new(),
        last_ack: Some(ms(100)),
    }]
}

fn totals(t0: Instant) -> BroadcastTotals {
    BroadcastTotals {
        sent: 4,
        accepted: 4,
        rejected: 0,
        rejections: BTreeMap::new(),
        first_submit: Some(t0),
        last_ack: Some(t0 + Duration::from_millis(100)),
    }
}

fn peer(name: &str, height: u64, hash: u8, reached_at: Option<Instant>) -> PeerResult {
    PeerResult {
        name: name.into(),
        org: "A".into(),
        height,
        commit_hash: vec![hash, 0xff],
        reached_at,
    }
}

fn tally() -> CodeTally {
    let mut t = CodeTally::new(0);
    t.committed = 4;
    t.codes.insert("VALID".into(), 3);
    t.codes.insert("MVCC_READ_CONFLICT".into(), 1);
    t
}

#[test]
fn throughput_is_the_slowest_peers() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let r = build_report(
        PeerTally {
            totals: totals(t0),
            streams: &streams(t0),
            delivered: &delivered(t0),
            committed_at: vec![Some(ms(300)), Some(ms(800))],
            tally: tally(),
            peers: vec![
                peer("p0", 7, 1, Some(ms(400))),
                peer("p1", 7, 1, Some(ms(800))),
            ],
            start_height: 5,
            final_height: 7,
            end: ms(900),
        },
        header(),
    );
    assert_eq!(r.duration_s, 0.8);
    assert_eq!(r.tx_per_s, 5.0);
    assert_eq!(r.ordered_per_s, 20.0);
    assert_eq!(r.peers[0].tx_per_s, 10.0);
    assert_eq!(r.peers[0].commit_hash, "01ff");
    assert_eq!(r.peers[1].duration_s, 0.8);
    assert!(r.commit_hashes_agree);
    assert_eq!((r.txs_committed, r.blocks, r.final_height), (4, 2, 7));
    assert_eq!(r.codes.get("MVCC_READ_CONFLICT"), Some(&1));
    // Submit → on every peer: 300, 300 and 250 ms for block 5, 750 ms for block 6.
    assert_eq!(
        (r.latency_ms_p50, r.latency_ms_p99, r.latency_ms_max),
        (300.0, 750.0, 750.0)
    );
    assert_eq!(r.latency_ms_percentiles.value[0], 250.0);
    // 0.8 s in intervals of 0.1 s: block 5 on every peer at 0.3 s, block 6 at the end.
    assert_eq!(r.throughput.interval_s, 0.1);
    assert_eq!(
        r.throughput.tx_per_s,
        vec![0.0, 0.0, 0.0, 30.0, 0.0, 0.0, 0.0, 10.0]
    );
}

#[test]
fn a_peer_behind_or_a_different_hash_is_disagreement() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let run = |peers| {
        build_report(
            PeerTally {
                totals: totals(t0),
                streams: &streams(t0),
                delivered: &delivered(t0),
                committed_at: vec![Some(ms(300)), None],
                tally: tally(),
                peers,
                start_height: 5,
                final_height: 7,
                end: ms(2000),
            },
            header(),
        )
    };
    let behind = run(vec![
        peer("p0", 7, 1, Some(ms(400))),
        peer("p1", 6, 1, None),
    ]);
    assert!(!behind.commit_hashes_agree);
    assert_eq!(behind.tx_per_s, 0.0);
    assert_eq!(behind.duration_s, 2.0);
    assert!(!behind.peers[1].reached_final_height);
    assert_eq!(behind.peers[1].tx_per_s, 0.0);
    // Only block 5 reached every peer: its three transactions alone have a latency.
    assert_eq!(behind.latency_ms_max, 300.0);
    let counted = behind.throughput.tx_per_s.iter().sum::<f64>() * behind.throughput.interval_s;
    assert!((counted - 3.0).abs() < 1e-9, "{counted}");
    let forked = run(vec![
        peer("p0", 7, 1, Some(ms(400))),
        peer("p1", 7, 2, Some(ms(500))),
    ]);
    assert!(!forked.commit_hashes_agree);
    assert_eq!(forked.tx_per_s, 8.0);
}
