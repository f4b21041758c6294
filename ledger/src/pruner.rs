//! The background pruner: keeps each ledger within its retention window, one bounded step
//! at a time, paced so that it never competes with commits for the disk.
//!
//! Each round, for every ledger the node lists ([`PruneTarget`]), [`plan`] — a pure
//! function of the ledger's first block, height and size, the retention settings and the
//! backend's ceiling — says how far the next step may go, and [`BlockStore::prune_below`]
//! takes it (archiving first when an archive directory is set). The step is bounded
//! ([`STEP_BYTES`] of blocks at most), and the pruner then rests for as long as reading and
//! removing those bytes takes at `bytes_per_sec`, so a ledger that is far over its window
//! shrinks steadily instead of in one burst of I/O. Commits wait at most for the step's one
//! small write batch (the `prune` module).
//!
//! **The ceiling.** A consensus backend may still need blocks its ledger holds: raft the
//! block its last snapshot names (recovery walks back to it), every backend the last block.
//! The node passes the lowest block the backend needs as [`PruneTarget::ceiling`]; no step
//! goes beyond it, whatever the window says. When the ceiling holds a ledger above its
//! window the pruner says so once in the log and in [`PruneStatus::held_back_at`], rather
//! than silently exceeding the budget.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::Duration;

use crate::archive::Archive;
use crate::prune::PruneError;
use crate::BlockStore;

/// How much of a ledger's chain a node keeps. Both bounds apply when both are set; `None`
/// keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the newest this many blocks (at least 1) and remove the older ones.
    pub blocks: Option<u64>,
    /// Keep the chain's bytes on disk (`BlockStore::chain_bytes`) under this many.
    pub bytes: Option<u64>,
}

impl Retention {
    /// Whether the retention prunes at all.
    pub fn is_on(&self) -> bool {
        self.blocks.is_some() || self.bytes.is_some()
    }
}

/// One ledger the pruner looks after.
#[derive(Debug, Clone)]
pub struct PruneTarget {
    /// The channel (names its archive directory).
    pub channel: String,
    /// Its ledger.
    pub store: BlockStore,
    /// Its window.
    pub retention: Retention,
    /// The lowest block the consensus backend may still need: no step removes it.
    pub ceiling: u64,
}

/// What a ledger looked like when a step was planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerShape {
    /// The first block held.
    pub first: u64,
    /// The height.
    pub height: u64,
    /// The chain's bytes on disk.
    pub bytes: u64,
}

/// The largest step, in bytes of blocks: what one step reads (to archive) and removes.
pub const STEP_BYTES: u64 = 64 << 20;
/// The most blocks in one step, whatever their size.
pub const STEP_BLOCKS: u64 = 10_000;
/// A byte budget is pruned down to this fraction (in percent) of itself, so that a ledger
/// at its budget is not pruned by one block after every block.
pub const BYTES_LOW_WATER_PERCENT: u64 = 90;

/// The plan of one step: the block to become the first held, and whether the ceiling
/// stopped it short of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Prune below this block (`None`: nothing to do now).
    pub below: Option<u64>,
    /// The window wanted more removed than the ceiling allows: the block the ledger is
    /// held at.
    pub held_back_at: Option<u64>,
}

/// How far the next step on a ledger of `shape` may go under `retention` and `ceiling`:
/// a pure function, so that the rules can be tested without a disk.
///
/// - by blocks: the newest `retention.blocks` blocks are kept;
/// - by bytes: over the budget, enough of the oldest blocks (at the ledger's average block
///   size) go to bring it to [`BYTES_LOW_WATER_PERCENT`] of the budget;
/// - never the last block, never at or above `ceiling`, and at most [`STEP_BYTES`] or
///   [`STEP_BLOCKS`] in one step.
pub fn plan(shape: LedgerShape, retention: Retention, ceiling: u64) -> Planned {
    let LedgerShape {
        first,
        height,
        bytes,
    } = shape;
    let held = height.saturating_sub(first);
    if held <= 1 || !retention.is_on() {
        return Planned {
            below: None,
            held_back_at: None,
        };
    }
    let average = (bytes / held).max(1);
    // A window is pruned once it is a tenth over (at least one block), not after every
    // block: steps (and archive segments) stay few and large.
    let by_blocks = match retention.blocks {
        Some(keep) if held > keep.max(1) + keep / 10 => height.saturating_sub(keep.max(1)),
        _ => first,
    };
    let by_bytes = match retention.bytes {
        Some(budget) if bytes > budget => {
            let low_water = budget / 100 * BYTES_LOW_WATER_PERCENT;
            first + (bytes - low_water).div_ceil(average)
        }
        _ => first,
    };
    let wanted = by_blocks.max(by_bytes).min(height - 1);
    let allowed = wanted.min(ceiling);
    let step = (STEP_BYTES / average).clamp(1, STEP_BLOCKS);
    let below = allowed.min(first.saturating_add(step));
    Planned {
        below: (below > first).then_some(below),
        held_back_at: (allowed < wanted).then_some(allowed.max(first)),
    }
}

/// What the pruner did to one ledger since the node started, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStatus {
    /// Blocks removed.
    pub blocks: u64,
    /// Bytes of blocks removed.
    pub bytes: u64,
    /// Steps that failed (each logged).
    pub failures: u64,
    /// Where the consensus backend holds the ledger above its window, if it does.
    pub held_back_at: Option<u64>,
}

impl BlockStore {
    /// What the background pruner did to this ledger since the node started.
    pub fn prune_status(&self) -> PruneStatus {
        *self
            .inner
            .prune
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn update_prune_status(&self, f: impl FnOnce(&mut PruneStatus)) {
        f(&mut self
            .inner
            .prune
            .lock()
            .unwrap_or_else(PoisonError::into_inner));
    }
}

/// What one round did to one ledger.
#[derive(Debug)]
enum Round {
    Idle,
    Pruned { bytes: u64 },
    Failed(PruneError),
}

/// Plans and takes one step on `target` (blocking: RocksDB and the archive's files).
fn step(target: &PruneTarget, archive_root: Option<&Path>) -> Round {
    let store = &target.store;
    let shape = match store.chain_bytes() {
        Ok(bytes) => LedgerShape {
            first: store.first_block(),
            height: store.height(),
            bytes,
        },
        Err(e) => return Round::Failed(e.into()),
    };
    let planned = plan(shape, target.retention, target.ceiling);
    let was_held = store.prune_status().held_back_at;
    if planned.held_back_at != was_held {
        if let Some(at) = planned.held_back_at {
            tracing::warn!(
                channel = %target.channel,
                at,
                "pruning held back: the consensus backend still needs block {at} (raft keeps the block its last snapshot names), so the ledger stays above its retention window until the backend moves on"
            );
        }
        store.update_prune_status(|s| s.held_back_at = planned.held_back_at);
    }
    let Some(below) = planned.below else {
        return Round::Idle;
    };
    let archive = match archive_root.map(|root| Archive::open(root, &target.channel)) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(source)) => {
            return Round::Failed(PruneError::Archive {
                from: shape.first,
                to: below,
                source,
            })
        }
    };
    match store.prune_below(below, archive.as_ref()) {
        Ok(Some(s)) => {
            store.update_prune_status(|st| {
                st.blocks += s.to - s.from;
                st.bytes += s.bytes;
            });
            Round::Pruned { bytes: s.bytes }
        }
        Ok(None) => Round::Idle,
        Err(e) => Round::Failed(e),
    }
}

/// How long the pruner rests when no ledger needed a step.
const IDLE: Duration = Duration::from_secs(2);
/// How long a ledger whose step failed is left alone.
const AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Prunes every ledger `targets()` returns, one step per ledger per round, paced at
/// `bytes_per_sec`; never returns (drop the future to stop it). Targets are listed again
/// every round, so joined channels are picked up and removed ones let go. A failed step is
/// logged (once per kind of failure and ledger), counted, and retried after a rest.
pub async fn prune_forever(
    targets: impl Fn() -> Vec<PruneTarget>,
    archive_root: Option<PathBuf>,
    bytes_per_sec: u64,
) {
    let rate = bytes_per_sec.max(1) as f64;
    let mut resting: HashMap<PathBuf, tokio::time::Instant> = HashMap::new();
    loop {
        let mut owed = Duration::ZERO;
        let now = tokio::time::Instant::now();
        resting.retain(|_, until| *until > now);
        for target in targets() {
            let dir = target.store.dir().to_path_buf();
            if resting.contains_key(&dir) {
                continue;
            }
            let root = archive_root.clone();
            let done = tokio::task::spawn_blocking(move || {
                let r = step(&target, root.as_deref());
                if let Round::Failed(e) = &r {
                    target.store.update_prune_status(|s| s.failures += 1);
                    tracing::error!(channel = %target.channel, "pruning: {e}; retrying in {}s", AFTER_FAILURE.as_secs());
                }
                r
            })
            .await;
            match done {
                Ok(Round::Pruned { bytes }) => {
                    owed += Duration::from_secs_f64(bytes as f64 / rate);
                }
                Ok(Round::Idle) => {}
                Ok(Round::Failed(_)) => {
                    resting.insert(dir, now + AFTER_FAILURE);
                }
                // The blocking pool is shutting down: so is the node.
                Err(_) => return,
            }
        }
        tokio::time::sleep(if owed.is_zero() { IDLE } else { owed }).await;
    }
}

/// Runs [`prune_forever`] on a task until `stop` resolves. Nothing runs when no target can
/// ever prune (`any_retention` false: no window set anywhere in the node's config).
pub fn spawn(
    targets: impl Fn() -> Vec<PruneTarget> + Send + 'static,
    any_retention: bool,
    archive_root: Option<PathBuf>,
    bytes_per_sec: u64,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if !any_retention {
        tracing::info!("ledger pruning off (no [ledger] retain_blocks or retain_bytes)");
        return;
    }
    tracing::info!(
        bytes_per_sec,
        archive = ?archive_root,
        "ledger pruning on"
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = prune_forever(targets, archive_root, bytes_per_sec) => {}
            _ = stop => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(first: u64, height: u64, bytes: u64) -> LedgerShape {
        LedgerShape {
            first,
            height,
            bytes,
        }
    }

    const BLOCKS_100: Retention = Retention {
        blocks: Some(100),
        bytes: None,
    };

    #[test]
    fn a_block_window_keeps_the_newest_blocks() {
        let p = plan(shape(0, 250, 250_000), BLOCKS_100, u64::MAX);
        assert_eq!(p.below, Some(150));
        assert_eq!(p.held_back_at, None);
        // Within the window: nothing to do.
        assert_eq!(
            plan(shape(150, 250, 100_000), BLOCKS_100, u64::MAX).below,
            None
        );
        // A tenth over the window before a step, then down to the window.
        assert_eq!(
            plan(shape(0, 110, 110_000), BLOCKS_100, u64::MAX).below,
            None
        );
        assert_eq!(
            plan(shape(0, 111, 111_000), BLOCKS_100, u64::MAX).below,
            Some(11)
        );
        // No retention: nothing, however large.
        let off = Retention::default();
        assert_eq!(plan(shape(0, 1 << 40, 1 << 50), off, u64::MAX).below, None);
    }

    #[test]
    fn a_byte_budget_prunes_to_its_low_water_mark() {
        // 1000 blocks of 1 KB over a 500 KB budget: down to 450 KB, so 550 blocks go.
        let budget = Retention {
            blocks: None,
            bytes: Some(500_000),
        };
        assert_eq!(
            plan(shape(0, 1000, 1_000_000), budget, u64::MAX).below,
            Some(550)
        );
        assert_eq!(plan(shape(0, 1000, 499_999), budget, u64::MAX).below, None);
        // Both bounds: the stricter one wins.
        let both = Retention {
            blocks: Some(900),
            ..budget
        };
        assert_eq!(
            plan(shape(0, 1000, 1_000_000), both, u64::MAX).below,
            Some(550)
        );
    }

    #[test]
    fn the_last_block_and_the_ceiling_are_never_passed() {
        let one = Retention {
            blocks: Some(0),
            bytes: Some(0),
        };
        assert_eq!(plan(shape(0, 10, 10_000), one, u64::MAX).below, Some(9));
        assert_eq!(plan(shape(9, 10, 1_000), one, u64::MAX).below, None);
        let p = plan(shape(0, 250, 250_000), BLOCKS_100, 40);
        assert_eq!((p.below, p.held_back_at), (Some(40), Some(40)));
        let p = plan(shape(40, 250, 210_000), BLOCKS_100, 40);
        assert_eq!((p.below, p.held_back_at), (None, Some(40)));
    }

    #[test]
    fn steps_bring_a_real_ledger_within_its_byte_budget_and_the_archive_holds_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let arch = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path()).expect("open");
        let genesis = ordo_testkit::ChannelBuilder::new("bank")
            .org(&ordo_testkit::TestOrg::new("A"))
            .genesis(0);
        store.append(&genesis).expect("genesis");
        // ~12 MiB of 8 KiB blocks against a 4 MiB budget.
        crate::tests_support::append_large_blocks(&store, 1500);
        let budget = 4 << 20;
        let target = PruneTarget {
            channel: "bank".into(),
            store: store.clone(),
            retention: Retention {
                blocks: None,
                bytes: Some(budget),
            },
            ceiling: u64::MAX,
        };
        let mut steps = 0;
        while let Round::Pruned { .. } = step(&target, Some(arch.path())) {
            steps += 1;
            assert!(steps < 100, "the pruner does not converge");
        }
        let held = store.chain_bytes().expect("bytes");
        assert!(
            held <= budget,
            "{held} bytes held over a budget of {budget}"
        );
        assert!(store.first_block() > 0);
        // What was removed is in the archive, which ends where the ledger starts (these
        // blocks are unsigned, so only the segments are checked, not the chain).
        let archive = Archive::open(arch.path(), "bank").expect("archive");
        let segments = archive.segments().expect("segments");
        assert_eq!(segments.first().map(|s| s.first), Some(0));
        assert!(segments.windows(2).all(|w| w[0].last + 1 == w[1].first));
        assert_eq!(
            archive.next_block().expect("end"),
            Some(store.first_block())
        );
        assert_eq!(store.prune_status().blocks, store.first_block());
    }

    #[test]
    fn a_step_is_bounded_in_bytes_and_blocks() {
        // 1 MiB blocks: at most 64 in one step.
        let p = plan(shape(0, 1000, 1000 << 20), BLOCKS_100, u64::MAX);
        assert_eq!(p.below, Some(64));
        // Tiny blocks: at most STEP_BLOCKS.
        let p = plan(shape(0, 1_000_000, 1_000_000), BLOCKS_100, u64::MAX);
        assert_eq!(p.below, Some(STEP_BLOCKS));
    }
}
