//! Pruning steps on real RocksDB ledgers: what is removed, what the base becomes, what
//! survives a reopen, what goes with the blocks, and every refusal.

use std::path::Path;

use bytes::Bytes;
use ordo_proto::block;
use ordo_proto::pb::common::{Block, BlockMetadata, Role};
use ordo_testkit::{blocks, ChannelBuilder, TestOrg};
use prost::Message;

use super::*;
use crate::archive::{self, Archive};
use crate::{ConsensusLog, DataCheck, StateCommit, StateWrite, Version, CF_HISTORY};

/// A signed chain of `len` blocks (genesis, then one envelope each) in a new ledger.
fn orderer_ledger(dir: &Path, len: u64) -> (BlockStore, Vec<Block>) {
    let org = TestOrg::new("A");
    let orderer = org.member(Role::Orderer, "o");
    let genesis = ChannelBuilder::new("bank").org(&org).genesis(0);
    let chain = blocks::signed_chain(genesis, &orderer, len);
    let store = BlockStore::open(dir).expect("open");
    for b in &chain {
        store.append(b).expect("append");
    }
    (store, chain)
}

fn now_secs() -> u64 {
    ordo_proto::now_ms() / 1000
}

#[test]
fn a_step_removes_the_blocks_and_the_base_verifies_what_is_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, chain) = orderer_ledger(dir.path(), 30);
    let step = store.prune_below(10, None).expect("prune").expect("a step");
    assert_eq!((step.from, step.to, step.archived), (0, 10, None));
    assert!(step.bytes > 0);
    assert_eq!(store.first_block(), 10);
    assert!(matches!(
        store.block(9),
        Err(LedgerError::Pruned {
            number: 9,
            first: 10
        })
    ));
    assert!(matches!(
        store.blocks(5, 12).next(),
        Some(Err(LedgerError::Pruned {
            number: 5,
            first: 10
        }))
    ));
    assert_eq!(store.block(10).expect("read"), Some(chain[10].clone()));
    assert!(store.fault().is_none(), "a pruned block is no fault");

    // The base is block 9's hash and the genesis config (in force, and removed).
    let base = store.base().expect("base").expect("based");
    assert_eq!(base.prev_hash, block::hash(&chain[9]));
    assert_eq!(base.config_block.as_ref(), Some(&chain[0]));
    assert_eq!(store.config_in_force().expect("config").1, 0);

    // Nothing more below 10; the same answer after a reopen, and the rest verifies.
    assert!(store.prune_below(10, None).expect("again").is_none());
    drop(store);
    let store = BlockStore::open(dir.path()).expect("reopen");
    assert_eq!((store.first_block(), store.height()), (10, 30));
    let mut verifier = store.chain_verifier().expect("verifier");
    for b in store.blocks(10, 30) {
        verifier
            .check(&b.expect("block"), now_secs())
            .expect("verifies");
    }
    // And it goes on: the next block appends on top of the pruned ledger.
    let org = TestOrg::new("A");
    let next = blocks::signed_chain(chain[0].clone(), &org.member(Role::Orderer, "o"), 31);
    store.append(&next[30]).expect("append after pruning");
}

#[test]
fn a_step_never_takes_the_last_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = orderer_ledger(dir.path(), 5);
    assert!(matches!(
        store.prune_below(5, None),
        Err(PruneError::WouldRemoveLast { below: 5, last: 4 })
    ));
    assert_eq!(store.first_block(), 0, "nothing was removed");
    store.prune_below(4, None).expect("prune").expect("a step");
    assert_eq!(store.first_block(), 4);
    assert!(store.block(4).expect("read").is_some());
}

#[test]
fn archived_steps_verify_as_one_chain_that_the_ledger_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let arch = tempfile::tempdir().expect("tempdir");
    let (store, chain) = orderer_ledger(dir.path(), 30);
    let archive = Archive::open(arch.path(), "bank").expect("archive");
    for below in [7, 19] {
        let step = store
            .prune_below(below, Some(&archive))
            .expect("prune")
            .expect("a step");
        assert!(step.archived.is_some());
    }
    let summary = archive::verify(archive.dir(), now_secs(), |_| {}).expect("verifies");
    assert_eq!((summary.first, summary.last, summary.files), (0, 18, 2));
    assert_eq!(summary.envelopes, 19);
    let base = store.base().expect("base").expect("based");
    assert_eq!(
        summary.last_hash, base.prev_hash,
        "the ledger starts where it ends"
    );
    assert_eq!(summary.last_hash, block::hash(&chain[18]));
}

#[test]
fn a_step_interrupted_after_archiving_does_not_archive_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let arch = tempfile::tempdir().expect("tempdir");
    let (store, chain) = orderer_ledger(dir.path(), 20);
    let archive = Archive::open(arch.path(), "bank").expect("archive");
    // The segment of 0..10 is written, then the node dies before the delete.
    let encoded: Vec<Bytes> = chain[..10]
        .iter()
        .map(|b| b.encode_to_vec().into())
        .collect();
    store
        .archive_range(&archive, 0, 10, &encoded, block::hash(&chain[9]))
        .expect("archive");
    assert_eq!(store.first_block(), 0);
    // The next step, further, archives only what follows.
    let step = store
        .prune_below(15, Some(&archive))
        .expect("prune")
        .expect("a step");
    assert_eq!(
        step.archived.as_deref().and_then(|p| p.file_name()),
        Some(archive::segment_name(10, 14).as_ref())
    );
    let summary = archive::verify(archive.dir(), now_secs(), |_| {}).expect("verifies");
    assert_eq!((summary.first, summary.last, summary.files), (0, 14, 2));
}

#[test]
fn a_step_shorter_than_an_interrupted_one_finds_its_blocks_archived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let arch = tempfile::tempdir().expect("tempdir");
    let (store, chain) = orderer_ledger(dir.path(), 30);
    let archive = Archive::open(arch.path(), "bank").expect("archive");
    // 0..15 archived, then the node died; it comes back with a larger window.
    let encoded: Vec<Bytes> = chain[..15]
        .iter()
        .map(|b| b.encode_to_vec().into())
        .collect();
    store
        .archive_range(&archive, 0, 15, &encoded, block::hash(&chain[14]))
        .expect("archive");
    let step = store
        .prune_below(10, Some(&archive))
        .expect("prune")
        .expect("a step");
    assert_eq!((step.to, step.archived), (10, None));
    let step = store
        .prune_below(20, Some(&archive))
        .expect("prune")
        .expect("a step");
    assert_eq!(
        step.archived.as_deref().and_then(|p| p.file_name()),
        Some(archive::segment_name(15, 19).as_ref())
    );
    let summary = archive::verify(archive.dir(), now_secs(), |_| {}).expect("verifies");
    assert_eq!((summary.first, summary.last), (0, 19));
}

#[test]
fn an_archive_that_cannot_continue_the_ledger_is_refused_and_nothing_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let arch = tempfile::tempdir().expect("tempdir");
    let (store, _) = orderer_ledger(dir.path(), 30);
    let archive = Archive::open(arch.path(), "bank").expect("archive");
    store.prune_below(5, Some(&archive)).expect("prune");
    // Pruned without the archive: blocks 5..10 are in no archive now.
    store.prune_below(10, None).expect("prune");
    let refused = store.prune_below(20, Some(&archive));
    let Err(PruneError::Archive {
        from: 10,
        to: 20,
        source,
    }) = refused
    else {
        panic!("expected an archive refusal, got {refused:?}");
    };
    assert!(
        source
            .to_string()
            .contains("blocks 5..10 were pruned without archiving"),
        "{source}"
    );
    assert_eq!(store.first_block(), 10, "nothing was removed");
    assert_eq!(archive.next_block().expect("segments"), Some(5));
}

#[test]
fn an_archive_started_above_genesis_verifies_from_its_base_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let arch = tempfile::tempdir().expect("tempdir");
    let (store, _) = orderer_ledger(dir.path(), 30);
    store.prune_below(8, None).expect("prune");
    let archive = Archive::open(arch.path(), "bank").expect("archive");
    store.prune_below(20, Some(&archive)).expect("prune");
    assert!(archive.dir().join(archive::BASE_FILE).exists());
    let summary = archive::verify(archive.dir(), now_secs(), |_| {}).expect("verifies");
    assert_eq!((summary.first, summary.last), (8, 19));
}

/// Writes `b` without metadata into log entry `index` (as raft does) and appends it by
/// reference.
fn append_logged(store: &BlockStore, index: u64, b: &Block) {
    let at = crate::tests::log_block(store, index, b"", b);
    store
        .append_logged(b, at, DataCheck::Verify)
        .expect("append by reference");
}

fn log_indexes(log: &ConsensusLog, from: u64) -> Vec<u64> {
    (from..200)
        .filter(|i| log.entry(*i).expect("entry").is_some())
        .collect()
}

#[test]
fn the_log_entries_of_removed_blocks_go_with_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let org = TestOrg::new("A");
    let genesis = ChannelBuilder::new("bank").org(&org).genesis(0);
    let chain = blocks::signed_chain(genesis, &org.member(Role::Orderer, "o"), 12);
    let store = BlockStore::open(dir.path()).expect("open");
    store.append(&chain[0]).expect("genesis inline");
    for (n, b) in chain.iter().enumerate().skip(1) {
        append_logged(&store, 100 + n as u64, b);
    }
    let step = store.prune_below(6, None).expect("prune").expect("a step");
    assert_eq!(step.to, 6);
    let log = store.consensus_log();
    assert_eq!(log_indexes(&log, 0), (106..112).collect::<Vec<_>>());
    for n in 6..12 {
        assert_eq!(
            store.block(n).expect("read"),
            Some(chain[n as usize].clone())
        );
    }
}

fn commit(store: &BlockStore, b: &Block, writes: Vec<StateWrite>) {
    let mut b = b.clone();
    let codes = vec![0u8; b.data.as_ref().map_or(0, |d| d.data.len())];
    b.metadata = Some(BlockMetadata {
        transaction_validation_codes: codes.clone().into(),
        ..b.metadata.unwrap_or_default()
    });
    store
        .commit(
            &b,
            &StateCommit {
                tx_ids: vec![None; codes.len()],
                codes,
                writes,
                commit_hash: [block::number(&b) as u8; 32],
                ..Default::default()
            },
        )
        .expect("commit");
}

#[test]
fn history_below_the_first_block_is_cut_at_once_and_dropped_at_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let org = TestOrg::new("A");
    let genesis = ChannelBuilder::new("bank").org(&org).genesis(0);
    let chain = blocks::signed_chain(genesis, &org.member(Role::Orderer, "o"), 10);
    let store = BlockStore::open(dir.path()).expect("open");
    for b in &chain {
        let n = block::number(b);
        let writes = (n > 0)
            .then(|| StateWrite {
                namespace: "bank".into(),
                key: "alice".into(),
                value: Some(Bytes::from(format!("{n}"))),
                version: Version { block: n, tx: 0 },
            })
            .into_iter()
            .collect();
        commit(&store, b, writes);
    }
    assert_eq!(store.history("bank", "alice").expect("history").len(), 9);
    store.prune_below(6, None).expect("prune");
    let left: Vec<u64> = store
        .history("bank", "alice")
        .expect("history")
        .iter()
        .map(|e| e.version.block)
        .collect();
    assert_eq!(left, vec![6, 7, 8, 9]);
    // A cursor below the cut starts at it.
    let (page, _) = store
        .history_page("bank", "alice", Some(Version { block: 2, tx: 0 }), 10)
        .expect("page");
    assert_eq!(page.first().map(|e| e.version.block), Some(6));
    // State is untouched: the current value is the last write's.
    let value = store.state("bank", "alice").expect("state").expect("value");
    assert_eq!(value.value.as_ref(), b"9");

    // The background compactor's call (`expiry` module): the held window (4 blocks)
    // turned over since the start, so `history` is compacted, memtable included.
    let done = store.compact_expired().expect("compact");
    assert!(done.history && !done.txids, "{done:?}");
    let history = store.cf(CF_HISTORY).expect("cf");
    let raw = store
        .inner
        .db
        .iterator_cf(history, rocksdb::IteratorMode::Start)
        .count();
    assert_eq!(raw, 4, "compaction dropped the entries of blocks 1..6");
    assert!(
        !store.compact_expired().expect("again").history,
        "not due again until the window turns over once more"
    );
}

#[test]
fn a_budget_in_bytes_is_measured_on_what_is_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(dir.path()).expect("open");
    let genesis = ChannelBuilder::new("bank")
        .org(&TestOrg::new("A"))
        .genesis(0);
    store.append(&genesis).expect("genesis");
    crate::tests_support::append_large_blocks(&store, 40);
    let before = store.chain_bytes().expect("bytes");
    assert!(before > 40 * 8 * 1024, "{before}");
    store.prune_below(30, None).expect("prune");
    let after = store.chain_bytes().expect("bytes");
    assert!(
        after < before / 2,
        "removing 30 of 40 blocks frees their bytes: {before} -> {after}"
    );
}
