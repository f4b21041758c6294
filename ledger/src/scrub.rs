//! The background scrub: a slow, endless pass over every block of a running node's
//! ledgers, so that damage on disk shows before a client asks for the damaged block — a
//! peer's old blocks may not be read for months.
//!
//! Each block is read through the store's checked read path (RocksDB's table and blob
//! checksums; the block decodes under its number), then its structure is checked (the
//! data hash is the Merkle root of its data) and its link to the block before it. What
//! fails is recorded as the store's fault ([`BlockStore::fault`]: health, metrics, one log
//! line; see the `fault` module). The pass goes on after a bad block, so one fault does
//! not hide the rest of the ledger from the scrub; the block after a bad one is checked
//! without its link.
//!
//! [`Scrubber`] is one ledger's pass, one block per [`Scrubber::step`] (blocking reads);
//! [`scrub_forever`] drives the passes of all of a node's ledgers in turn, paced to a
//! byte rate so that the scrub never competes with commits for the disk.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use ordo_proto::block as chain;
use ordo_proto::hash::Hash;
use prost::Message;

use crate::{BlockStore, Inner, LedgerError};

/// How far the scrub has come on one ledger, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubStatus {
    /// Complete passes over the ledger since the node started.
    pub passes: u64,
    /// Blocks checked since the node started.
    pub blocks: u64,
    /// Bytes of blocks read since the node started.
    pub bytes: u64,
}

/// What one [`Scrubber::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Checked block `number` (`bytes` long); `ok` is false when it was found damaged.
    Block {
        /// The block.
        number: u64,
        /// Its stored size.
        bytes: u64,
        /// Whether it passed.
        ok: bool,
    },
    /// The pass reached the height; the next step starts a new pass at block 0.
    PassComplete,
}

/// One ledger's scrub pass: where it is, not the ledger itself. The scrub must not keep
/// a removed channel's store open: RocksDB allows one open instance of a directory per
/// process, so a held store would stop the channel from being joined again.
#[derive(Debug)]
pub struct Scrubber {
    /// The store scrubbed, to tell it from a later store of the same directory.
    of: Weak<Inner>,
    next: u64,
    /// The hash the next block must link to; `None` after a damaged block.
    prev: Option<Hash>,
}

impl Scrubber {
    /// A pass over `store` from its first block (0, or a snapshot's height).
    pub fn new(store: &BlockStore) -> Self {
        let (next, prev) = pass_start(store);
        Self {
            of: Arc::downgrade(&store.inner),
            next,
            prev,
        }
    }

    /// Whether this pass is over `store` (and not an earlier store of its directory).
    pub fn is_for(&self, store: &BlockStore) -> bool {
        std::ptr::eq(self.of.as_ptr(), Arc::as_ptr(&store.inner))
    }

    /// Checks the next block (blocking: RocksDB reads). Storage errors that are not
    /// corruption (the disk gone, say) are returned and the block is tried again later.
    /// `store` must be the one the pass is for ([`Scrubber::is_for`]).
    pub fn step(&mut self, store: &BlockStore) -> Result<Step, LedgerError> {
        let number = self.next;
        if number < store.first_block() {
            // The blocks ahead of the pass are no longer held: go on from the first held.
            (self.next, self.prev) = pass_start(store);
            return self.step(store);
        }
        if number >= store.height() {
            (self.next, self.prev) = pass_start(store);
            update(store, |s| s.passes += 1);
            return Ok(Step::PassComplete);
        }
        let read = store.block(number);
        let (bytes, ok) = match read {
            Ok(Some(block)) => {
                let bytes = block.encoded_len() as u64;
                let checked = match &self.prev {
                    Some(prev) => chain::check_structure(&block, Some((number, prev))),
                    None => chain::check_structure(&block, None),
                };
                let ok = match checked {
                    Ok(()) => true,
                    Err(e) => {
                        let _ = store.checked::<()>(
                            Some(number),
                            Err(LedgerError::Corrupt(format!("block {number}: {e}"))),
                        );
                        false
                    }
                };
                self.prev = ok.then(|| chain::hash(&block));
                (bytes, ok)
            }
            // Below the height a block is always there; `block` says Corrupt otherwise.
            Ok(None) => (0, true),
            Err(LedgerError::Corrupt(_)) => {
                self.prev = None;
                (0, false)
            }
            Err(e) => return Err(e),
        };
        self.next += 1;
        update(store, |s| {
            s.blocks += 1;
            s.bytes += bytes;
        });
        Ok(Step::Block { number, bytes, ok })
    }
}

/// Where a pass starts: the first block held and the hash it links to (unknown when the
/// base cannot be read; the first block is then checked without its link).
fn pass_start(store: &BlockStore) -> (u64, Option<Hash>) {
    match store.chain_start() {
        // A pruning step between the two reads: the base on disk is not yet (or no
        // longer) the first block's; its link is checked on the next pass.
        Ok((first, prev)) if first == store.first_block() => (first, Some(prev)),
        _ => (store.first_block(), None),
    }
}

fn update(store: &BlockStore, f: impl FnOnce(&mut ScrubStatus)) {
    f(&mut store
        .inner
        .scrub
        .lock()
        .unwrap_or_else(PoisonError::into_inner));
}

impl BlockStore {
    /// How far the background scrub has come on this ledger since the node started.
    pub fn scrub_status(&self) -> ScrubStatus {
        *self
            .inner
            .scrub
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long the scrub rests when none of the ledgers had a block to read.
const IDLE: Duration = Duration::from_secs(1);
/// The scrub sleeps off its reads once they add up to this much time.
const MIN_SLEEP: Duration = Duration::from_millis(20);

/// Scrubs every ledger `ledgers()` returns, one block of each per round, reading at
/// most `bytes_per_sec` on average; never returns (drop or abort the future to stop it).
/// Ledgers are listed again every round and let go of before the round's pause, so that
/// joined channels are picked up and removed ones are not held open. A storage error that
/// is not corruption is logged and the round goes on.
pub async fn scrub_forever(ledgers: impl Fn() -> Vec<BlockStore>, bytes_per_sec: u64) {
    let rate = bytes_per_sec.max(1) as f64;
    let mut passes: HashMap<PathBuf, Scrubber> = HashMap::new();
    let mut owed = Duration::ZERO;
    loop {
        let current = ledgers();
        passes.retain(|dir, _| current.iter().any(|s| s.dir() == dir.as_path()));
        let mut read_any = false;
        for store in current {
            let dir = store.dir().to_path_buf();
            // A channel removed and joined again has a new store in the same directory.
            let scrubber = match passes.remove(&dir) {
                Some(s) if s.is_for(&store) => s,
                _ => Scrubber::new(&store),
            };
            let done = tokio::task::spawn_blocking(move || {
                let mut s = scrubber;
                let r = s.step(&store);
                (s, r)
            })
            .await;
            let Ok((scrubber, result)) = done else {
                // The blocking pool is shutting down: so is the node.
                return;
            };
            match result {
                Ok(Step::Block { bytes, .. }) => {
                    read_any = true;
                    owed += Duration::from_secs_f64(bytes as f64 / rate);
                }
                Ok(Step::PassComplete) => {}
                Err(e) => tracing::warn!(dir = %dir.display(), "ledger scrub: {e}"),
            }
            passes.insert(dir, scrubber);
        }
        if owed >= MIN_SLEEP {
            tokio::time::sleep(owed).await;
            owed = Duration::ZERO;
        } else if !read_any {
            tokio::time::sleep(IDLE).await;
        }
    }
}

/// Runs [`scrub_forever`] on a task until `stop` resolves, when `bytes_per_sec` is not 0
/// (the `[ledger] scrub_bytes_per_sec` of a node's config).
pub fn spawn(
    ledgers: impl Fn() -> Vec<BlockStore> + Send + 'static,
    bytes_per_sec: u64,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if bytes_per_sec == 0 {
        tracing::info!("ledger scrub off ([ledger] scrub_bytes_per_sec = 0)");
        return;
    }
    tracing::info!(bytes_per_sec, "ledger scrub on");
    tokio::spawn(async move {
        tokio::select! {
            _ = scrub_forever(ledgers, bytes_per_sec) => {}
            _ = stop => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_support::{flip_in_blob_files, ledger_in_blob_files};

    fn full_pass(s: &mut Scrubber, store: &BlockStore) -> Vec<Step> {
        let mut steps = Vec::new();
        loop {
            let step = s.step(store).expect("step");
            steps.push(step);
            if step == Step::PassComplete {
                return steps;
            }
        }
    }

    #[test]
    fn an_intact_ledger_passes_block_by_block_and_passes_repeat() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ch");
        ledger_in_blob_files(&dir, |n| format!("M{n}"));
        let store = BlockStore::open(&dir).expect("open");
        let mut s = Scrubber::new(&store);
        for pass in 1..=2u64 {
            let steps = full_pass(&mut s, &store);
            let numbers: Vec<u64> = steps
                .iter()
                .filter_map(|st| match st {
                    Step::Block { number, ok, .. } => {
                        assert!(ok, "block {number}");
                        Some(*number)
                    }
                    Step::PassComplete => None,
                })
                .collect();
            assert_eq!(numbers, vec![0, 1, 2, 3]);
            let status = store.scrub_status();
            assert_eq!((status.passes, status.blocks), (pass, 4 * pass));
            assert!(status.bytes > 4 * 8 * 1024 * pass);
        }
        assert_eq!(store.fault(), None);
    }

    #[test]
    fn a_damaged_block_is_recorded_and_the_pass_goes_on() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ch");
        let marker = |n: u64| format!("MARKER-{n}-");
        ledger_in_blob_files(&dir, marker);
        let file = flip_in_blob_files(&dir, marker(1).as_bytes());
        let store = BlockStore::open(&dir).expect("open");
        let mut s = Scrubber::new(&store);
        let verdicts: Vec<(u64, bool)> = full_pass(&mut s, &store)
            .into_iter()
            .filter_map(|st| match st {
                Step::Block { number, ok, .. } => Some((number, ok)),
                Step::PassComplete => None,
            })
            .collect();
        assert_eq!(verdicts, vec![(0, true), (1, false), (2, true), (3, true)]);
        let fault = store.fault().expect("recorded");
        assert_eq!((fault.block, fault.file), (Some(1), Some(file)));
    }

    #[tokio::test]
    async fn the_driver_finds_damage_in_every_ledger_it_is_given() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let marker = |n: u64| format!("MARKER-{n}-");
        let mut stores = Vec::new();
        for name in ["a", "b"] {
            let dir = tmp.path().join(name);
            ledger_in_blob_files(&dir, marker);
            if name == "b" {
                flip_in_blob_files(&dir, marker(2).as_bytes());
            }
            stores.push(BlockStore::open(&dir).expect("open"));
        }
        let listed = stores.clone();
        // 64 KiB of blocks at 1 MiB/s: a pass of both takes about 60 ms of pacing.
        let driver = tokio::spawn(scrub_forever(move || listed.clone(), 1 << 20));
        let finished = tokio::time::timeout(Duration::from_secs(60), async {
            while stores.iter().any(|s| s.scrub_status().passes == 0) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        driver.abort();
        assert!(finished.is_ok(), "both ledgers scrubbed within a minute");
        assert_eq!(stores[0].fault(), None);
        assert_eq!(stores[1].fault().and_then(|f| f.block), Some(2));
    }

    /// Between rounds the scrub holds no store: a removed channel's directory can be
    /// opened again (RocksDB refuses a second open instance in one process).
    #[tokio::test]
    async fn between_rounds_the_scrub_holds_no_store_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ch");
        ledger_in_blob_files(&dir, |n| format!("M{n}"));
        let store = BlockStore::open(&dir).expect("open");
        let listed = store.clone();
        // One byte a second: after its first block the driver pauses for hours.
        let driver = tokio::spawn(scrub_forever(move || vec![listed.clone()], 1));
        let held = || Arc::strong_count(&store.inner);
        let paused = tokio::time::timeout(Duration::from_secs(30), async {
            while store.scrub_status().blocks == 0 || held() != 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        // Two: this test's handle and the one the listing closure keeps.
        let count = held();
        driver.abort();
        assert!(
            paused.is_ok(),
            "the paused scrub still holds {count} handles"
        );
        assert_eq!(count, 2);
    }
}
