//! The ledger's on-disk format version: recorded in every ledger, checked before anything
//! else is read, so that a node never serves (or writes into) a layout it does not know.
//!
//! The version is `meta` key `format`, a `u32` big-endian. Opening a ledger:
//!
//! | recorded | what happens |
//! |---|---|
//! | absent, ledger empty | a new ledger: [`LEDGER_FORMAT`] is recorded (synced) |
//! | absent, blocks stored | written before versions were recorded (format 0): migrated |
//! | below [`LEDGER_FORMAT`] | migrated step by step ([`MIGRATIONS`]) |
//! | [`LEDGER_FORMAT`] | opened as is |
//! | above [`LEDGER_FORMAT`] | refused with [`LedgerError::NewerFormat`]; nothing written |
//!
//! **Migrations.** Each step rewrites what its format changed and records its target
//! version in the same synced write batch, so a crash during a migration leaves the ledger
//! at the last completed step and the next open resumes there. Format 0 is the layout of
//! format 1 without the version key, so its step only records the version. Format 2 lets
//! a ledger start above block 0 (`meta` keys `first_block`, `base_hash`, `base_config`:
//! the `base` module); a format-1 ledger starts at block 0, so its step too only records
//! the version — but a format-1 build must not open a format-2 ledger, which may hold no
//! block 0. Format 3 lets a peer's tx-index entries end with the transaction's signed
//! timestamp and records the expiry floor (`expiry` module). Entries written before keep
//! no timestamp, and must not get one now: whether a block is still held to read it from
//! differs between peers, and an entry's timestamp decides verdicts. They never expire.
//! So this step too only records the version, and a format-2 build, which would read a
//! 21-byte entry as corrupt, must not open a format-3 ledger.
//!
//! **Why refuse a newer format rather than try.** A newer node may have changed how
//! blocks, the tx index or state are keyed; an older binary reading them would serve wrong
//! blocks or, worse, append into a layout it misunderstands and fork the channel. The
//! operator's remedy is to run the newer binary (or restore a backup taken before the
//! upgrade).

use rocksdb::{WriteBatch, WriteOptions};

use crate::{cf, Db, LedgerError, CF_BLOCKS, CF_META};

/// The format this build writes and reads. Bump it with every change to the layout in the
/// crate docs, and add the step from the previous one to [`MIGRATIONS`].
pub const LEDGER_FORMAT: u32 = 3;

/// `meta` key of the format version (`u32` big-endian).
pub(crate) const META_FORMAT: &[u8] = b"format";

/// One migration step: turns a ledger of format `from` into format `from + 1`, adding its
/// changes to the batch that also records the new version.
pub(crate) struct Migration {
    /// The format the step starts from.
    pub(crate) from: u32,
    /// What the step changes, for the log line.
    pub(crate) what: &'static str,
    /// Adds the step's writes to the batch (reads may use the database as it is).
    pub(crate) apply: fn(&Db, &mut WriteBatch) -> Result<(), LedgerError>,
}

/// The steps from every older format to [`LEDGER_FORMAT`], in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        from: 0,
        what: "record the format version (the layout is unchanged)",
        apply: layout_unchanged,
    },
    Migration {
        from: 1,
        what: "allow a ledger to start above block 0 (the `base` keys; a format-1 ledger \
               holds its chain from block 0 and needs none)",
        apply: layout_unchanged,
    },
    Migration {
        from: 2,
        what: "let a peer's tx-index entries carry their signed timestamp and record the \
               expiry floor (the `expiry` module); older entries keep none and never expire",
        apply: layout_unchanged,
    },
];

/// A step that changes nothing but the recorded version.
fn layout_unchanged(_: &Db, _: &mut WriteBatch) -> Result<(), LedgerError> {
    Ok(())
}

/// How the format check went, for the open's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormatOutcome {
    /// The ledger already had this build's format.
    Current,
    /// An empty ledger: this build's format was recorded.
    Created,
    /// An older ledger was migrated from this format.
    Migrated {
        /// The format it had.
        from: u32,
    },
}

/// The recorded format, `None` when the key is absent.
pub(crate) fn recorded_format(db: &Db) -> Result<Option<u32>, LedgerError> {
    let meta = cf(db, CF_META)?;
    db.get_cf(meta, META_FORMAT)?
        .map(|v| {
            <[u8; 4]>::try_from(v.as_slice())
                .map(u32::from_be_bytes)
                .map_err(|_| {
                    LedgerError::Corrupt(format!("meta format is {} bytes, expected 4", v.len()))
                })
        })
        .transpose()
}

/// Checks the recorded format against [`LEDGER_FORMAT`], refusing a newer one and
/// migrating an older one (see the module docs). Called first when a ledger is opened.
pub(crate) fn settle_format(db: &Db) -> Result<FormatOutcome, LedgerError> {
    settle_format_to(db, LEDGER_FORMAT, MIGRATIONS)
}

/// [`settle_format`] with the target and the steps given, so tests can exercise
/// multi-step migrations and crashes between steps.
pub(crate) fn settle_format_to(
    db: &Db,
    target: u32,
    migrations: &[Migration],
) -> Result<FormatOutcome, LedgerError> {
    let recorded = recorded_format(db)?;
    let start = match recorded {
        Some(found) if found > target => {
            return Err(LedgerError::NewerFormat {
                found,
                supported: target,
            })
        }
        Some(found) if found == target => return Ok(FormatOutcome::Current),
        Some(found) => found,
        None if is_empty(db)? => {
            record(db, WriteBatch::default(), target)?;
            return Ok(FormatOutcome::Created);
        }
        None => 0,
    };
    for version in start..target {
        let step = migrations
            .iter()
            .find(|m| m.from == version)
            .ok_or_else(|| {
                LedgerError::Corrupt(format!(
                    "format {version} has no migration to {} in this build",
                    version + 1
                ))
            })?;
        tracing::info!(
            from = version,
            to = version + 1,
            what = step.what,
            "migrating ledger format"
        );
        let mut batch = WriteBatch::default();
        (step.apply)(db, &mut batch)?;
        record(db, batch, version + 1)?;
    }
    Ok(FormatOutcome::Migrated { from: start })
}

/// Writes `batch` with the format set to `version`, synced.
fn record(db: &Db, mut batch: WriteBatch, version: u32) -> Result<(), LedgerError> {
    batch.put_cf(cf(db, CF_META)?, META_FORMAT, version.to_be_bytes());
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts)?;
    Ok(())
}

/// Whether the ledger holds nothing yet: no block and no `meta` entry.
fn is_empty(db: &Db) -> Result<bool, LedgerError> {
    for name in [CF_BLOCKS, CF_META] {
        if let Some(item) = db
            .iterator_cf(cf(db, name)?, rocksdb::IteratorMode::Start)
            .next()
        {
            item?;
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockStore;

    fn raw(store: &BlockStore) -> &Db {
        &store.inner.db
    }

    fn set_format(store: &BlockStore, value: &[u8]) {
        let db = raw(store);
        db.put_cf(cf(db, CF_META).expect("meta"), META_FORMAT, value)
            .expect("write the format");
    }

    fn store_with_blocks(dir: &std::path::Path, blocks: u64) -> BlockStore {
        let store = BlockStore::open(dir).expect("open");
        for _ in 0..blocks {
            let b = ordo_proto::block::build(
                store.height(),
                store
                    .last_hash()
                    .unwrap_or(ordo_proto::block::GENESIS_PREVIOUS_HASH),
                vec![],
            );
            store.append(&b).expect("append");
        }
        store
    }

    #[test]
    fn every_older_format_has_a_step_to_the_next() {
        for version in 0..LEDGER_FORMAT {
            assert!(
                MIGRATIONS.iter().any(|m| m.from == version),
                "no migration from format {version}"
            );
        }
    }

    #[test]
    fn a_new_ledger_records_the_current_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path()).expect("open");
        assert_eq!(
            recorded_format(raw(&store)).expect("read"),
            Some(LEDGER_FORMAT)
        );
        assert_eq!(
            settle_format(raw(&store)).expect("settle"),
            FormatOutcome::Current
        );
    }

    #[test]
    fn an_unversioned_ledger_is_migrated_and_keeps_its_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_blocks(dir.path(), 3);
        let last = store.last_hash();
        let db = raw(&store);
        db.delete_cf(cf(db, CF_META).expect("meta"), META_FORMAT)
            .expect("forget the format, as ledgers written before it");
        drop(store);

        let store = BlockStore::open(dir.path()).expect("reopen migrates");
        assert_eq!(
            recorded_format(raw(&store)).expect("read"),
            Some(LEDGER_FORMAT)
        );
        assert_eq!(store.height(), 3);
        assert_eq!(store.last_hash(), last);
        assert!(store.block(2).expect("read").is_some());
    }

    #[test]
    fn a_newer_format_is_refused_and_nothing_is_touched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_blocks(dir.path(), 2);
        set_format(&store, &(LEDGER_FORMAT + 1).to_be_bytes());
        drop(store);

        match BlockStore::open(dir.path()) {
            Err(LedgerError::NewerFormat { found, supported }) => {
                assert_eq!((found, supported), (LEDGER_FORMAT + 1, LEDGER_FORMAT));
            }
            other => panic!("expected NewerFormat, got {other:?}"),
        }
        let message = BlockStore::open(dir.path())
            .expect_err("still refused")
            .to_string();
        assert!(
            message.contains(&format!("format {}", LEDGER_FORMAT + 1)),
            "{message}"
        );

        // The refusal wrote nothing: put the version back and the ledger is as it was.
        let db = Db::open_cf_descriptors(
            &crate::open::db_options(),
            dir.path(),
            crate::open::cf_descriptors(),
        )
        .expect("raw open");
        assert_eq!(recorded_format(&db).expect("read"), Some(LEDGER_FORMAT + 1));
        db.put_cf(
            cf(&db, CF_META).expect("meta"),
            META_FORMAT,
            LEDGER_FORMAT.to_be_bytes(),
        )
        .expect("restore");
        drop(db);
        assert_eq!(BlockStore::open(dir.path()).expect("open").height(), 2);
    }

    #[test]
    fn a_malformed_version_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_blocks(dir.path(), 1);
        set_format(&store, b"v1");
        drop(store);
        match BlockStore::open(dir.path()) {
            Err(LedgerError::Corrupt(why)) => assert!(why.contains("format"), "{why}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// Two steps, the second failing once (a crash between steps): the first step's
    /// version stays recorded, and the next open resumes from it.
    #[test]
    fn migrations_run_in_order_and_resume_after_a_failed_step() {
        const MARK: &[u8] = b"migrated-1-to-2";
        fn fail_once(db: &Db, batch: &mut WriteBatch) -> Result<(), LedgerError> {
            let meta = cf(db, CF_META)?;
            if db.get_cf(meta, b"fail-once")?.is_none() {
                db.put_cf(meta, b"fail-once", b"1")?;
                return Err(LedgerError::Corrupt("simulated failure".into()));
            }
            batch.put_cf(meta, MARK, b"1");
            Ok(())
        }
        let steps = [
            Migration {
                from: 0,
                what: "record",
                apply: layout_unchanged,
            },
            Migration {
                from: 1,
                what: "mark",
                apply: fail_once,
            },
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_blocks(dir.path(), 1);
        let db = raw(&store);
        db.delete_cf(cf(db, CF_META).expect("meta"), META_FORMAT)
            .expect("unversioned");

        assert!(settle_format_to(db, 2, &steps).is_err());
        assert_eq!(recorded_format(db).expect("read"), Some(1));
        assert_eq!(
            settle_format_to(db, 2, &steps).expect("resume"),
            FormatOutcome::Migrated { from: 1 }
        );
        assert_eq!(recorded_format(db).expect("read"), Some(2));
        let meta = cf(db, CF_META).expect("meta");
        assert!(db.get_cf(meta, MARK).expect("read").is_some());
        assert_eq!(
            settle_format_to(db, 2, &steps).expect("again"),
            FormatOutcome::Current
        );
        // A format without a path to the target is refused, not skipped.
        assert!(matches!(
            settle_format_to(db, 4, &steps),
            Err(LedgerError::Corrupt(why)) if why.contains("no migration")
        ));
    }
}
