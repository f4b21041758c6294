//! The config block in force at a ledger's tip: what a restarting peer validates the next
//! block with, and what a snapshot carries so that a peer joining from it can.
//!
//! The tip block's `last_config` metadata names the last config block the orderers
//! ordered. A peer may have judged that block invalid (its first validation code is not
//! VALID): then the configuration before it stays in force, so the walk goes back block
//! by block to the last config block committed as VALID. Below the first block held
//! (a ledger joined from a snapshot), the base's config block is the one in force
//! (`base` module).
//!
//! An orderer's ledger has no validation codes: there every config block the metadata
//! names is in force (the orderers validated it before ordering it). Pruning uses
//! [`BlockStore::config_in_force_at`] on both, to keep the config block in force at the
//! new first block as the base's.

use ordo_proto::config;
use ordo_proto::pb::common::Block;

use crate::{BlockStore, LedgerError};

/// The validation code of a transaction the validator accepted (`TxValidationCode::VALID`).
const VALID: u8 = 0;

impl BlockStore {
    /// The config block in force after the last committed block, and its number. Fails
    /// on an empty ledger, and with [`LedgerError::Corrupt`] when no valid config block
    /// can be found.
    pub fn config_in_force(&self) -> Result<(Block, u64), LedgerError> {
        let last = self
            .height()
            .checked_sub(1)
            .ok_or_else(|| LedgerError::Corrupt("the ledger is empty".into()))?;
        self.config_in_force_at(last)
    }

    /// The config block in force after block `last` (held, or the base's block), and its
    /// number.
    pub fn config_in_force_at(&self, last: u64) -> Result<(Block, u64), LedgerError> {
        let first = self.first_block();
        let base_config = || -> Result<(Block, u64), LedgerError> {
            let block = self.base()?.and_then(|b| b.config_block).ok_or_else(|| {
                LedgerError::Corrupt(format!(
                    "the ledger starts at block {first} but records no config block below it"
                ))
            })?;
            let number = ordo_proto::block::number(&block);
            Ok((block, number))
        };
        if last < first {
            return base_config();
        }
        let tip = self
            .block(last)?
            .ok_or_else(|| LedgerError::Corrupt(format!("last block {last} missing")))?;
        let mut candidate = if config::config_from_block(&tip).is_ok() {
            last
        } else {
            tip.metadata.as_ref().map(|m| m.last_config).unwrap_or(0)
        };
        loop {
            if candidate < first {
                return base_config();
            }
            let b = self
                .block(candidate)?
                .ok_or_else(|| LedgerError::Corrupt(format!("config block {candidate} missing")))?;
            // No codes at all: an orderer's block.
            let codes = b
                .metadata
                .as_ref()
                .map(|m| m.transaction_validation_codes.as_ref())
                .unwrap_or_default();
            let valid = codes.is_empty() || codes.first() == Some(&VALID);
            match config::config_from_block(&b) {
                Ok(_) if valid => return Ok((b, candidate)),
                _ if candidate == 0 => {
                    return Err(LedgerError::Corrupt(
                        "no valid config block in the ledger".into(),
                    ))
                }
                _ => candidate -= 1,
            }
        }
    }
}
