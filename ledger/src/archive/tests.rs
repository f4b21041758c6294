//! Archives written by pruning steps, then damaged the ways files are damaged: each
//! refusal names the file and what is wrong.

use std::path::{Path, PathBuf};

use ordo_proto::pb::common::Role;
use ordo_testkit::{blocks, ChannelBuilder, TestOrg};

use super::*;
use crate::BlockStore;

fn now_secs() -> u64 {
    ordo_proto::now_ms() / 1000
}

/// A ledger of 30 signed blocks pruned below 10 and 20 into an archive: two segments.
fn archived(dir: &Path, arch: &Path) -> (BlockStore, Archive) {
    let org = TestOrg::new("A");
    let genesis = ChannelBuilder::new("bank").org(&org).genesis(0);
    let chain = blocks::signed_chain(genesis, &org.member(Role::Orderer, "o"), 30);
    let store = BlockStore::open(dir).expect("open");
    for b in &chain {
        store.append(b).expect("append");
    }
    let archive = Archive::open(arch, "bank").expect("archive");
    for below in [10, 20] {
        store.prune_below(below, Some(&archive)).expect("prune");
    }
    (store, archive)
}

fn segment(archive: &Archive, index: usize) -> PathBuf {
    archive.segments().expect("segments")[index].path.clone()
}

#[test]
fn a_truncated_segment_is_refused_naming_the_file_and_its_last_whole_block() {
    let (dir, arch) = (
        tempfile::tempdir().expect("t"),
        tempfile::tempdir().expect("t"),
    );
    let (_store, archive) = archived(dir.path(), arch.path());
    let second = segment(&archive, 1);
    let len = std::fs::metadata(&second).expect("meta").len();
    // Cut inside the fourth block of the second segment (blocks 10..20 of ~330 bytes).
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&second)
        .expect("open");
    file.set_len(len / 3).expect("truncate");
    match verify(archive.dir(), now_secs(), |_| {}) {
        Err(ArchiveError::Truncated { file, detail }) => {
            assert_eq!(file, second);
            assert!(
                detail.starts_with("no trailer: the file ends after"),
                "{detail}"
            );
            assert!(detail.contains("the last whole one is block 1"), "{detail}");
        }
        other => panic!("expected a truncated archive, got {other:?}"),
    }
}

#[test]
fn a_changed_byte_is_refused() {
    let (dir, arch) = (
        tempfile::tempdir().expect("t"),
        tempfile::tempdir().expect("t"),
    );
    let (_store, archive) = archived(dir.path(), arch.path());
    let first = segment(&archive, 0);
    let mut bytes = std::fs::read(&first).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&first, bytes).expect("write");
    let err = verify(archive.dir(), now_secs(), |_| {}).expect_err("refused");
    match &err {
        ArchiveError::Damaged { file, .. } | ArchiveError::Chain { file, .. } => {
            assert_eq!(file, &first, "{err}")
        }
        other => panic!("expected damage in {}, got {other:?}", first.display()),
    }
}

#[test]
fn a_missing_segment_is_a_gap() {
    let (dir, arch) = (
        tempfile::tempdir().expect("t"),
        tempfile::tempdir().expect("t"),
    );
    let (store, archive) = archived(dir.path(), arch.path());
    store.prune_below(25, Some(&archive)).expect("prune");
    std::fs::remove_file(segment(&archive, 1)).expect("remove");
    let err = verify(archive.dir(), now_secs(), |_| {}).expect_err("refused");
    assert!(
        matches!(&err, ArchiveError::Layout { detail, .. }
            if detail.contains("starts at block 20 but the block after the previous segment is 10")),
        "{err}"
    );
}

#[test]
fn another_channels_segment_is_refused() {
    let (dir, arch) = (
        tempfile::tempdir().expect("t"),
        tempfile::tempdir().expect("t"),
    );
    let (_store, archive) = archived(dir.path(), arch.path());
    let moved = arch.path().join("other");
    std::fs::rename(archive.dir(), &moved).expect("rename");
    let err = verify(&moved, now_secs(), |_| {}).expect_err("refused");
    assert!(
        err.to_string()
            .contains("holds channel \"bank\", the directory is \"other\""),
        "{err}"
    );
}

#[test]
fn an_empty_directory_and_a_stray_name_are_refused() {
    let arch = tempfile::tempdir().expect("t");
    let archive = Archive::open(arch.path(), "bank").expect("archive");
    let err = verify(archive.dir(), now_secs(), |_| {}).expect_err("refused");
    assert!(err.to_string().contains("holds no segment"), "{err}");
    std::fs::write(archive.dir().join("12-x.blocks"), b"").expect("write");
    let err = verify(archive.dir(), now_secs(), |_| {}).expect_err("refused");
    assert!(
        err.to_string()
            .contains("is not named <first>-<last>.blocks"),
        "{err}"
    );
}

#[test]
fn leftover_partial_files_are_removed_when_opened() {
    let arch = tempfile::tempdir().expect("t");
    let archive = Archive::open(arch.path(), "bank").expect("archive");
    let partial = archive.dir().join(".40.partial");
    std::fs::write(&partial, b"half a segment").expect("write");
    Archive::open(arch.path(), "bank").expect("reopen");
    assert!(!partial.exists());
}
