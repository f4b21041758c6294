//! Corruption found in a ledger's stored data: named (channel, block, file), remembered
//! for health checks and metrics, and logged once with the remedy.
//!
//! Every read of a block goes through [`BlockStore::checked`], which turns RocksDB's
//! `Corruption` errors into [`LedgerError::Corrupt`] naming the block, and records the
//! first fault of the store. RocksDB names the file behind a damaged table ("… in
//! /…/000012.sst"); behind a damaged blob it says only "Blob CRC mismatch", so the
//! ledger's blob files are then checked record by record ([`crate::blob_files`]) to name
//! the file (once per store: the check reads every blob file).
//!
//! A node shows a recorded fault in `/healthz` (503), in the metric
//! `ordo_{orderer,peer}_ledger_corrupt{channel}` and in the log line below, and answers
//! reads of the damaged block with DATA_LOSS. It keeps serving the rest: other blocks and
//! other channels are intact, and stopping would take them away too.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use crate::{BlockStore, LedgerError};

/// What an operator does about a corrupt ledger (also in the docs and the log line).
pub const REMEDY: &str = "stop the node and replace the channel's ledger: on a peer, \
     `ordo channel remove` then `ordo channel join` pulls every block again from the \
     orderers (or `ordo node restore` a backup); on an orderer, `ordo node restore` a \
     backup taken before the damage; `ordo ledger verify` checks the result before restart";

/// Corruption found in a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerFault {
    /// The ledger's directory (`<data_dir>/channels/<channel>`).
    pub dir: PathBuf,
    /// The block being read when the corruption showed, if a block read found it.
    pub block: Option<u64>,
    /// The damaged file, when known.
    pub file: Option<PathBuf>,
    /// What was found.
    pub detail: String,
}

impl LedgerFault {
    /// The channel: the ledger directory's name.
    pub fn channel(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl fmt::Display for LedgerFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "channel {:?}", self.channel())?;
        if let Some(b) = self.block {
            write!(f, ", block {b}")?;
        }
        match &self.file {
            Some(file) => write!(f, ", file {}", file.display())?,
            None => write!(f, ", ledger {}", self.dir.display())?,
        }
        write!(f, ": {}", self.detail)
    }
}

impl BlockStore {
    /// The first corruption this store found since it was opened, if any.
    pub fn fault(&self) -> Option<LedgerFault> {
        self.inner
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Passes `result` through, turning RocksDB corruption into [`LedgerError::Corrupt`]
    /// naming `block`, and recording the first corruption (see the module docs). A failed
    /// read of a block that is now below the first block held was cut short by pruning:
    /// it answers [`LedgerError::Pruned`] and is no fault.
    pub(crate) fn checked<T>(
        &self,
        block: Option<u64>,
        result: Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        if result.is_err() {
            // A block pruned while it was being read is gone, not damaged.
            if let Some(number) = block.filter(|n| *n < self.first_block()) {
                return Err(LedgerError::Pruned {
                    number,
                    first: self.first_block(),
                });
            }
        }
        let detail = match &result {
            Err(LedgerError::Storage(e)) if e.kind() == rocksdb::ErrorKind::Corruption => {
                e.to_string()
            }
            Err(LedgerError::Corrupt(why)) => why.clone(),
            _ => return result,
        };
        let fault = self.record_fault(block, detail);
        Err(LedgerError::Corrupt(fault.to_string()))
    }

    /// Records (the first time) and returns the fault. The search for the damaged file
    /// runs without the lock held, so health checks asking [`BlockStore::fault`]
    /// meanwhile are not held up by it.
    fn record_fault(&self, block: Option<u64>, detail: String) -> LedgerFault {
        let later = |first: &LedgerFault, block: Option<u64>, detail: String| {
            // Later faults are answered with their own block, not logged or searched for
            // again (the search reads every blob file).
            if first.block == block {
                first.clone()
            } else {
                LedgerFault {
                    dir: first.dir.clone(),
                    block,
                    file: None,
                    detail,
                }
            }
        };
        if let Some(first) = self.fault() {
            return later(&first, block, detail);
        }
        let fault = describe(&self.inner.dir, block, detail.clone());
        let mut slot = self
            .inner
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(first) => later(first, block, detail),
            None => {
                log(&fault);
                *slot = Some(fault.clone());
                fault
            }
        }
    }
}

/// Turns an error found while opening the ledger in `dir` into one naming the channel and
/// the damaged file (logged with the remedy); other errors pass through.
pub(crate) fn at_open(dir: &Path, error: LedgerError) -> LedgerError {
    let detail = match &error {
        LedgerError::Storage(e) if e.kind() == rocksdb::ErrorKind::Corruption => e.to_string(),
        LedgerError::Corrupt(why) => why.clone(),
        _ => return error,
    };
    let fault = describe(dir, None, detail);
    log(&fault);
    LedgerError::Corrupt(fault.to_string())
}

/// The fault, with the damaged file found where RocksDB's message does not name it.
fn describe(dir: &Path, block: Option<u64>, detail: String) -> LedgerFault {
    let mut fault = LedgerFault {
        dir: dir.to_path_buf(),
        block,
        file: None,
        detail,
    };
    if fault.detail.contains("Blob") {
        match crate::blob_files::find_damage(dir) {
            Ok(found) => {
                // The damaged record of this very block if there is one, else the first
                // damaged file.
                let pick = found
                    .iter()
                    .find(|d| block.is_some() && d.block_number() == block)
                    .or(found.first());
                if let Some(d) = pick {
                    fault.file = Some(d.file.clone());
                    fault.detail = format!("{} ({} at offset {})", fault.detail, d.why, d.offset);
                }
            }
            Err(e) => fault.detail = format!("{} (checking the blob files: {e})", fault.detail),
        }
    } else if let Some(file) = sst_named_in(&fault.detail) {
        fault.file = Some(file);
    }
    fault
}

/// The one log line of a fault.
fn log(fault: &LedgerFault) {
    tracing::error!(
        channel = %fault.channel(),
        block = ?fault.block,
        file = ?fault.file,
        detail = %fault.detail,
        remedy = REMEDY,
        "ledger corrupt"
    );
}

/// The table file a RocksDB corruption message names ("… in /dir/000012.sst …").
fn sst_named_in(message: &str) -> Option<PathBuf> {
    message
        .split_whitespace()
        .find(|w| w.ends_with(".sst"))
        .map(|w| PathBuf::from(w.trim_matches(|c: char| c == ',' || c == ':')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_file_is_read_from_rocksdb_s_message() {
        assert_eq!(
            sst_named_in(
                "Corruption: block checksum mismatch: stored = 1, computed = 2, type = 1  in /d/ch/000012.sst offset 0 size 4021"
            ),
            Some(PathBuf::from("/d/ch/000012.sst"))
        );
        assert_eq!(sst_named_in("Corruption: Blob CRC mismatch"), None);
    }

    #[test]
    fn a_fault_names_channel_block_and_file() {
        let f = LedgerFault {
            dir: PathBuf::from("/data/channels/payments"),
            block: Some(42),
            file: Some(PathBuf::from("/data/channels/payments/000009.blob")),
            detail: "Corruption: Blob CRC mismatch".into(),
        };
        assert_eq!(f.channel(), "payments");
        assert_eq!(
            f.to_string(),
            "channel \"payments\", block 42, file /data/channels/payments/000009.blob: \
             Corruption: Blob CRC mismatch"
        );
    }
}
