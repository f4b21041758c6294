//! [`ValidationContext`]: everything about the channel a block is validated against.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use ordo_proto::cert::{CertError, Msp};
use ordo_proto::pb::common::{ChaincodeDefinition, ChannelConfig};
use thiserror::Error;

/// Transactions per stage-1 chunk, hence per batch of signature checks.
///
/// Fixed, never derived from the machine: 32 transactions with two endorsements each make
/// batches of about 100 signatures, where batch verification has most of its gain, while
/// a 500-transaction block still splits into 16 chunks to spread over the cores.
pub const DEFAULT_CHUNK_SIZE: usize = 128;

/// How stage 1 spreads its work. Neither field changes any result, only the speed (the
/// tests validate the same blocks with different values and compare).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatorOptions {
    /// Transactions per chunk; all signatures of a chunk are verified in one batch.
    pub chunk_size: NonZeroUsize,
    /// Most threads working on the chunks of one block (the calling thread included).
    pub max_threads: NonZeroUsize,
}

impl Default for ValidatorOptions {
    /// [`DEFAULT_CHUNK_SIZE`], and one thread per core the OS gives this process.
    fn default() -> Self {
        Self {
            chunk_size: NonZeroUsize::new(DEFAULT_CHUNK_SIZE).unwrap_or(NonZeroUsize::MIN),
            max_threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// Why a context could not be built from a channel configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContextError {
    /// An org's root keys are unusable.
    #[error("channel config: {0}")]
    Msp(#[from] CertError),
}

/// The channel configuration in force for a block, with what is derived from it, and the
/// time certificates are checked against.
///
/// Build one per configuration and keep it across blocks (clones share the MSP's cache of
/// verified certificates); call [`ValidationContext::set_now_secs`] before each block.
///
/// **Time and determinism.** Certificates are checked at the time the transaction (or
/// config update) says it was created, from its signed header — never a clock, and never
/// `now_secs`, so every peer reaches the same answer whenever it validates. `now_secs` is
/// kept for diagnostics only (how old a block is when validated).
#[derive(Debug, Clone)]
pub struct ValidationContext {
    config: ChannelConfig,
    msp: Msp,
    org_names: Vec<String>,
    chaincodes: HashMap<String, ChaincodeDefinition>,
    now_secs: u64,
    options: ValidatorOptions,
}

impl ValidationContext {
    /// The context of `config` at time `now_secs` (seconds since the Unix epoch), with
    /// default [`ValidatorOptions`].
    ///
    /// The configuration was validated when it was committed, so this only fails on root
    /// keys that do not parse. A chaincode whose endorsement policy is malformed is kept:
    /// its transactions fail ENDORSEMENT_POLICY_FAILURE. If two definitions share a name,
    /// the first one counts.
    pub fn new(config: ChannelConfig, now_secs: u64) -> Result<Self, ContextError> {
        let msp = Msp::from_config(&config)?;
        let org_names = config.orgs.iter().map(|o| o.name.clone()).collect();
        let mut chaincodes = HashMap::new();
        for def in &config.chaincodes {
            chaincodes
                .entry(def.name.clone())
                .or_insert_with(|| def.clone());
        }
        Ok(Self {
            config,
            msp,
            org_names,
            chaincodes,
            now_secs,
            options: ValidatorOptions::default(),
        })
    }

    /// The same context with other options.
    pub fn with_options(mut self, options: ValidatorOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the time certificates are checked against.
    pub fn set_now_secs(&mut self, now_secs: u64) {
        self.now_secs = now_secs;
    }

    /// The channel configuration in force.
    pub fn config(&self) -> &ChannelConfig {
        &self.config
    }

    /// The channel id.
    pub fn channel_id(&self) -> &str {
        &self.config.channel_id
    }

    /// The channel's membership service.
    pub fn msp(&self) -> &Msp {
        &self.msp
    }

    /// The channel's org names, in configuration order.
    pub fn org_names(&self) -> &[String] {
        &self.org_names
    }

    /// The definition of chaincode `name`, if the channel has one in force (a retired
    /// chaincode has none: it is not invoked, and its namespace is not written).
    pub fn chaincode(&self, name: &str) -> Option<&ChaincodeDefinition> {
        self.chaincodes.get(name).filter(|d| !d.retired)
    }

    /// The time certificates are checked against, seconds since the Unix epoch.
    pub fn now_secs(&self) -> u64 {
        self.now_secs
    }

    /// The channel's tx validity window in milliseconds; 0 when transactions never
    /// expire (validator docs, "Expiry").
    pub fn tx_validity_window_ms(&self) -> u64 {
        self.config.tx_validity_window_s.saturating_mul(1000)
    }

    /// How stage 1 spreads its work.
    pub fn options(&self) -> ValidatorOptions {
        self.options
    }
}
