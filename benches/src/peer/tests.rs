use super::*;
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

fn delivered(t0: Instant) -> DeliverOutcome {
    DeliverOutcome {
        delivered_at: vec![Some(t0); 4],
        delivered: 4,
        duplicates: 0,
        blocks: 2,
        last_delivery: Some(t0 + Duration::from_millis(200)),
        ours_per_block: vec![(5, 3), (6, 1)],
        lost: 0,
    }
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
            delivered: &delivered(t0),
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
}

#[test]
fn a_peer_behind_or_a_different_hash_is_disagreement() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let run = |peers| {
        build_report(
            PeerTally {
                totals: totals(t0),
                delivered: &delivered(t0),
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
    let forked = run(vec![
        peer("p0", 7, 1, Some(ms(400))),
        peer("p1", 7, 2, Some(ms(500))),
    ]);
    assert!(!forked.commit_hashes_agree);
    assert_eq!(forked.tx_per_s, 8.0);
}
