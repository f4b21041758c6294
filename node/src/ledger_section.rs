//! `[ledger]` of a node's config: the upkeep of its channel ledgers, the same on orderers
//! and peers — the background scrub, and retention (pruning with optional archiving).

use std::collections::BTreeMap;
use std::path::PathBuf;

use ordo_ledger::pruner::Retention;
use serde::{Deserialize, Serialize};

/// `[ledger]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// Bytes per second the background scrub reads, over all channels: it reads every
    /// block again and again, checking checksums, Merkle data hashes and hash links, so
    /// that damage on disk shows in health and metrics before a client asks for the
    /// damaged block (`ordo_ledger::scrub`). 0 turns it off. Default: 4 MiB/s (a 100 GB
    /// ledger is read about every seven hours).
    pub scrub_bytes_per_sec: u64,
    /// Keep only the newest this many blocks of each channel; older ones are removed in
    /// the background (archived first when `archive_dir` is set). 0, the default, keeps
    /// every block. A peer or orderer joining later needs a snapshot (peers) or a node
    /// that still holds the blocks it lacks.
    pub retain_blocks: u64,
    /// Keep each channel's blocks under this many bytes on disk (plus compaction slack:
    /// the removed part of a partly removed blob file, at most 16 MiB); the oldest go
    /// first. At least 32 MiB. 0, the default, sets no
    /// byte budget. With both set, the stricter applies.
    pub retain_bytes: u64,
    /// Where pruned blocks are archived before they are removed, one directory per
    /// channel of self-verifying segment files (`ordo block verify --archive DIR/<channel>`).
    /// Unset, the default: pruned blocks are not kept anywhere by this node.
    pub archive_dir: Option<PathBuf>,
    /// Bytes per second the pruner reads and removes, over all channels, so that catching
    /// up with a new window does not compete with commits. Default: 32 MiB/s.
    pub prune_bytes_per_sec: u64,
    /// Per-channel retention overriding `retain_blocks` and `retain_bytes`
    /// (`[ledger.channels.<id>]`).
    pub channels: BTreeMap<String, ChannelRetention>,
}

/// `[ledger.channels.<id>]`: one channel's retention; an absent key takes the node's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelRetention {
    /// As `[ledger] retain_blocks`, for this channel.
    pub retain_blocks: Option<u64>,
    /// As `[ledger] retain_bytes`, for this channel.
    pub retain_bytes: Option<u64>,
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self {
            scrub_bytes_per_sec: 4 * 1024 * 1024,
            retain_blocks: 0,
            retain_bytes: 0,
            archive_dir: None,
            prune_bytes_per_sec: 32 * 1024 * 1024,
            channels: BTreeMap::new(),
        }
    }
}

/// The smallest byte budget accepted: twice the compaction slack (one 16 MiB blob file
/// whose blocks are partly removed), so that the slack cannot dominate the budget.
pub const MIN_RETAIN_BYTES: u64 = 32 << 20;

impl LedgerSection {
    /// The retention of `channel`: its override, else the node's.
    pub fn retention(&self, channel: &str) -> Retention {
        let o = self.channels.get(channel);
        let blocks = o
            .and_then(|o| o.retain_blocks)
            .unwrap_or(self.retain_blocks);
        let bytes = o.and_then(|o| o.retain_bytes).unwrap_or(self.retain_bytes);
        Retention {
            blocks: (blocks > 0).then_some(blocks),
            bytes: (bytes > 0).then_some(bytes),
        }
    }

    /// Whether any channel could be pruned (the pruner runs only then).
    pub fn any_retention(&self) -> bool {
        self.retain_blocks > 0
            || self.retain_bytes > 0
            || self.channels.values().any(|c| {
                c.retain_blocks.is_some_and(|b| b > 0) || c.retain_bytes.is_some_and(|b| b > 0)
            })
    }

    /// Refuses settings that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let budgets = std::iter::once(("ledger.retain_bytes".to_string(), self.retain_bytes))
            .chain(self.channels.iter().filter_map(|(id, c)| {
                c.retain_bytes
                    .map(|b| (format!("ledger.channels.{id}.retain_bytes"), b))
            }));
        for (key, bytes) in budgets {
            if bytes > 0 && bytes < MIN_RETAIN_BYTES {
                return Err(format!(
                    "{key} = {bytes} is below the smallest budget, {MIN_RETAIN_BYTES} bytes (32 MiB): \
                     the compaction slack alone can reach one 16 MiB blob file"
                ));
            }
        }
        if self.prune_bytes_per_sec == 0 && self.any_retention() {
            return Err(
                "ledger.prune_bytes_per_sec must be positive when a retention is set".into(),
            );
        }
        if self.archive_dir.is_some() && !self.any_retention() {
            return Err(
                "ledger.archive_dir is set but no retain_blocks or retain_bytes: nothing would ever be archived"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_override_wins_key_by_key() {
        let mut s = LedgerSection {
            retain_blocks: 1000,
            ..Default::default()
        };
        s.channels.insert(
            "audit".into(),
            ChannelRetention {
                retain_blocks: Some(0),
                retain_bytes: Some(1 << 30),
            },
        );
        assert_eq!(
            s.retention("bank"),
            Retention {
                blocks: Some(1000),
                bytes: None
            }
        );
        assert_eq!(
            s.retention("audit"),
            Retention {
                blocks: None,
                bytes: Some(1 << 30)
            }
        );
        assert!(s.any_retention());
        assert!(!LedgerSection::default().any_retention());
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_key() {
        let small = LedgerSection {
            retain_bytes: 1 << 20,
            ..Default::default()
        };
        assert!(small
            .validate()
            .is_err_and(|e| e.starts_with("ledger.retain_bytes = 1048576 is below")));
        let mut per_channel = LedgerSection::default();
        per_channel.channels.insert(
            "bank".into(),
            ChannelRetention {
                retain_blocks: None,
                retain_bytes: Some(10),
            },
        );
        assert!(per_channel
            .validate()
            .is_err_and(|e| e.starts_with("ledger.channels.bank.retain_bytes = 10")));
        let idle_archive = LedgerSection {
            archive_dir: Some("/arch".into()),
            ..Default::default()
        };
        assert!(idle_archive
            .validate()
            .is_err_and(|e| e.contains("nothing would ever be archived")));
        assert!(LedgerSection::default().validate().is_ok());
    }
}
