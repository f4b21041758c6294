//! Checking a channel's chain block by block, as a reader that trusts only the genesis
//! block: the hash chain, each block's Merkle data hash, its last-config metadata, and the
//! orderer signatures against the BlockValidation policy of the configuration in force —
//! which config blocks change as the chain goes.
//!
//! Used by `ordo block verify` and by a peer's deliver client before it commits anything.

use thiserror::Error;

use crate::block::{self, BlockError, GENESIS_PREVIOUS_HASH};
use crate::cert::Msp;
use crate::config::{self, ConfigError};
use crate::hash::Hash;
use crate::pb::common::{Block, ChannelConfig, Policy};

/// Why a block was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// Structure, chain link, data hash or signatures.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// Block 0 is not a genesis (config) block, or a config block carries a bad config.
    #[error("block {number}: {source}")]
    Config {
        /// The block.
        number: u64,
        /// What is wrong with its configuration.
        source: ConfigError,
    },
    /// The last-config metadata does not name the config block in force.
    #[error("block {number}: last config {found} but the last config block is {expected}")]
    LastConfig {
        /// The block.
        number: u64,
        /// What it claims.
        found: u64,
        /// What the chain says.
        expected: u64,
    },
    /// The configuration in force has no BlockValidation policy.
    #[error("block {number}: the configuration in force has no BlockValidation policy")]
    NoPolicy {
        /// The block.
        number: u64,
    },
}

/// The configuration a verifier checks signatures against.
#[derive(Debug, Clone)]
struct InForce {
    msp: Msp,
    policy: Policy,
    config: ChannelConfig,
    block: u64,
}

/// Verifies a chain one block at a time; see the module docs.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next: u64,
    prev: Hash,
    in_force: Option<InForce>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting the genesis block.
    pub fn new() -> Self {
        Self {
            next: 0,
            prev: GENESIS_PREVIOUS_HASH,
            in_force: None,
        }
    }

    /// A verifier resuming after block `next - 1` (whose hash is `prev`), with `config`
    /// (held in block `config_block`) in force: how a restarted peer continues.
    pub fn resume(
        next: u64,
        prev: Hash,
        config: ChannelConfig,
        config_block: u64,
    ) -> Result<Self, VerifyError> {
        let mut v = Self {
            next,
            prev,
            in_force: None,
        };
        v.apply(config, config_block)?;
        Ok(v)
    }

    /// The number of the block expected next.
    pub fn next_number(&self) -> u64 {
        self.next
    }

    /// The configuration in force (after the genesis block).
    pub fn config(&self) -> Option<&ChannelConfig> {
        self.in_force.as_ref().map(|f| &f.config)
    }

    /// Checks the next block at time `now_secs` (for certificate validity) and advances.
    /// Nothing changes when it fails.
    pub fn check(&mut self, b: &Block, now_secs: u64) -> Result<(), VerifyError> {
        let number = self.next;
        block::check_structure(b, Some((number, &self.prev)))?;
        let new_config = config::config_from_block(b).ok();
        if number == 0 {
            let cfg = config::config_from_block(b)
                .map_err(|source| VerifyError::Config { number, source })?;
            self.apply(cfg, 0)?;
        } else {
            let in_force = self
                .in_force
                .as_ref()
                .ok_or(VerifyError::NoPolicy { number })?;
            let found = b.metadata.as_ref().map(|m| m.last_config).unwrap_or(0);
            let expected = if new_config.is_some() {
                number
            } else {
                in_force.block
            };
            if found != expected {
                return Err(VerifyError::LastConfig {
                    number,
                    found,
                    expected,
                });
            }
            block::verify_signatures(b, &in_force.msp, &in_force.policy, now_secs)?;
            if let Some(cfg) = &new_config {
                let want = in_force.config.sequence + 1;
                if cfg.sequence != want {
                    return Err(VerifyError::Config {
                        number,
                        source: ConfigError::Invalid(format!(
                            "config sequence {} (expected {want})",
                            cfg.sequence
                        )),
                    });
                }
            }
            if let Some(cfg) = new_config {
                self.apply(cfg, number)?;
            }
        }
        self.prev = block::hash(b);
        self.next += 1;
        Ok(())
    }

    fn apply(&mut self, config: ChannelConfig, number: u64) -> Result<(), VerifyError> {
        let msp = Msp::from_config(&config).map_err(|e| VerifyError::Config {
            number,
            source: ConfigError::Invalid(e.to_string()),
        })?;
        let policy = config
            .block_validation
            .clone()
            .ok_or(VerifyError::NoPolicy { number })?;
        self.in_force = Some(InForce {
            msp,
            policy,
            config,
            block: number,
        });
        Ok(())
    }
}
