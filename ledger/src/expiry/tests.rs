use bytes::Bytes;
use ordo_proto::block;
use ordo_proto::pb::common::Block;

use super::*;
use crate::StateCommit;

/// An endorser-transaction envelope with `tx_id`, signed (by its header) at `at_ms`.
fn env(tx_id: &str, at_ms: u64) -> Bytes {
    crate::tests_support::tx_envelope("ch", tx_id, at_ms)
}

/// A ledger with a genesis block committed.
fn ledger(dir: &std::path::Path) -> BlockStore {
    let store = BlockStore::open(dir).expect("open");
    let genesis = block::build(0, block::GENESIS_PREVIOUS_HASH, vec![env("genesis", 0)]);
    commit(&store, &genesis, &[Some("genesis")], 0).expect("genesis");
    store
}

fn commit(
    store: &BlockStore,
    b: &Block,
    ids: &[Option<&str>],
    floor_ms: u64,
) -> Result<(), LedgerError> {
    store.commit(
        b,
        &StateCommit {
            codes: vec![0; ids.len()],
            tx_ids: ids.iter().map(|i| i.map(str::to_string)).collect(),
            commit_hash: [block::number(b) as u8; 32],
            expiry_floor_ms: floor_ms,
            record_tx_times: true,
            ..Default::default()
        },
    )
}

/// Commits the next block holding `(tx id, signed at)` pairs, all indexed.
fn commit_txs(store: &BlockStore, txs: &[(&str, u64)], floor_ms: u64) {
    let n = store.height();
    let b = block::build(
        n,
        store.last_hash().expect("tip"),
        txs.iter().map(|(id, at)| env(id, *at)).collect(),
    );
    let ids: Vec<Option<&str>> = txs.iter().map(|(id, _)| Some(*id)).collect();
    commit(store, &b, &ids, floor_ms).expect("commit");
}

fn held(store: &BlockStore, tx_id: &str) -> bool {
    let cf = store.cf(CF_TXIDS).expect("cf");
    store
        .inner
        .db
        .get_cf(cf, tx_id.as_bytes())
        .expect("read")
        .is_some()
}

#[test]
fn entries_carry_their_signed_time_and_the_floor_is_durable_and_never_lowered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ledger(dir.path());
    commit_txs(&store, &[("a", 1_000), ("b", 2_000)], 500);
    let a = store.tx_location("a").expect("read").expect("indexed");
    assert_eq!(
        (a.block, a.index, a.code, a.timestamp_ms),
        (1, 0, Some(0), Some(1_000))
    );
    assert_eq!(store.expiry_floor_ms(), 500);

    // A lower floor is refused and nothing of the block is written.
    let b2 = block::build(2, store.last_hash().expect("tip"), vec![env("c", 3_000)]);
    let err = commit(&store, &b2, &[Some("c")], 499).expect_err("lowered");
    assert!(err.to_string().contains("never goes down"), "{err}");
    assert_eq!(store.height(), 2);
    assert_eq!(store.tx_location("c").expect("read"), None);

    drop(store);
    let store = BlockStore::open(dir.path()).expect("reopen");
    assert_eq!(store.expiry_floor_ms(), 500, "the floor survives a restart");
    // An equal floor is fine (a block with no VALID transaction keeps it).
    commit(&store, &b2, &[Some("c")], 500).expect("same floor");
}

#[test]
fn compaction_forgets_the_ids_below_the_floor_and_only_those() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ledger(dir.path());
    commit_txs(
        &store,
        &[("old-1", 1_000), ("old-2", 2_000), ("edge", 5_000)],
        0,
    );
    // An entry of an earlier build carries no time: it must never expire.
    let cf = store.cf(CF_TXIDS).expect("cf");
    let legacy = TxLocation {
        block: 1,
        index: 0,
        code: Some(0),
        timestamp_ms: None,
    };
    store
        .inner
        .db
        .put_cf(cf, b"legacy", legacy.encode())
        .expect("legacy entry");
    assert_eq!(
        store.compact_expired().expect("compact"),
        ExpiryCompaction::default(),
        "nothing is due while the floor is 0"
    );

    commit_txs(&store, &[("new", 5_000 + EXPIRY_COMPACTION_STEP_MS)], 5_000);
    let done = store.compact_expired().expect("compact");
    assert!(done.txids, "the first compaction after a start is due");
    assert!(
        !held(&store, "old-1") && !held(&store, "old-2"),
        "below the floor: gone"
    );
    assert!(!held(&store, "genesis"), "signed at 0, below the floor");
    for kept in ["edge", "new", "legacy"] {
        assert!(
            held(&store, kept),
            "{kept} is at or above the floor, or has no time"
        );
    }
    assert!(
        !store.compact_expired().expect("again").txids,
        "not due again until the floor moves a step"
    );
    commit_txs(
        &store,
        &[("later", 9_000_000)],
        5_000 + EXPIRY_COMPACTION_STEP_MS,
    );
    assert!(store.compact_expired().expect("a step later").txids);
    assert!(!held(&store, "edge"));
    assert!(held(&store, "later") && held(&store, "legacy"));
}

#[test]
fn ids_carry_a_time_only_when_the_commit_says_expiry_is_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    let genesis = block::build(0, block::GENESIS_PREVIOUS_HASH, vec![env("before", 7)]);
    store
        .commit(
            &genesis,
            &StateCommit {
                codes: vec![0],
                tx_ids: vec![Some("before".into())],
                ..Default::default()
            },
        )
        .expect("commit");
    let before = store.tx_location("before").expect("read").expect("indexed");
    assert_eq!(
        before.timestamp_ms, None,
        "a channel without expiry keeps no times"
    );
    commit_txs(&store, &[("after", 9)], 0);
    let after = store.tx_location("after").expect("read").expect("indexed");
    assert_eq!(after.timestamp_ms, Some(9));
}
