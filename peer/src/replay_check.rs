//! Checking a stopped node's channel ledger against its own blocks, for `ordo ledger
//! verify`.
//!
//! What is checked, in one pass over the blocks:
//!
//! 1. **The chain** ([`ordo_proto::verify::ChainVerifier`]): every block readable, numbered in order, linked
//!    by hash to the one before, its data hash the Merkle root of its data, signed by the
//!    orderers under the channel's BlockValidation policy; the last one the ledger's tip.
//! 2. **On a peer's ledger** (one that stores a commit hash), the derived data: the blocks
//!    are validated and committed again, from the genesis block, into a scratch ledger —
//!    validation is a pure function of the blocks (see the validator's docs), so an intact
//!    ledger is reproduced exactly. Then the commit hash must be the stored one, and the
//!    tx index (locations and validation codes), the world state and the key history must
//!    match the replay's entry for entry ([`REPLAYED_COLUMNS`]; tx ids signed below the
//!    expiry floor left out), and so must the expiry floor. A flipped bit in a
//!    state value, a lost index entry or a history entry left over are all found, with the
//!    first key that differs.
//!
//! A ledger joined from a snapshot holds no block below the snapshot's height: its chain
//! is verified from there, with the configuration the snapshot carried, and its state is
//! not replayed (the report says so); compare its commit hash with a peer that replayed
//! from genesis instead (`ordo channel info`).
//!
//! The check reads the ledger and writes only the scratch directory, which the caller
//! provides and deletes. It costs what validation costs (tens of thousands of
//! transactions a second on two cores), so `progress` is called after every block.

use std::path::Path;

use ordo_ledger::{BlockStore, Difference, LedgerError, REPLAYED_COLUMNS};
use ordo_proto::hash::Hash;
use ordo_proto::verify::VerifyError;
use thiserror::Error;

use crate::committer::{CommitError, Committer};

/// Why a ledger failed the check. Each names where the first fault is.
#[derive(Debug, Error)]
pub enum ReplayCheckError {
    /// A block could not be read (corruption is named by the ledger: channel, block, file).
    #[error("reading the ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A block does not verify as part of the chain.
    #[error("block {block}: {source}")]
    Chain {
        /// The block.
        block: u64,
        /// What is wrong with it.
        source: VerifyError,
    },
    /// Committing a block again failed (the replay, not the ledger, may be at fault: the
    /// scratch directory's disk, say).
    #[error("replaying block {block}: {source}")]
    Replay {
        /// The block.
        block: u64,
        /// Why.
        source: CommitError,
    },
    /// The stored commit hash is not the replay's.
    #[error(
        "the commit hash after block {block} is {stored} in the ledger but {replayed} when \
         its blocks are validated again"
    )]
    CommitHash {
        /// The last block.
        block: u64,
        /// Stored, hex.
        stored: String,
        /// Replayed, hex.
        replayed: String,
    },
    /// The stored expiry floor is not the replay's.
    #[error(
        "the expiry floor after block {block} is {stored} ms in the ledger but {replayed} ms \
         when its blocks are validated again"
    )]
    ExpiryFloor {
        /// The last block.
        block: u64,
        /// Stored.
        stored: u64,
        /// Replayed.
        replayed: u64,
    },
    /// A column differs from the replay's.
    #[error(
        "{} differs from a replay of the blocks at key {}: {} in the ledger, {} in the replay",
        .0.column,
        hex::encode(&.0.key),
        shown(.0.here.as_deref()),
        shown(.0.there.as_deref())
    )]
    Differs(Difference),
}

fn shown(value: Option<&[u8]>) -> String {
    match value {
        None => "absent".into(),
        Some(v) if v.len() <= 48 => hex::encode(v),
        Some(v) => format!("{}… ({} bytes)", hex::encode(&v[..48]), v.len()),
    }
}

/// What a passed check covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The first block checked: 0, or where a ledger joined from a snapshot starts.
    pub first_block: u64,
    /// The height: blocks `first_block..blocks` were checked.
    pub blocks: u64,
    /// Envelopes in them.
    pub envelopes: u64,
    /// Whether the derived data was checked by a replay (a peer's ledger).
    pub replayed: bool,
    /// The commit hash the replay reached (a peer's ledger).
    pub commit_hash: Option<Hash>,
}

/// Checks `ledger` (see the module docs). `scratch` must be a missing or empty directory
/// for the replay; `now_secs` is the time the orderers' certificates are checked at, as
/// by `ordo block verify`; `progress` is called with each block's number and envelope
/// count after it passed.
pub fn check_ledger(
    ledger: &BlockStore,
    scratch: &Path,
    now_secs: u64,
    mut progress: impl FnMut(u64, usize),
) -> Result<ReplayReport, ReplayCheckError> {
    let height = ledger.height();
    let mut verifier = ledger.chain_verifier()?;
    let first = verifier.next_number();
    // A ledger joined from a snapshot has no genesis to replay from: its held chain is
    // verified from the snapshot's height, its state is not replayed.
    let stored_commit = if first == 0 {
        ledger.commit_hash()?
    } else {
        None
    };
    let mut committer: Option<Committer> = None;
    let mut envelopes = 0u64;
    for block in ledger.blocks(first, height) {
        let block = block?;
        let number = verifier.next_number();
        verifier
            .check(&block, now_secs)
            .map_err(|source| ReplayCheckError::Chain {
                block: number,
                source,
            })?;
        let count = block.data.as_ref().map_or(0, |d| d.data.len());
        envelopes += count as u64;
        if stored_commit.is_some() {
            let replay = |source| ReplayCheckError::Replay {
                block: number,
                source,
            };
            match committer.as_mut() {
                None => {
                    let scratch_ledger =
                        BlockStore::open(scratch).map_err(|e| replay(CommitError::Ledger(e)))?;
                    committer = Some(Committer::join(scratch_ledger, block).map_err(replay)?);
                }
                Some(c) => {
                    c.commit(block).map_err(replay)?;
                }
            }
        }
        progress(number, count);
    }
    if verifier.next_number() != height {
        return Err(LedgerError::Corrupt(format!(
            "{} blocks readable below the height {height}",
            verifier.next_number()
        ))
        .into());
    }
    let Some(committer) = committer else {
        return Ok(ReplayReport {
            first_block: first,
            blocks: height,
            envelopes,
            replayed: false,
            commit_hash: None,
        });
    };
    let replayed = committer.commit_hash();
    if stored_commit != Some(replayed) {
        return Err(ReplayCheckError::CommitHash {
            block: height.saturating_sub(1),
            stored: stored_commit.map(hex::encode).unwrap_or_default(),
            replayed: hex::encode(replayed),
        });
    }
    let (stored, replayed_floor) = (
        ledger.expiry_floor_ms(),
        committer.ledger().expiry_floor_ms(),
    );
    if stored != replayed_floor {
        return Err(ReplayCheckError::ExpiryFloor {
            block: height.saturating_sub(1),
            stored,
            replayed: replayed_floor,
        });
    }
    for column in REPLAYED_COLUMNS {
        if let Some(d) = ledger.first_difference(committer.ledger(), column)? {
            return Err(ReplayCheckError::Differs(d));
        }
    }
    Ok(ReplayReport {
        first_block: first,
        blocks: height,
        envelopes,
        replayed: true,
        commit_hash: Some(replayed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validator::tests::fixture::{net, NOW};
    use bytes::Bytes;
    use ordo_proto::pb::common::Block;
    use ordo_proto::{block, config};
    use ordo_sdk::tx::RwSetBuilder;

    /// The next block over `envelopes`, signed by every org's orderer.
    fn signed_next(ledger: &BlockStore, envelopes: Vec<Bytes>) -> Block {
        let prev = ledger.last_hash().expect("has blocks");
        let mut b = block::build(ledger.height(), prev, envelopes);
        for org in &net().orgs {
            block::sign_at(&mut b, &org.orderer, 0, Bytes::new(), NOW * 1000);
        }
        b
    }

    /// A write of `key`, having read it absent.
    fn put(nonce: u64, key: &str, value: &str) -> Bytes {
        let mut rw = RwSetBuilder::new();
        rw.read("bank", key, None);
        rw.write("bank", key, Bytes::copy_from_slice(value.as_bytes()));
        net().tx(nonce).rwset(rw.build()).build()
    }

    fn genesis() -> Block {
        config::genesis_block(&net().config, NOW * 1000).expect("genesis")
    }

    /// A peer's ledger: genesis, two writes, then a conflicting write (MVCC) and a new
    /// key, so that codes, state and history all have entries.
    fn peer_ledger(dir: &Path) {
        let ledger = BlockStore::open(dir).expect("ledger");
        let mut c = Committer::join(ledger.clone(), genesis()).expect("join");
        let b1 = signed_next(&ledger, vec![put(1, "alice", "10"), put(2, "bob", "5")]);
        c.commit(b1).expect("block 1");
        let b2 = signed_next(&ledger, vec![put(3, "alice", "11"), put(4, "carol", "1")]);
        let done = c.commit(b2).expect("block 2");
        assert_eq!(
            done.validation.valid_count(),
            1,
            "alice's second write conflicts"
        );
    }

    fn check(dir: &Path) -> Result<ReplayReport, ReplayCheckError> {
        let scratch = tempfile::tempdir().expect("scratch");
        let ledger = BlockStore::open(dir).expect("open");
        let mut seen = Vec::new();
        let r = check_ledger(&ledger, &scratch.path().join("replay"), NOW, |n, _| {
            seen.push(n)
        });
        if let Ok(report) = &r {
            assert_eq!(
                seen,
                (0..report.blocks).collect::<Vec<_>>(),
                "progress per block"
            );
        }
        r
    }

    /// Changes the value under the first key of `column` (keeping its length), with the
    /// node stopped, as a bit flip on disk would.
    fn tamper_first(dir: &Path, column: &str) {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(false);
        let db = rocksdb::DB::open_cf(&opts, dir, ordo_ledger::COLUMN_FAMILIES).expect("raw");
        let cf = db.cf_handle(column).expect("cf");
        let (key, mut value) = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .next()
            .expect("an entry")
            .expect("read");
        let last = value.len() - 1;
        value[last] ^= 1;
        db.put_cf(cf, key, value).expect("tamper");
    }

    #[test]
    fn an_intact_peer_ledger_passes_with_the_stored_commit_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        peer_ledger(dir.path());
        let stored = BlockStore::open(dir.path())
            .expect("open")
            .commit_hash()
            .expect("read");
        let report = check(dir.path()).expect("intact");
        assert_eq!(
            report,
            ReplayReport {
                first_block: 0,
                blocks: 3,
                envelopes: 5,
                replayed: true,
                commit_hash: stored,
            }
        );
    }

    #[test]
    fn a_changed_state_value_index_code_or_history_entry_is_found() {
        for column in REPLAYED_COLUMNS {
            let dir = tempfile::tempdir().expect("tempdir");
            peer_ledger(dir.path());
            tamper_first(dir.path(), column);
            match check(dir.path()) {
                Err(ReplayCheckError::Differs(d)) => assert_eq!(d.column, column),
                other => panic!("{column}: expected Differs, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_changed_commit_hash_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        peer_ledger(dir.path());
        tamper_first(dir.path(), "meta");
        let err = check(dir.path()).expect_err("tampered");
        // `meta` sorts `commit_hash` first; a changed tip would fail the open instead.
        assert!(
            matches!(err, ReplayCheckError::CommitHash { block: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn an_orderer_ledger_is_checked_as_a_chain_and_an_unsigned_block_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = BlockStore::open(dir.path()).expect("ledger");
        ledger.append(&genesis()).expect("genesis");
        ledger
            .append(&signed_next(&ledger, vec![put(1, "alice", "10")]))
            .expect("block 1");
        let report = check_ledger(&ledger, &dir.path().join("unused"), NOW, |_, _| {})
            .expect("a signed chain");
        assert_eq!((report.blocks, report.replayed), (2, false));

        let unsigned = block::build(2, ledger.last_hash().expect("tip"), vec![]);
        ledger.append(&unsigned).expect("the ledger takes it");
        match check_ledger(&ledger, &dir.path().join("unused"), NOW, |_, _| {}) {
            Err(ReplayCheckError::Chain { block: 2, .. }) => {}
            other => panic!("expected a chain fault at block 2, got {other:?}"),
        }
    }
}
