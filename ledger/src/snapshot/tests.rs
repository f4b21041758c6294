use std::path::{Path, PathBuf};

use bytes::Bytes;
use ordo_proto::block;
use ordo_proto::pb::common::{Block, BlockMetadata};
use ordo_testkit::{ChannelBuilder, TestOrg};

use super::records::{Kind, RecordReader, RecordWriter, MAGIC};
use super::*;
use crate::{BlockStore, StateCommit, StateWrite, Version, CF_STATE, CF_TXIDS};

const CHANNEL: &str = "bank";

fn env(tx_id: &str) -> Bytes {
    env_at(tx_id, 0)
}

/// An envelope with `tx_id`, signed (by its header) at `at_ms`.
fn env_at(tx_id: &str, at_ms: u64) -> Bytes {
    crate::tests_support::tx_envelope(CHANNEL, tx_id, at_ms)
}

/// A peer's ledger: the genesis config block committed VALID, then `blocks` blocks of
/// two transactions each writing account keys.
fn peer_ledger(dir: &Path, blocks: u64) -> (BlockStore, Block) {
    let store = BlockStore::open(dir).expect("open");
    let genesis = ChannelBuilder::new(CHANNEL)
        .org(&TestOrg::new("A"))
        .genesis(1);
    let mut g = genesis.clone();
    // The committer stores each block with its validation codes; the genesis is VALID.
    g.metadata = Some(BlockMetadata {
        transaction_validation_codes: vec![0].into(),
        ..Default::default()
    });
    store
        .commit(
            &g,
            &StateCommit {
                codes: vec![0],
                commit_hash: [9; 32],
                tx_ids: vec![None],
                ..Default::default()
            },
        )
        .expect("genesis");
    for n in 1..=blocks {
        commit_next(&store, n);
    }
    (store, genesis)
}

fn commit_next(store: &BlockStore, n: u64) {
    let ids = [format!("tx-{n}-a"), format!("tx-{n}-b")];
    let b = block::build(
        n,
        store.last_hash().expect("tip"),
        ids.iter().map(|i| env(i)).collect(),
    );
    let commit = StateCommit {
        codes: vec![0, 11],
        writes: vec![StateWrite {
            namespace: "bank".into(),
            key: format!("acct-{}", n % 7),
            value: Some(Bytes::from(format!("balance {n}"))),
            version: Version { block: n, tx: 0 },
        }],
        commit_hash: [n as u8; 32],
        tx_ids: ids.iter().map(|i| Some(i.clone())).collect(),
        expiry_floor_ms: 0,
        record_tx_times: false,
    };
    store.commit(&b, &commit).expect("commit");
}

fn take(store: &BlockStore, parent: &Path) -> (SnapshotManifest, PathBuf) {
    let mut w = SnapshotWriter::begin(parent, CHANNEL).expect("begin");
    let mut m = w.write(store, 42, b"cert").expect("write");
    m.signature = "00".into();
    let dir = w.finish(&m).expect("finish");
    (m, dir)
}

#[test]
fn an_imported_snapshot_continues_like_the_ledger_it_was_taken_from() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, genesis) = peer_ledger(&tmp.path().join("source"), 20);
    let (manifest, dir) = take(&source, &tmp.path().join("snapshots"));
    assert_eq!(
        dir,
        tmp.path().join("snapshots").join(format!("{CHANNEL}-21"))
    );
    assert_eq!(manifest.height, 21);
    assert_eq!(manifest.config_block_number, 0);
    assert_eq!(manifest.file(STATE_FILE).expect("state").records, 7);
    assert_eq!(manifest.file(TXIDS_FILE).expect("txids").records, 40);
    assert_eq!(read_manifest(&dir).expect("read back"), manifest);

    let joined = BlockStore::open(&tmp.path().join("joined")).expect("open");
    import(&joined, &dir, &manifest).expect("import");
    assert_eq!(
        (joined.first_block(), joined.height(), joined.last_hash()),
        (21, 21, source.last_hash())
    );
    assert_eq!(
        joined.commit_hash().expect("read"),
        source.commit_hash().expect("read")
    );
    for cf in [CF_STATE, CF_TXIDS] {
        assert_eq!(
            joined.first_difference(&source, cf).expect("compare"),
            None,
            "{cf}"
        );
    }
    let (config, number) = joined.config_in_force().expect("config");
    assert_eq!((block::hash(&config), number), (block::hash(&genesis), 0));
    assert!(matches!(
        joined.block(5),
        Err(LedgerError::Pruned {
            number: 5,
            first: 21
        })
    ));
    assert!(matches!(
        joined.blocks(0, 21).next(),
        Some(Err(LedgerError::Pruned {
            number: 0,
            first: 21
        }))
    ));

    // Both accept the same next blocks and end where the other does.
    for n in 21..=23 {
        commit_next(&source, n);
        commit_next(&joined, n);
    }
    assert_eq!(joined.last_hash(), source.last_hash());
    assert_eq!(joined.blocks(21, 24).count(), 3);
    let tx = joined
        .tx_location("tx-3-b")
        .expect("read")
        .expect("indexed");
    assert_eq!((tx.block, tx.index, tx.code), (3, 1, Some(11)));

    // A restart recovers the based ledger.
    drop(joined);
    let reopened = BlockStore::open(&tmp.path().join("joined")).expect("reopen");
    assert_eq!((reopened.first_block(), reopened.height()), (21, 24));
    assert_eq!(reopened.chain_start().expect("start").0, 21);
}

#[test]
fn a_based_ledger_reopens_before_its_first_block_is_committed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, _) = peer_ledger(&tmp.path().join("source"), 3);
    let (manifest, dir) = take(&source, &tmp.path().join("snapshots"));
    let path = tmp.path().join("joined");
    import(&BlockStore::open(&path).expect("open"), &dir, &manifest).expect("import");
    let reopened = BlockStore::open(&path).expect("reopen");
    assert_eq!((reopened.first_block(), reopened.height()), (4, 4));
    assert_eq!(reopened.config_in_force().expect("config").1, 0);
    // The snapshot of a joined peer is a snapshot too.
    commit_next(&reopened, 4);
    let (again, _) = take(&reopened, &tmp.path().join("snapshots2"));
    assert_eq!((again.height, again.config_block_number), (5, 0));
}

/// Imports into a fresh ledger and returns the error; the ledger must stay empty.
fn refused(tmp: &Path, dir: &Path, manifest: &SnapshotManifest) -> SnapshotError {
    let path = tmp.join(format!("target-{}", rand_suffix()));
    let store = BlockStore::open(&path).expect("open");
    let e = import(&store, dir, manifest).expect_err("refused");
    assert_eq!(store.height(), 0, "nothing imported: {e}");
    drop(store);
    assert_eq!(BlockStore::open(&path).expect("reopen").height(), 0);
    e
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn changed_truncated_or_misdescribed_files_are_refused_and_nothing_is_imported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, _) = peer_ledger(&tmp.path().join("source"), 10);
    let (manifest, dir) = take(&source, &tmp.path().join("snapshots"));

    // A changed byte in a value: same size, other hash.
    let state = dir.join(STATE_FILE);
    let original = std::fs::read(&state).expect("read");
    let mut changed = original.clone();
    let at = changed.len() - 1;
    changed[at] ^= 1;
    std::fs::write(&state, &changed).expect("write");
    let e = refused(tmp.path(), &dir, &manifest);
    assert!(
        e.to_string().contains("state.records") && e.to_string().contains("SHA-256"),
        "{e}"
    );
    std::fs::write(&state, &original).expect("restore");

    // A truncated tx index.
    let txids = dir.join(TXIDS_FILE);
    let original = std::fs::read(&txids).expect("read");
    std::fs::write(&txids, &original[..original.len() - 5]).expect("truncate");
    let e = refused(tmp.path(), &dir, &manifest);
    assert!(e.to_string().contains("txids.records"), "{e}");
    std::fs::write(&txids, &original).expect("restore");

    // A manifest that lies about the record count.
    let mut lying = manifest.clone();
    lying.files[1].records -= 1;
    let e = refused(tmp.path(), &dir, &lying);
    assert!(e.to_string().contains("more records"), "{e}");

    // A changed config block.
    let mut other = manifest.clone();
    other.files[2].sha256 = hex::encode([0u8; 32]);
    let e = refused(tmp.path(), &dir, &other);
    assert!(e.to_string().contains("config_block.pb"), "{e}");

    // And the untouched snapshot still imports.
    let ok = BlockStore::open(&tmp.path().join("ok")).expect("open");
    import(&ok, &dir, &manifest).expect("import");
}

#[test]
fn a_manifest_that_contradicts_itself_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, _) = peer_ledger(&tmp.path().join("source"), 2);
    let (manifest, dir) = take(&source, &tmp.path().join("snapshots"));
    type Change = Box<dyn Fn(&mut SnapshotManifest)>;
    let cases: Vec<(&str, Change)> = vec![
        ("format", Box::new(|m| m.format = 99)),
        ("height 0", Box::new(|m| m.height = 0)),
        (
            "not below the height",
            Box::new(|m| m.config_block_number = m.height),
        ),
        (
            "last_block_hash",
            Box::new(|m| m.last_block_hash = "xyz".into()),
        ),
        ("files", Box::new(|m| m.files.reverse())),
        ("channel id", Box::new(|m| m.channel_id = "../etc".into())),
    ];
    for (want, change) in cases {
        let mut m = manifest.clone();
        change(&mut m);
        let e = refused(tmp.path(), &dir, &m);
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
}

#[test]
fn an_orderer_ledger_or_a_non_empty_target_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, _) = peer_ledger(&tmp.path().join("source"), 2);
    let (manifest, dir) = take(&source, &tmp.path().join("snapshots"));
    let e = import(&source, &dir, &manifest).expect_err("not empty");
    assert!(matches!(e, SnapshotError::NotEmpty(3)), "{e}");

    let orderer =
        BlockStore::open_with(&tmp.path().join("orderer"), crate::TxIndex::Off).expect("open");
    orderer
        .append(
            &ChannelBuilder::new(CHANNEL)
                .org(&TestOrg::new("A"))
                .genesis(1),
        )
        .expect("append");
    let mut w = SnapshotWriter::begin(&tmp.path().join("s2"), CHANNEL).expect("begin");
    let e = w.write(&orderer, 1, b"c").expect_err("orderer");
    assert!(e.to_string().contains("orderer"), "{e}");
}

#[test]
fn a_snapshot_at_an_existing_height_is_refused_and_a_dropped_one_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, _) = peer_ledger(&tmp.path().join("source"), 2);
    let parent = tmp.path().join("snapshots");
    take(&source, &parent);
    let mut w = SnapshotWriter::begin(&parent, CHANNEL).expect("begin");
    let m = w.write(&source, 1, b"c").expect("write");
    assert!(matches!(w.finish(&m), Err(SnapshotError::AlreadyExists(_))));
    let mut w = SnapshotWriter::begin(&parent, CHANNEL).expect("begin");
    w.write(&source, 1, b"c").expect("write");
    drop(w);
    let names: Vec<_> = std::fs::read_dir(&parent)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from(format!("{CHANNEL}-3"))]
    );
}

fn records_file(records: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut w = RecordWriter::new(Vec::new(), Kind::State).expect("header");
    for (k, v) in records {
        w.record(k, v).expect("record");
    }
    w.finish().expect("finish").0
}

fn read_all(bytes: &[u8], kind: Kind) -> Result<Vec<super::records::Record>, String> {
    let mut r = RecordReader::new(bytes, kind)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push(rec);
    }
    Ok(out)
}

#[test]
fn the_record_reader_refuses_what_a_writer_would_not_write() {
    let good = records_file(&[(b"a", b"1"), (b"b", b"22")]);
    assert_eq!(read_all(&good, Kind::State).expect("good").len(), 2);
    assert!(read_all(&good, Kind::TxIds)
        .expect_err("kind")
        .contains("kind"));

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(read_all(&bad_magic, Kind::State)
        .expect_err("magic")
        .contains("magic"));

    // A length far beyond the limit is refused before anything is allocated.
    let mut huge = good[..16].to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(read_all(&huge, Kind::State)
        .expect_err("huge")
        .contains("allowed"));

    // Keys out of order (or repeated) are refused.
    let mut unordered = good[..16].to_vec();
    for k in [b"b", b"a"] {
        unordered.extend_from_slice(&1u32.to_be_bytes());
        unordered.extend_from_slice(k);
        unordered.extend_from_slice(&0u32.to_be_bytes());
    }
    assert!(read_all(&unordered, Kind::State)
        .expect_err("order")
        .contains("previous key"));

    // A record cut short.
    assert!(read_all(&good[..good.len() - 1], Kind::State)
        .expect_err("cut")
        .contains("truncated"));
    assert_eq!(&good[..8], MAGIC);
}

#[test]
fn a_snapshot_leaves_out_the_ids_below_the_expiry_floor_and_carries_the_floor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, _) = peer_ledger(&tmp.path().join("source"), 0);
    for (txs, floor) in [
        (vec![("gone", 1_000), ("kept", 9_000)], 0),
        (vec![("tip", 20_000)], 5_000),
    ] {
        let n = source.height();
        let b = block::build(
            n,
            source.last_hash().expect("tip"),
            txs.iter().map(|(id, at)| env_at(id, *at)).collect(),
        );
        let commit = StateCommit {
            codes: vec![0; txs.len()],
            tx_ids: txs.iter().map(|(id, _)| Some(id.to_string())).collect(),
            commit_hash: [n as u8; 32],
            expiry_floor_ms: floor,
            record_tx_times: true,
            ..Default::default()
        };
        source.commit(&b, &commit).expect("commit");
    }
    let (manifest, dir) = take(&source, &tmp.path().join("snapshots"));
    assert_eq!(manifest.expiry_floor_ms, 5_000);
    assert_eq!(
        manifest.file(TXIDS_FILE).expect("entry").records,
        2,
        "kept and tip, not the id signed below the floor"
    );

    let joined_dir = tmp.path().join("joined");
    let joined = BlockStore::open(&joined_dir).expect("open");
    import(&joined, &dir, &manifest).expect("import");
    assert_eq!(joined.expiry_floor_ms(), 5_000);
    assert_eq!(joined.tx_location("gone").expect("read"), None);
    let kept = joined.tx_location("kept").expect("read").expect("indexed");
    assert_eq!(kept.timestamp_ms, Some(9_000));
    drop(joined);
    let joined = BlockStore::open(&joined_dir).expect("reopen");
    assert_eq!(joined.expiry_floor_ms(), 5_000, "durable");
}

#[test]
fn a_manifest_without_an_expiry_floor_reads_as_floor_zero_and_writes_none() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, _) = peer_ledger(&tmp.path().join("source"), 2);
    let (manifest, dir) = take(&source, &tmp.path().join("snapshots"));
    assert_eq!(manifest.expiry_floor_ms, 0);
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).expect("manifest");
    assert!(
        !text.contains("expiry_floor_ms"),
        "a snapshot of a channel that never expired reads the same in older builds"
    );
}
