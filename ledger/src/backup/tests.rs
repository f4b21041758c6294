use super::*;

#[test]
fn names_are_single_safe_path_components() {
    for ok in ["nightly", "2026-12-01_a", "a.b", "x"] {
        validate_name(ok).expect(ok);
    }
    let long = "a".repeat(NAME_BYTES_MAX + 1);
    for bad in [
        "", "..", ".", "../x", "a/b", "/abs", ".hidden", "a\\b", "é", &long,
    ] {
        assert!(
            matches!(validate_name(bad), Err(BackupError::InvalidName { .. })),
            "{bad:?}"
        );
    }
    validate_name(&"a".repeat(NAME_BYTES_MAX)).expect("64 bytes");
}

#[test]
fn a_backup_is_refused_twice_and_leaves_nothing_when_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(&tmp.path().join("ledger")).expect("open");
    let data = tmp.path().join("data");
    let mut w = BackupWriter::begin(&data, "one").expect("begin");
    w.add_channel("ch", &store).expect("checkpoint");
    let (m, dir) = w.finish("peer0", "peer", 7).expect("finish");
    assert_eq!(dir, data.join("backups/one"));
    assert_eq!(m.channels.len(), 1);
    assert_eq!(m.channels[0].height, 0);
    assert_eq!(read_manifest(&dir).expect("manifest"), m);
    assert!(matches!(
        BackupWriter::begin(&data, "one"),
        Err(BackupError::AlreadyExists(_))
    ));
    let w = BackupWriter::begin(&data, "two").expect("begin");
    drop(w);
    let left: Vec<_> = std::fs::read_dir(data.join("backups"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("one")]);
}

#[test]
fn restore_refuses_a_non_empty_target() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(&tmp.path().join("ledger")).expect("open");
    let data = tmp.path().join("data");
    let mut w = BackupWriter::begin(&data, "b").expect("begin");
    w.add_channel("ch", &store).expect("checkpoint");
    let (_, dir) = w.finish("n", "peer", 0).expect("finish");
    let target = tmp.path().join("target");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join("x"), b"x").expect("file");
    assert!(matches!(
        restore(&dir, &target, 0),
        Err(BackupError::TargetNotEmpty(_))
    ));
}
