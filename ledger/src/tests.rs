//! Unit tests of the block store: exact outputs for appends, reads, rejections, recovery,
//! the tx index, the height watch and destruction.

use std::future::Future;

use super::*;
use crate::tests_support::{flip_in_blob_files, ledger_in_blob_files};
use ordo_proto::pb::common::{Envelope, Header, HeaderType, Payload};

fn envelope(tx_id: &str) -> Bytes {
    let payload = Payload {
        header: Some(Header {
            channel_id: "ch".into(),
            r#type: HeaderType::Message as i32,
            tx_id: tx_id.into(),
            ..Default::default()
        }),
        data: Bytes::from(format!("data of {tx_id}")),
    };
    Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    }
    .encode_to_vec()
    .into()
}

fn block(number: u64, prev: Hash, tx_ids: &[&str]) -> Block {
    chain::build(number, prev, tx_ids.iter().map(|id| envelope(id)).collect())
}

/// Appends the next block holding `tx_ids` and returns it.
fn append_next(store: &BlockStore, tx_ids: &[&str]) -> Block {
    let b = block(
        store.height(),
        store.last_hash().unwrap_or(GENESIS_PREVIOUS_HASH),
        tx_ids,
    );
    store.append(&b).expect("append the next block");
    b
}

fn loc(block: u64, index: u32) -> Option<TxLocation> {
    Some(TxLocation {
        block,
        index,
        code: None,
        timestamp_ms: None,
    })
}

#[test]
fn store_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<BlockStore>();
}

#[test]
fn empty_store_has_no_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    assert_eq!(store.height(), 0);
    assert_eq!(store.last_hash(), None);
    assert!(store.block(0).expect("read").is_none());
    assert!(store.block_bytes(0).expect("read").is_none());
    assert!(store.tx_location("a").expect("read").is_none());
    assert_eq!(store.blocks(0, 10).count(), 0);
    assert_eq!(*store.subscribe().borrow(), 0);
}

#[test]
fn append_then_read_by_number_tx_id_and_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    let b0 = append_next(&store, &["a"]);
    let b1 = append_next(&store, &["b", "c"]);
    let b2 = append_next(&store, &[]);
    let b3 = append_next(&store, &["d"]);

    assert_eq!(store.height(), 4);
    assert_eq!(store.last_hash(), Some(chain::hash(&b3)));
    for (n, b) in [&b0, &b1, &b2, &b3].into_iter().enumerate() {
        let n = n as u64;
        assert_eq!(store.block(n).expect("read").as_ref(), Some(b));
        assert_eq!(
            store.block_bytes(n).expect("read").as_deref(),
            Some(b.encode_to_vec().as_slice())
        );
    }
    assert!(store.block(4).expect("read").is_none());
    assert!(store.block_bytes(u64::MAX).expect("read").is_none());

    assert_eq!(store.tx_location("a").expect("read"), loc(0, 0));
    assert_eq!(store.tx_location("b").expect("read"), loc(1, 0));
    assert_eq!(store.tx_location("c").expect("read"), loc(1, 1));
    assert_eq!(store.tx_location("d").expect("read"), loc(3, 0));
    assert_eq!(store.tx_location("e").expect("read"), None);
    assert_eq!(store.block_by_tx_id("c").expect("read"), Some(b1.clone()));
    assert_eq!(store.block_by_tx_id("e").expect("read"), None);

    let range = |from, to| -> Vec<Block> {
        store
            .blocks(from, to)
            .collect::<Result<_, _>>()
            .expect("range")
    };
    assert_eq!(
        range(0, 4),
        vec![b0.clone(), b1.clone(), b2.clone(), b3.clone()]
    );
    assert_eq!(range(1, 3), vec![b1.clone(), b2.clone()]);
    assert_eq!(range(2, 100), vec![b2, b3.clone()], "clipped at the height");
    assert_eq!(range(3, u64::MAX), vec![b3]);
    assert!(range(4, 10).is_empty());
    assert!(range(2, 2).is_empty());
    assert!(range(3, 1).is_empty());
}

#[test]
fn entries_without_a_tx_id_are_stored_but_not_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    let data = vec![
        Bytes::from_static(b"\xff\xff not an envelope"),
        envelope(""),
        Envelope {
            payload: Bytes::from_static(b"\xff\xff"),
            signature: Bytes::new(),
        }
        .encode_to_vec()
        .into(),
        envelope("x"),
    ];
    let b = chain::build(0, GENESIS_PREVIOUS_HASH, data);
    store.append(&b).expect("append");
    assert_eq!(store.block(0).expect("read"), Some(b));
    assert_eq!(store.tx_location("x").expect("read"), loc(0, 3));
    assert_eq!(store.tx_location("").expect("read"), None);
}

#[test]
fn duplicate_tx_ids_keep_the_first_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    let b0 = append_next(&store, &["a", "b", "a"]);
    append_next(&store, &["c", "b", "a", "c"]);
    assert_eq!(store.tx_location("a").expect("read"), loc(0, 0));
    assert_eq!(store.tx_location("b").expect("read"), loc(0, 1));
    assert_eq!(store.tx_location("c").expect("read"), loc(1, 0));
    assert_eq!(store.block_by_tx_id("b").expect("read"), Some(b0));
    drop(store);
    let store = BlockStore::open(dir.path()).expect("reopen");
    assert_eq!(store.tx_location("a").expect("read"), loc(0, 0));
    assert_eq!(store.tx_location("c").expect("read"), loc(1, 0));
}

/// Checks that the store still holds exactly `chain` and indexes none of `absent`.
fn assert_holds(store: &BlockStore, chain: &[Block], absent: &[&str]) {
    assert_eq!(store.height(), chain.len() as u64);
    assert_eq!(store.last_hash(), chain.last().map(chain::hash));
    let stored: Vec<Block> = store
        .blocks(0, u64::MAX)
        .collect::<Result<_, _>>()
        .expect("range");
    assert_eq!(stored, chain);
    for id in absent {
        assert_eq!(store.tx_location(id).expect("read"), None, "{id} indexed");
    }
}

#[test]
fn rejected_blocks_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");

    // Genesis that does not link to the genesis previous hash.
    let err = store
        .append(&block(0, [1; 32], &["r0"]))
        .expect_err("bad genesis link");
    assert!(
        matches!(err, LedgerError::BrokenChain { number: 0 }),
        "{err}"
    );
    let err = store
        .append(&block(1, GENESIS_PREVIOUS_HASH, &["r1"]))
        .expect_err("skips 0");
    assert!(
        matches!(
            err,
            LedgerError::WrongNumber {
                expected: 0,
                got: 1
            }
        ),
        "{err}"
    );
    assert_holds(&store, &[], &["r0", "r1"]);

    let chain = vec![append_next(&store, &["a"]), append_next(&store, &["b"])];
    let h1 = chain::hash(&chain[1]);

    let err = store.append(&block(3, h1, &["r2"])).expect_err("gap");
    assert!(
        matches!(
            err,
            LedgerError::WrongNumber {
                expected: 2,
                got: 3
            }
        ),
        "{err}"
    );
    let err = store
        .append(&block(1, chain::hash(&chain[0]), &["r3"]))
        .expect_err("replay");
    assert!(
        matches!(
            err,
            LedgerError::WrongNumber {
                expected: 2,
                got: 1
            }
        ),
        "{err}"
    );
    let err = store
        .append(&block(2, chain::hash(&chain[0]), &["r4"]))
        .expect_err("fork");
    assert!(
        matches!(err, LedgerError::BrokenChain { number: 2 }),
        "{err}"
    );

    let mut tampered = block(2, h1, &["r5", "r6"]);
    if let Some(d) = tampered.data.as_mut() {
        d.data[1] = envelope("r7");
    }
    let err = store.append(&tampered).expect_err("data hash mismatch");
    assert!(matches!(err, LedgerError::InvalidBlock(_)), "{err}");

    let mut headless = block(2, h1, &["r8"]);
    headless.header = None;
    let err = store.append(&headless).expect_err("no header");
    assert!(matches!(err, LedgerError::InvalidBlock(_)), "{err}");

    let mut no_data = block(2, h1, &[]);
    no_data.data = None;
    let err = store.append(&no_data).expect_err("no data");
    assert!(matches!(err, LedgerError::InvalidBlock(_)), "{err}");

    let mut short_hash = block(2, h1, &["r9"]);
    if let Some(h) = short_hash.header.as_mut() {
        h.data_hash = Bytes::from_static(b"short");
    }
    let err = store.append(&short_hash).expect_err("short data hash");
    assert!(matches!(err, LedgerError::InvalidBlock(_)), "{err}");

    let absent = ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9"];
    assert_holds(&store, &chain, &absent);
    assert_eq!(*store.subscribe().borrow(), 2);
    drop(store);
    let store = BlockStore::open(dir.path()).expect("reopen");
    assert_holds(&store, &chain, &absent);

    // The store still accepts the right block after all those rejections.
    append_next(&store, &["c"]);
    assert_eq!(store.height(), 3);
}

#[test]
fn reopen_recovers_height_last_hash_and_identical_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    let mut bytes = Vec::new();
    for i in 0..10 {
        let ids: Vec<String> = (0..i).map(|j| format!("tx-{i}-{j}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        append_next(&store, &ids);
        bytes.push(store.block_bytes(i).expect("read").expect("present"));
    }
    let last_hash = store.last_hash();
    drop(store);

    let store = BlockStore::open(dir.path()).expect("reopen");
    assert_eq!(store.height(), 10);
    assert_eq!(store.last_hash(), last_hash);
    assert_eq!(*store.subscribe().borrow(), 10);
    for (n, b) in bytes.iter().enumerate() {
        assert_eq!(store.block_bytes(n as u64).expect("read").as_ref(), Some(b));
    }
    assert_eq!(store.tx_location("tx-9-8").expect("read"), loc(9, 8));
    append_next(&store, &["after-reopen"]);
    assert_eq!(store.height(), 11);
}

#[test]
fn a_second_open_of_the_same_directory_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = BlockStore::open(dir.path()).expect("open");
    let err = BlockStore::open(dir.path()).expect_err("locked");
    assert!(matches!(err, LedgerError::Storage(_)), "{err}");
}

/// Opens the raw database to damage it the way a bug or a bad disk could.
fn tamper(dir: &Path, f: impl FnOnce(&Db)) {
    let db = Db::open_cf_descriptors(&db_options(), dir, cf_descriptors()).expect("raw open");
    f(&db);
}

fn two_block_ledger() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    append_next(&store, &["a"]);
    append_next(&store, &["b"]);
    dir
}

fn assert_corrupt_on_open(dir: &Path, what: &str) {
    match BlockStore::open(dir) {
        Err(LedgerError::Corrupt(_)) => {}
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    }
}

#[test]
fn open_refuses_meta_that_disagrees_with_the_blocks() {
    let dir = two_block_ledger();
    tamper(dir.path(), |db| {
        let meta = cf(db, CF_META).expect("cf");
        db.put_cf(meta, META_HEIGHT, 3u64.to_be_bytes())
            .expect("put");
    });
    assert_corrupt_on_open(dir.path(), "height beyond the last block");

    let dir = two_block_ledger();
    tamper(dir.path(), |db| {
        let meta = cf(db, CF_META).expect("cf");
        db.put_cf(meta, META_HEIGHT, 1u64.to_be_bytes())
            .expect("put");
    });
    assert_corrupt_on_open(dir.path(), "a block beyond the height");

    let dir = two_block_ledger();
    tamper(dir.path(), |db| {
        let meta = cf(db, CF_META).expect("cf");
        db.put_cf(meta, META_LAST_HASH, [9u8; 32]).expect("put");
    });
    assert_corrupt_on_open(dir.path(), "wrong last hash");

    let dir = two_block_ledger();
    tamper(dir.path(), |db| {
        let meta = cf(db, CF_META).expect("cf");
        db.put_cf(meta, META_HEIGHT, [0u8; 3]).expect("put");
    });
    assert_corrupt_on_open(dir.path(), "short height");

    let dir = two_block_ledger();
    tamper(dir.path(), |db| {
        let blocks = cf(db, CF_BLOCKS).expect("cf");
        db.put_cf(blocks, 1u64.to_be_bytes(), b"\xff\xff\xff")
            .expect("put");
    });
    assert_corrupt_on_open(dir.path(), "undecodable last block");

    let dir = two_block_ledger();
    tamper(dir.path(), |db| {
        let meta = cf(db, CF_META).expect("cf");
        db.delete_cf(meta, META_HEIGHT).expect("delete");
        db.delete_cf(meta, META_LAST_HASH).expect("delete");
    });
    assert_corrupt_on_open(dir.path(), "blocks but no meta");
}

#[test]
fn reads_report_corrupt_blocks_and_index_entries() {
    let dir = two_block_ledger();
    tamper(dir.path(), |db| {
        let blocks = cf(db, CF_BLOCKS).expect("cf");
        db.put_cf(blocks, 0u64.to_be_bytes(), b"\xff\xff\xff")
            .expect("put");
        let txids = cf(db, CF_TXIDS).expect("cf");
        db.put_cf(txids, b"short", [0u8; 5]).expect("put");
    });
    let store = BlockStore::open(dir.path()).expect("open: the tip is intact");
    assert!(matches!(store.block(0), Err(LedgerError::Corrupt(_))));
    assert!(matches!(
        store.block_by_tx_id("a"),
        Err(LedgerError::Corrupt(_))
    ));
    assert!(matches!(
        store.tx_location("short"),
        Err(LedgerError::Corrupt(_))
    ));
    let range: Vec<_> = store.blocks(0, 2).collect();
    assert_eq!(range.len(), 1, "the iterator ends after the first error");
    assert!(matches!(range[0], Err(LedgerError::Corrupt(_))));
    assert!(store.block(1).expect("block 1 is fine").is_some());
}

#[test]
fn concurrent_appends_of_the_same_block_serialize() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    let b0 = block(0, GENESIS_PREVIOUS_HASH, &["a"]);
    let results: Vec<Result<(), LedgerError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| store.append(&b0))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(
                r,
                Err(LedgerError::WrongNumber {
                    expected: 1,
                    got: 0
                })
            ),
            "{r:?}"
        );
    }
    assert_eq!(store.height(), 1);
}

#[tokio::test]
async fn wait_for_height_wakes_when_another_task_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    store.wait_for_height(0).await;

    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store.wait_for_height(3).await;
            store.height()
        })
    };
    let mut rx = store.subscribe();
    let appender = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            for _ in 0..3 {
                append_next(&store, &[]);
            }
        })
    };
    // The watch sees the heights in order (possibly skipping some) up to 3.
    rx.wait_for(|h| *h >= 3).await.expect("sender alive");
    assert!(waiter.await.expect("waiter") >= 3);
    appender.await.expect("appender");

    // A waiter for a height not reached yet stays pending until that append.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_height(4).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    append_next(&store, &[]);
    waiter.await.expect("waiter");
}

#[tokio::test]
async fn a_cancelled_wait_does_not_disturb_later_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    {
        let wait = store.wait_for_height(1);
        tokio::pin!(wait);
        assert!(poll_once(wait.as_mut()).await.is_pending());
    }
    append_next(&store, &[]);
    store.wait_for_height(1).await;
}

/// Polls a future exactly once.
async fn poll_once<F: Future + Unpin>(mut f: F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut f).poll(cx))).await
}

#[test]
fn destroy_removes_the_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ch1");
    let store = BlockStore::open(&path).expect("open");
    append_next(&store, &["a"]);
    let err = BlockStore::destroy(&path).expect_err("refused while open");
    assert!(matches!(err, LedgerError::Storage(_)), "{err}");
    drop(store);

    BlockStore::destroy(&path).expect("destroy");
    assert!(!path.exists(), "directory left behind");
    BlockStore::destroy(&path).expect("destroying a missing ledger is fine");

    let store = BlockStore::open(&path).expect("reopen");
    assert_eq!(store.height(), 0);
    assert_eq!(store.tx_location("a").expect("read"), None);
}

#[test]
fn append_built_checks_the_links_but_trusts_the_data_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    let b0 = block(0, GENESIS_PREVIOUS_HASH, &["g"]);
    store.append_built(&b0).expect("genesis");
    let h0 = chain::hash(&b0);
    assert!(matches!(
        store.append_built(&block(5, h0, &["x"])),
        Err(LedgerError::WrongNumber {
            expected: 1,
            got: 5
        })
    ));
    assert!(matches!(
        store.append_built(&block(1, [3; 32], &["x"])),
        Err(LedgerError::BrokenChain { number: 1 })
    ));
    store
        .append_built(&block(1, h0, &["a", "b"]))
        .expect("built block");
    assert_eq!(store.height(), 2);
}

#[test]
fn a_ledger_created_without_tx_index_stores_blocks_and_refuses_lookups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open_with(dir.path(), TxIndex::Off).expect("open");
    let b0 = append_next(&store, &["a", "b"]);
    let b1 = append_next(&store, &["c"]);
    assert_eq!(store.block(0).expect("read"), Some(b0.clone()));
    assert!(matches!(
        store.tx_location("a"),
        Err(LedgerError::NotIndexed)
    ));
    assert!(matches!(
        store.block_by_tx_id("c"),
        Err(LedgerError::NotIndexed)
    ));
    assert_eq!(
        store
            .inner
            .db
            .iterator_cf(store.cf(CF_TXIDS).expect("cf"), IteratorMode::Start)
            .count(),
        0,
        "nothing was written to the tx index"
    );
    drop(store);

    // The choice is the ledger's: asking for an index on reopen does not start a partial one.
    let store = BlockStore::open(dir.path()).expect("reopen");
    assert_eq!(store.height(), 2);
    assert_eq!(store.block(1).expect("read"), Some(b1));
    append_next(&store, &["d"]);
    assert!(matches!(
        store.tx_location("d"),
        Err(LedgerError::NotIndexed)
    ));
}

#[test]
fn an_indexed_ledger_stays_indexed_when_reopened_without_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    append_next(&store, &["a"]);
    drop(store);
    let store = BlockStore::open_with(dir.path(), TxIndex::Off).expect("reopen");
    append_next(&store, &["b"]);
    assert_eq!(store.tx_location("a").expect("lookup"), loc(0, 0));
    assert_eq!(store.tx_location("b").expect("lookup"), loc(1, 0));
}

#[test]
fn an_unknown_tx_index_marker_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(BlockStore::open(dir.path()).expect("create"));
    tamper(dir.path(), |db| {
        db.put_cf(cf(db, CF_META).expect("cf"), META_TX_INDEX, b"maybe")
            .expect("put");
    });
    assert_corrupt_on_open(dir.path(), "tx_index");
}

/// Writes block `b` without metadata into consensus log entry `index`, after `frame`
/// bytes of framing, and returns where it is (as a replicated backend would).
pub(crate) fn log_block(store: &BlockStore, index: u64, frame: &[u8], b: &Block) -> LogPosition {
    let unsigned = Block {
        metadata: None,
        ..b.clone()
    };
    let mut entry = frame.to_vec();
    entry.extend_from_slice(&unsigned.encode_to_vec());
    store
        .consensus_log()
        .write(&LogUpdate {
            entries: vec![(index, entry.as_slice())],
            sync: true,
            ..LogUpdate::default()
        })
        .expect("log write");
    LogPosition {
        index,
        offset: frame.len() as u32,
    }
}

fn signed(mut b: Block, marker: &'static [u8]) -> Block {
    b.metadata = Some(ordo_proto::pb::common::BlockMetadata {
        consenter_metadata: Bytes::from_static(marker),
        ..Default::default()
    });
    b
}

#[test]
fn a_logged_block_reads_back_byte_identical_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut written = Vec::new();
    {
        let store = BlockStore::open(dir.path()).expect("open");
        written.push(append_next(&store, &["g"]));
        for (i, ids) in [["a", "b"], ["c", "d"]].iter().enumerate() {
            let b = signed(
                block(store.height(), store.last_hash().expect("tip"), ids),
                b"entry",
            );
            let at = log_block(&store, 10 + i as u64, b"kind", &b);
            store
                .append_logged(&b, at, DataCheck::Verify)
                .expect("append by reference");
            written.push(b);
        }
        for (n, b) in written.iter().enumerate() {
            let bytes = store.block_bytes(n as u64).expect("read").expect("stored");
            assert_eq!(bytes.as_ref(), b.encode_to_vec().as_slice(), "block {n}");
        }
        assert_eq!(
            store.tx_location("c").expect("index"),
            loc(2, 0),
            "logged blocks are indexed like inline ones"
        );
    }
    // Reopening recovers the tip through the reference (the last block is logged).
    let store = BlockStore::open(dir.path()).expect("reopen");
    assert_eq!(store.height(), 3);
    assert_eq!(store.last_hash(), Some(chain::hash(&written[2])));
    let range: Vec<Block> = store.blocks(0, 3).collect::<Result<_, _>>().expect("range");
    assert_eq!(range, written);
    // The stored value is the small reference, not a second copy of the block.
    let value = store
        .inner
        .db
        .get_cf(store.cf(CF_BLOCKS).expect("cf"), 2u64.to_be_bytes())
        .expect("get")
        .expect("stored");
    assert!(
        value.len() < 64,
        "{} bytes stored for a logged block",
        value.len()
    );
    assert_eq!(store.logged_position(0).expect("read"), None, "inline");
    assert_eq!(
        store.logged_position(2).expect("read"),
        Some(LogPosition {
            index: 11,
            offset: 4
        })
    );
    assert_eq!(
        store.logged_position(3).expect("read"),
        None,
        "beyond the height"
    );
}

#[test]
fn a_logged_append_that_does_not_match_its_entry_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    append_next(&store, &["g"]);
    let b = signed(block(1, store.last_hash().expect("tip"), &["a"]), b"entry");
    let at = log_block(&store, 5, b"kind", &b);
    let other = signed(block(1, store.last_hash().expect("tip"), &["z"]), b"x");
    let cases = [
        (other.clone(), at, "another block"),
        (
            b.clone(),
            LogPosition {
                index: 5,
                offset: 3,
            },
            "a wrong offset",
        ),
        (
            b.clone(),
            LogPosition {
                index: 6,
                offset: 4,
            },
            "a missing entry",
        ),
    ];
    for (blk, pos, what) in cases {
        assert!(
            matches!(
                store.append_logged(&blk, pos, DataCheck::Verify),
                Err(LedgerError::InvalidBlock(_))
            ),
            "{what} is refused"
        );
        assert_eq!(store.height(), 1, "{what} wrote nothing");
    }
    store
        .append_logged(&b, at, DataCheck::Verify)
        .expect("the matching entry is taken");
}

#[test]
fn a_logged_block_whose_entry_is_gone_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = BlockStore::open(dir.path()).expect("open");
        append_next(&store, &["g"]);
        let b = signed(block(1, store.last_hash().expect("tip"), &["a"]), b"m");
        let at = log_block(&store, 7, b"", &b);
        store
            .append_logged(&b, at, DataCheck::Verify)
            .expect("append");
        store.consensus_log().discard([7]).expect("discard");
        assert!(matches!(store.block(1), Err(LedgerError::Corrupt(_))));
    }
    assert_corrupt_on_open(dir.path(), "a last block whose log entry is gone");
}

/// A flipped byte on disk in block 1's blob: reading block 1 is `Corrupt` naming the
/// channel, the block and the blob file (which RocksDB's own message does not name); the
/// store remembers the fault; the other blocks are still served.
#[test]
fn a_flipped_byte_in_a_blob_file_names_the_channel_block_and_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("payments");
    let marker = |n: u64| format!("MARKER-OF-BLOCK-{n}-");
    ledger_in_blob_files(&dir, marker);
    let file = flip_in_blob_files(&dir, marker(1).as_bytes());

    let store = BlockStore::open(&dir).expect("the tip is intact: opens");
    assert_eq!(store.fault(), None, "nothing read yet");
    for n in [0, 2, 3] {
        assert!(store.block(n).expect("intact").is_some(), "block {n}");
    }
    let why = match store.block(1) {
        Err(LedgerError::Corrupt(why)) => why,
        other => panic!("expected Corrupt, got {other:?}"),
    };
    assert!(why.contains("channel \"payments\""), "{why}");
    assert!(why.contains("block 1"), "{why}");
    assert!(why.contains(&file.display().to_string()), "{why}");
    let fault = store.fault().expect("remembered");
    assert_eq!(
        (fault.channel(), fault.block, fault.file.as_deref()),
        ("payments".to_string(), Some(1), Some(file.as_path()))
    );
    assert!(matches!(store.block_bytes(1), Err(LedgerError::Corrupt(_))));
    let range: Vec<_> = store.blocks(0, 4).collect();
    assert_eq!(range.len(), 2, "the range ends at the damaged block");
    assert!(range[0].is_ok());
    assert!(matches!(&range[1], Err(LedgerError::Corrupt(w)) if w.contains("block 1")));
}

/// The same damage in the last block stops the open, naming the channel and the file.
#[test]
fn a_flipped_byte_in_the_last_block_stops_the_open_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("payments");
    let marker = |n: u64| format!("MARKER-OF-BLOCK-{n}-");
    ledger_in_blob_files(&dir, marker);
    let file = flip_in_blob_files(&dir, marker(3).as_bytes());
    match BlockStore::open(&dir) {
        Err(LedgerError::Corrupt(why)) => {
            assert!(why.contains("channel \"payments\""), "{why}");
            assert!(why.contains("last block 3"), "{why}");
            assert!(why.contains(&file.display().to_string()), "{why}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
