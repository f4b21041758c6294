//! [`ChainSupport`]: what the orderer gives each channel's backend — the ledger, the
//! signer, the configuration in force, block creation and writing, and commit
//! notifications.
//!
//! One concrete type rather than a trait: every backend (and the conformance suite) runs
//! against the real ledger, so there is nothing to mock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use ordo_ledger::{BlockStore, DataCheck, LedgerError, LogPosition};
use ordo_proto::block;
use ordo_proto::cert::Msp;
use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::hash::Hash;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{AckMode, Block, ChannelConfig};

use crate::cutter::BatchLimits;
use crate::filters::{self, FilterError};

/// Why a chain support could not be built or a block not written.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The ledger holds no usable configuration.
    #[error("channel configuration: {0}")]
    Config(String),
}

/// The configuration in force on a channel, with everything derived from it.
#[derive(Debug, Clone)]
pub struct ConfigState {
    /// The configuration.
    pub config: ChannelConfig,
    /// Number of the block that holds it.
    pub last_config_block: u64,
    /// Its org roots, with a certificate cache.
    pub msp: Msp,
    /// Org names in configuration order.
    pub org_names: Vec<String>,
    /// The batch limits.
    pub limits: BatchLimits,
    /// The batch timeout.
    pub batch_timeout: Duration,
    /// When Broadcast acknowledges.
    pub ack_mode: AckMode,
}

impl ConfigState {
    /// Derives the state from a validated configuration held in block `block_number`.
    pub fn new(config: ChannelConfig, block_number: u64) -> Result<Self, SupportError> {
        config::validate(&config).map_err(|e| SupportError::Config(e.to_string()))?;
        let msp = Msp::from_config(&config).map_err(|e| SupportError::Config(e.to_string()))?;
        let orderer = config.orderer.clone().unwrap_or_default();
        let limits = BatchLimits::from(&orderer.batch_size.unwrap_or_default());
        let ack_mode = AckMode::try_from(orderer.ack_mode).unwrap_or(AckMode::Enqueued);
        Ok(Self {
            org_names: config.orgs.iter().map(|o| o.name.clone()).collect(),
            msp,
            limits,
            batch_timeout: Duration::from_millis(orderer.batch_timeout_ms),
            ack_mode,
            last_config_block: block_number,
            config,
        })
    }

    /// The config sequence.
    pub fn sequence(&self) -> u64 {
        self.config.sequence
    }

    /// The consensus type ("solo", "kafka", "raft").
    pub fn consensus_type(&self) -> &str {
        self.config
            .orderer
            .as_ref()
            .map(|o| o.consensus_type.as_str())
            .unwrap_or("")
    }
}

use crate::waiters::CommitWaiters;
pub use crate::waiters::{CommitOutcome, NotWritten, WaiterError, WaiterLimits};

/// The channel services a backend uses.
#[derive(Debug)]
pub struct ChainSupport {
    channel_id: String,
    ledger: BlockStore,
    signer: Identity,
    state: RwLock<Arc<ConfigState>>,
    /// (number, hash) of the last block created (written or in flight).
    last_created: Mutex<(u64, Hash)>,
    waiters: CommitWaiters,
    stats: WriteStats,
}

/// What a channel's block writer has done since the node started: read by the metrics
/// endpoint, written once per block (relaxed atomics; no lock on the write path).
#[derive(Debug, Default)]
pub struct WriteStats {
    blocks: AtomicU64,
    envelopes: AtomicU64,
    write_micros: AtomicU64,
}

impl WriteStats {
    fn record(&self, envelopes: usize, took: Duration) {
        self.blocks.fetch_add(1, Ordering::Relaxed);
        self.envelopes
            .fetch_add(envelopes as u64, Ordering::Relaxed);
        self.write_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Blocks written.
    pub fn blocks(&self) -> u64 {
        self.blocks.load(Ordering::Relaxed)
    }

    /// Envelopes written, in all blocks.
    pub fn envelopes(&self) -> u64 {
        self.envelopes.load(Ordering::Relaxed)
    }

    /// Total time spent appending blocks to the ledger (including fsync).
    pub fn write_time(&self) -> Duration {
        Duration::from_micros(self.write_micros.load(Ordering::Relaxed))
    }
}

impl ChainSupport {
    /// Support for the channel whose ledger is `ledger` (which holds at least the genesis
    /// block); reads the configuration in force from the ledger.
    pub fn new(ledger: BlockStore, signer: Identity) -> Result<Self, SupportError> {
        let height = ledger.height();
        if height == 0 {
            return Err(SupportError::Config("empty ledger".into()));
        }
        // The last block's metadata names the config block in force; a pruned ledger
        // keeps it in its base when it was removed.
        let (config_block, last_config_number) = ledger.config_in_force()?;
        let config = config::config_from_block(&config_block)
            .map_err(|e| SupportError::Config(e.to_string()))?;
        let state = ConfigState::new(config, last_config_number)?;
        let last_hash = ledger.last_hash().unwrap_or(block::GENESIS_PREVIOUS_HASH);
        Ok(Self {
            channel_id: state.config.channel_id.clone(),
            last_created: Mutex::new((height, last_hash)),
            ledger,
            signer,
            state: RwLock::new(Arc::new(state)),
            waiters: CommitWaiters::new(WaiterLimits::default()),
            stats: WriteStats::default(),
        })
    }

    /// The channel id.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// The channel's ledger.
    pub fn ledger(&self) -> &BlockStore {
        &self.ledger
    }

    /// The node's signing identity.
    pub fn signer(&self) -> &Identity {
        &self.signer
    }

    /// The configuration in force.
    pub fn state(&self) -> Arc<ConfigState> {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The config sequence in force.
    pub fn sequence(&self) -> u64 {
        self.state().sequence()
    }

    /// Ledger height.
    pub fn height(&self) -> u64 {
        self.ledger.height()
    }

    /// Builds the block that follows the last created one, holding `data`.
    pub fn create_next_block(&self, data: Vec<Bytes>) -> Block {
        let mut last = self.last_created.lock().unwrap_or_else(|p| p.into_inner());
        let b = block::build(last.0, last.1, data);
        *last = (last.0 + 1, block::hash(&b));
        b
    }

    /// Signs and appends a normal block (synced), then tells committed-mode waiters.
    /// `logged_at`: where the consensus log already holds the block (see
    /// [`ordo_ledger::LogPosition`]); `None` stores it inline.
    pub fn write_block(
        &self,
        mut b: Block,
        consenter_metadata: Bytes,
        logged_at: Option<LogPosition>,
    ) -> Result<u64, SupportError> {
        let last_config = self.state().last_config_block;
        block::sign(&mut b, &self.signer, last_config, consenter_metadata);
        self.append_checked(&b, DataCheck::TrustBuilder, logged_at, None)
    }

    /// [`Self::write_block`] for a block whose envelopes' tx ids the caller knows (it built
    /// the block): waiters are told from `tx_ids` instead of decoding every envelope.
    pub fn write_proposed_block(
        &self,
        mut b: Block,
        consenter_metadata: Bytes,
        logged_at: Option<LogPosition>,
        tx_ids: &[String],
    ) -> Result<u64, SupportError> {
        let last_config = self.state().last_config_block;
        block::sign(&mut b, &self.signer, last_config, consenter_metadata);
        self.append_checked(&b, DataCheck::TrustBuilder, logged_at, Some(tx_ids))
    }

    /// Signs and appends a config block, then puts its configuration in force.
    pub fn write_config_block(
        &self,
        mut b: Block,
        consenter_metadata: Bytes,
        logged_at: Option<LogPosition>,
    ) -> Result<u64, SupportError> {
        let number = block::number(&b);
        let config =
            config::config_from_block(&b).map_err(|e| SupportError::Config(e.to_string()))?;
        let state = ConfigState::new(config, number)?;
        block::sign(&mut b, &self.signer, number, consenter_metadata);
        let n = self.append_checked(&b, DataCheck::TrustBuilder, logged_at, None)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
        Ok(n)
    }

    /// Signs and appends a block another node built (a replicated backend's follower, or
    /// a new leader applying its predecessor's blocks): the data hash is recomputed and
    /// checked, and a config block puts its configuration in force.
    pub fn write_replicated(
        &self,
        mut b: Block,
        consenter_metadata: Bytes,
        logged_at: Option<LogPosition>,
    ) -> Result<u64, SupportError> {
        let number = block::number(&b);
        let new_state = match config::config_from_block(&b) {
            Ok(config) => Some(ConfigState::new(config, number)?),
            Err(_) => None,
        };
        let last_config = match &new_state {
            Some(_) => number,
            None => self.state().last_config_block,
        };
        block::sign(&mut b, &self.signer, last_config, consenter_metadata);
        let n = self.append_checked(&b, DataCheck::Verify, logged_at, None)?;
        if let Some(state) = new_state {
            *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
        }
        // Whatever this node had built beyond this block is void now.
        self.reset_created();
        Ok(n)
    }

    /// Forgets blocks created but not written (a leader that lost its leadership, or
    /// whose proposals were dropped): the next block created follows the ledger's tip.
    pub fn reset_created(&self) {
        let mut last = self.last_created.lock().unwrap_or_else(|p| p.into_inner());
        *last = (
            self.ledger.height(),
            self.ledger
                .last_hash()
                .unwrap_or(block::GENESIS_PREVIOUS_HASH),
        );
    }

    /// Takes back `b`, the last block created, which will never be written (its proposal
    /// was dropped): the next block created takes its number and predecessor again, so
    /// blocks already created before it (in flight) stay valid.
    pub fn uncreate(&self, b: &Block) {
        let mut last = self.last_created.lock().unwrap_or_else(|p| p.into_inner());
        let number = block::number(b);
        if last.0 != number + 1 {
            return;
        }
        let prev = b
            .header
            .as_ref()
            .and_then(|h| Hash::try_from(h.previous_hash.as_ref()).ok());
        if let Some(prev) = prev {
            *last = (number, prev);
        }
    }

    /// Appends `b` inline, or as a reference to the consensus log entry that already
    /// holds it (`logged_at`: raft's committed entries, so each block is stored once).
    fn append_checked(
        &self,
        b: &Block,
        data_check: DataCheck,
        logged_at: Option<LogPosition>,
        known_tx_ids: Option<&[String]>,
    ) -> Result<u64, SupportError> {
        let started = std::time::Instant::now();
        let appended = match (logged_at, data_check) {
            (Some(at), check) => self.ledger.append_logged(b, at, check),
            (None, DataCheck::Verify) => self.ledger.append(b),
            (None, DataCheck::TrustBuilder) => self.ledger.append_built(b),
        };
        if let Err(e) = appended {
            // Keep block creation in step with what is really on disk.
            let mut last = self.last_created.lock().unwrap_or_else(|p| p.into_inner());
            *last = (
                self.ledger.height(),
                self.ledger
                    .last_hash()
                    .unwrap_or(block::GENESIS_PREVIOUS_HASH),
            );
            return Err(e.into());
        }
        let number = block::number(b);
        let envelopes = b.data.as_ref().map(|d| d.data.len()).unwrap_or(0);
        self.stats.record(envelopes, started.elapsed());
        self.notify_committed(b, number, known_tx_ids);
        Ok(number)
    }

    /// Counters of what this channel's block writer has done since start (for metrics).
    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    /// The same support with a waiter registry of these bounds (the node's `[limits]`);
    /// [`WaiterLimits::default`] otherwise.
    pub fn with_waiter_limits(mut self, limits: WaiterLimits) -> Self {
        self.waiters = CommitWaiters::new(limits);
        self
    }

    /// Registers interest in the block that will hold `tx_id` (committed ack mode).
    /// Refused when the channel's registry is full ([`WaiterLimits`]); a waiter not
    /// answered within the registry's timeout is told so ([`NotWritten::TimedOut`]).
    pub fn register_commit_waiter(
        &self,
        tx_id: &str,
    ) -> Result<oneshot::Receiver<CommitOutcome>, WaiterError> {
        self.waiters.register(tx_id, waiter_clock())
    }

    /// How long a committed-mode waiter waits for its block at most.
    pub fn commit_wait_timeout(&self) -> Duration {
        self.waiters.limits().timeout
    }

    /// Answers the committed-mode waiters past their deadline (see
    /// [`CommitWaiters::expire_due`]); the node calls it periodically for every channel.
    pub fn expire_commit_waiters(&self) {
        self.waiters.expire_due(waiter_clock());
    }

    /// Committed-mode waiters registered now (for metrics).
    pub fn commit_waiters(&self) -> usize {
        self.waiters.len()
    }

    /// Drops a waiter (the envelope was refused before ordering).
    pub fn cancel_commit_waiter(&self, tx_id: &str) {
        self.waiters.cancel(tx_id);
    }

    /// Tells the waiter of `tx_id` that its envelope was dropped, and why.
    pub fn notify_rejected(&self, tx_id: &str, reason: String) {
        self.waiters.reject(tx_id, reason);
    }

    /// Tells the waiters of block `number`'s envelopes; `known` are their tx ids when the
    /// writer knows them, else they are read from the block.
    fn notify_committed(&self, b: &Block, number: u64, known: Option<&[String]>) {
        if self.waiters.is_empty() {
            return;
        }
        let now = waiter_clock();
        if let Some(tx_ids) = known {
            self.waiters
                .commit_block(number, tx_ids.iter().map(String::as_str), now);
            return;
        }
        let tx_ids: Vec<String> = b
            .data
            .iter()
            .flat_map(|d| d.data.iter())
            .filter_map(envelope::tx_id_of)
            .collect();
        self.waiters
            .commit_block(number, tx_ids.iter().map(String::as_str), now);
    }

    /// Re-runs every filter on an envelope against the configuration now in force; used
    /// by backends when the config sequence moved after the envelope was first checked.
    pub fn revalidate(&self, envelope_bytes: &[u8]) -> Result<(), FilterError> {
        filters::revalidate(&self.state(), envelope_bytes, ordo_proto::now_ms() / 1000)
    }
}

impl ChainSupport {
    /// Tells every committed-mode waiter that its envelope will not be written (the chain
    /// stopped on a ledger failure).
    pub fn fail_all_waiters(&self, reason: &str) {
        self.waiters.fail_all(reason);
    }
}

/// What time it is for committed-mode waiter deadlines: tokio's clock, which is the real
/// monotonic clock in production and a paused, virtual one in tests that run a node under
/// `tokio::time::pause` (their deadlines of minutes pass in no real time). Outside a
/// runtime (a backend's writer thread) it is the real clock.
fn waiter_clock() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
