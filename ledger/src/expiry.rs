//! Transaction expiry on a peer's ledger: the expiry floor, and forgetting the tx ids
//! below it.
//!
//! A channel with a tx validity window refuses transactions signed below its **expiry
//! floor**, and a committed tx id signed below the floor no longer makes a transaction a
//! duplicate (`ordo-peer`'s validator, "Expiry"). So an index entry whose timestamp is
//! below the floor will never be asked about again, and the index need not keep it: this
//! bounds the `txids` column family to the ids of one window instead of every id ever
//! committed (at 1,600 tx/s, about 365 MiB an hour that would otherwise grow forever).
//!
//! | what | where |
//! |---|---|
//! | the floor | `meta` key `expiry_floor_ms` (`u64` BE), written by the commit of each block in its own batch (`StateCommit::expiry_floor_ms`), never lowered; absent = 0 |
//! | entries below it | dropped lazily by a compaction filter on `txids` (reads may still find them: the validator ignores them either way) |
//! | when they are compacted | [`BlockStore::compact_expired`], which the background pruner calls each round: a full compaction of `txids` once the floor moved [`EXPIRY_COMPACTION_STEP_MS`], and of `history` once the first block held moved past a whole window of held blocks |
//!
//! An entry without a timestamp (written before timestamps were kept, or by an orderer's
//! ledger) never expires. Snapshots carry the floor and leave out the entries below it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use rocksdb::compaction_filter::Decision;
use rocksdb::{BottommostLevelCompaction, CompactOptions};

use crate::tx_index::TxLocation;
use crate::{BlockStore, LedgerError, CF_HISTORY, CF_META, CF_TXIDS};

/// `meta` key of the expiry floor (ms, `u64` BE).
pub(crate) const META_EXPIRY_FLOOR: &[u8] = b"expiry_floor_ms";

/// How far the floor moves between two compactions of `txids` (ten minutes of the
/// ledger's clock): what the index holds beyond the window is at most this much of ids.
pub const EXPIRY_COMPACTION_STEP_MS: u64 = 10 * 60 * 1000;

/// Name of the compaction filter dropping tx-index entries below the floor.
const TXIDS_FILTER: &str = "ordo-txids-below-expiry-floor";

/// The `txids` compaction filter: drops entries signed below `floor` (ms). Entries
/// without a timestamp are kept.
pub(crate) fn txids_filter(
    floor: Arc<AtomicU64>,
) -> (
    &'static str,
    impl FnMut(u32, &[u8], &[u8]) -> Decision + Send + 'static,
) {
    (
        TXIDS_FILTER,
        move |_level: u32, _key: &[u8], value: &[u8]| match TxLocation::timestamp_of(value) {
            Some(at) if at < floor.load(Ordering::Relaxed) => Decision::Remove,
            _ => Decision::Keep,
        },
    )
}

/// Reads the recorded floor (0 when none is recorded).
pub(crate) fn read_floor(db: &crate::Db) -> Result<u64, LedgerError> {
    let meta = crate::cf(db, CF_META)?;
    match db.get_pinned_cf(meta, META_EXPIRY_FLOOR)? {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| LedgerError::Corrupt(format!("expiry floor of {} bytes", v.len()))),
    }
}

/// Where the last expiry compactions left off (in memory: after a restart the first round
/// compacts once).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CompactedAt {
    /// The floor when `txids` was last compacted.
    floor_ms: Option<u64>,
    /// The first block held when `history` was last compacted.
    first_block: Option<u64>,
}

/// What [`BlockStore::compact_expired`] compacted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryCompaction {
    /// `txids` was compacted (its entries below the floor dropped).
    pub txids: bool,
    /// `history` was compacted (its entries below the first block dropped).
    pub history: bool,
}

impl BlockStore {
    /// The expiry floor after the last committed block (ms; 0 when the channel never
    /// expired a transaction): tx-index entries signed below it no longer count.
    pub fn expiry_floor_ms(&self) -> u64 {
        self.inner.expiry_floor.load(Ordering::Acquire)
    }

    /// Compacts what expired since the last call, when enough did (module docs): `txids`
    /// once the floor moved [`EXPIRY_COMPACTION_STEP_MS`], `history` once the first block
    /// held moved by at least the number of blocks held. Blocking (a full compaction of
    /// those column families, which are bounded by the windows): call it from a
    /// background thread. Commits go on meanwhile.
    pub fn compact_expired(&self) -> Result<ExpiryCompaction, LedgerError> {
        let floor = self.expiry_floor_ms();
        let tip = self.tip();
        let last = *self
            .inner
            .compacted_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let txids_due = floor > 0
            && last
                .floor_ms
                .is_none_or(|at| floor.saturating_sub(at) >= EXPIRY_COMPACTION_STEP_MS);
        let held = tip.height.saturating_sub(tip.first).max(1);
        let history_due = tip.first > 0
            && last
                .first_block
                .is_none_or(|at| tip.first.saturating_sub(at) >= held);
        let mut opts = CompactOptions::default();
        // Other compactions (and so writes) go on while this one runs.
        opts.set_exclusive_manual_compaction(false);
        // The filter must see the bottommost files too: that is where old entries sit.
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        if txids_due {
            let cf = self.cf(CF_TXIDS)?;
            self.inner
                .db
                .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts);
        }
        if history_due {
            let cf = self.cf(CF_HISTORY)?;
            self.inner
                .db
                .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts);
        }
        let mut at = self
            .inner
            .compacted_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if txids_due {
            at.floor_ms = Some(floor);
        }
        if history_due {
            at.first_block = Some(tip.first);
        }
        Ok(ExpiryCompaction {
            txids: txids_due,
            history: history_due,
        })
    }

    /// Moves the in-memory floor (the filter's and the readers') to what a durable write
    /// just recorded.
    pub(crate) fn raise_expiry_floor(&self, floor_ms: u64) {
        self.inner
            .expiry_floor
            .fetch_max(floor_ms, Ordering::AcqRel);
    }
}

/// How often the compactor looks at its ledgers (each look that finds nothing due costs
/// two atomic reads and a lock).
const COMPACTOR_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs [`BlockStore::compact_expired`] on every ledger `ledgers()` lists, every
/// [`COMPACTOR_PERIOD`], until `stop` resolves: a peer's background job (an orderer's
/// ledger has no floor and no history). A failure is logged and retried next period.
pub fn spawn_compactor(
    ledgers: impl Fn() -> Vec<(String, BlockStore)> + Send + Sync + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    tokio::spawn(async move {
        let work = async {
            loop {
                tokio::time::sleep(COMPACTOR_PERIOD).await;
                for (channel, store) in ledgers() {
                    let done = tokio::task::spawn_blocking(move || {
                        let started = std::time::Instant::now();
                        (store.compact_expired(), started.elapsed())
                    })
                    .await;
                    match done {
                        Ok((Ok(c), took)) if c.txids || c.history => tracing::info!(
                            %channel,
                            txids = c.txids,
                            history = c.history,
                            took_ms = took.as_millis() as u64,
                            "compacted expired tx ids and pruned history"
                        ),
                        Ok((Ok(_), _)) => {}
                        Ok((Err(e), _)) => {
                            tracing::warn!(%channel, "compacting expired tx ids: {e}")
                        }
                        // The blocking pool is shutting down: so is the node.
                        Err(_) => return,
                    }
                }
            }
        };
        tokio::select! {
            _ = work => {}
            _ = stop => {}
        }
    });
}

#[cfg(test)]
mod tests;
