//! The channels this node serves: each with its ledger, its chain support, its running
//! chain and its recent tx ids.
//!
//! Joining is all or nothing: the ledger is built in `<id>.joining`, holding the genesis
//! block, and renamed into place only once complete; a crash in between leaves a
//! `.joining` directory that the next start removes.
//!
//! A raft channel can also be joined while it runs, from a later config block that names
//! this node as a consenter (after a config update added it): the node pulls the chain up
//! to that block from the other consenters, verifies it from the genesis block on and
//! checks that it ends in the block the admin gave, then starts raft right after the
//! entry that carried that block.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::info;

use ordo_consensus::catch_up::{self, BlockSource, CatchUpError, RetryPolicy, Target};
use ordo_consensus::chain::BoxFuture;
use ordo_consensus::raft::prepare_join;
use ordo_consensus::{Chain, ChainError, ChainSupport, Consenters};
use ordo_sdk::pull::PullError;

use crate::cluster::{connect, pull_blocks, ClusterDialer};
pub use crate::recent::RecentTxIds;
use ordo_ledger::{BlockStore, ChannelDirs, LedgerError, TxIndex};
use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, ChannelConfig, Consenter, Status};
use ordo_proto::verify::ChainVerifier;

/// Rounds of pulls over all consenters before a join from a later block gives up.
const JOIN_PULL_ROUNDS: u32 = 5;
/// How long one block pull of a join may take before the next consenter is tried.
const JOIN_PULL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a channel operation failed.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The channel does not exist here.
    #[error("channel {0:?} not found")]
    NotFound(String),
    /// The node already serves the channel.
    #[error("channel {0:?} already joined")]
    AlreadyExists(String),
    /// The genesis block is not acceptable.
    #[error("invalid genesis block: {0}")]
    InvalidGenesis(String),
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Creating, moving or deleting a channel directory failed.
    #[error("channel directory: {0}")]
    Dir(#[from] std::io::Error),
    /// The channel's chain could not start.
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// The channel support could not be built.
    #[error("channel: {0}")]
    Support(#[from] ordo_consensus::support::SupportError),
    /// A backup was refused or failed.
    #[error("backup: {0}")]
    Backup(#[from] ordo_ledger::BackupError),
    /// A backup that would hold no channel.
    #[error("nothing to back up: {0}")]
    NothingToBackUp(String),
}

impl RegistryError {
    /// The status a client sees.
    pub fn status(&self) -> Status {
        match self {
            RegistryError::NotFound(_) => Status::NotFound,
            RegistryError::AlreadyExists(_) => Status::Conflict,
            RegistryError::InvalidGenesis(_) => Status::BadRequest,
            RegistryError::Backup(e) => e.status(),
            RegistryError::NothingToBackUp(_) => Status::BadRequest,
            RegistryError::Chain(ChainError::Unsupported(_)) => Status::NotImplemented,
            _ => Status::InternalServerError,
        }
    }
}

/// Opens (or creates) a channel ledger the way an orderer keeps it: blocks by number, no
/// tx-id index (see [`TxIndex`]); a ledger created before keeps its index.
fn open_ledger(dir: &Path) -> Result<BlockStore, ordo_ledger::LedgerError> {
    BlockStore::open_with(dir, TxIndex::Off)
}

/// One channel served by this node.
pub struct ChannelHandle {
    /// Ledger, config and block writing.
    pub support: Arc<ChainSupport>,
    /// The running backend (the orderer sees nothing else of it: its metrics and, for
    /// raft, what the Cluster service hands it are on [`Chain`]).
    pub chain: Arc<dyn Chain>,
    /// Recently accepted tx ids.
    pub recent: Mutex<RecentTxIds>,
    /// Cancelled when the channel is removed or the node shuts down: Deliver streams end.
    pub closed: CancellationToken,
}

impl ChannelHandle {
    /// The channel id.
    pub fn id(&self) -> &str {
        self.support.channel_id()
    }
}

/// Per-channel bounds every channel of the node gets (from `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Recent tx ids remembered for duplicate detection.
    pub dedupe_window: usize,
    /// The committed-mode waiter registry's capacity and timeout.
    pub waiters: ordo_consensus::support::WaiterLimits,
}

/// All channels of the node.
pub struct Registry {
    dirs: ChannelDirs,
    signer: Identity,
    limits: ChannelLimits,
    node_name: String,
    /// The backends, by consensus type.
    consenters: Consenters,
    /// How connections to other consenters are dialled (block pulls of a join).
    dialer: ClusterDialer,
    /// The node's TLS trust, fed with each channel's TLS roots (`None` in plaintext).
    trust: Option<Arc<ordo_node::TrustStore>>,
    channels: RwLock<HashMap<String, Arc<ChannelHandle>>>,
    /// Serialises join and remove.
    admin_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Opens every channel found under `<data_dir>/channels` and starts its chain with
    /// the consenter of its consensus type.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        data_dir: &Path,
        signer: Identity,
        limits: ChannelLimits,
        node_name: &str,
        consenters: Consenters,
        dialer: ClusterDialer,
        trust: Option<Arc<ordo_node::TrustStore>>,
    ) -> Result<Self, RegistryError> {
        let (dirs, ids) = ChannelDirs::open(&data_dir.join("channels"))?;
        let reg = Self {
            dirs,
            signer,
            limits,
            node_name: node_name.to_string(),
            consenters,
            dialer,
            trust,
            channels: RwLock::new(HashMap::new()),
            admin_lock: tokio::sync::Mutex::new(()),
        };
        for name in ids {
            let ledger = open_ledger(&reg.dirs.path(&name))?;
            let handle = reg.start(ledger)?;
            info!(channel = %name, height = handle.support.height(), "channel opened");
            reg.write_map().insert(name, handle);
        }
        Ok(reg)
    }

    /// Feeds the node's TLS trust with what `config` says about `channel`.
    fn trust_channel(&self, channel: &str, config: &ChannelConfig) {
        if let Some(trust) = &self.trust {
            trust.set_channel(channel, ordo_node::ChannelTrust::from_config(config));
        }
    }

    /// Refreshes the node's TLS trust from every channel's config in force (config blocks
    /// may have changed TLS roots or revoked certificates since the last call).
    pub fn sync_trust(&self) {
        for h in self.list() {
            self.trust_channel(h.id(), &h.support.state().config);
        }
    }

    fn start(&self, ledger: BlockStore) -> Result<Arc<ChannelHandle>, RegistryError> {
        let recent = RecentTxIds::from_ledger(&ledger, self.limits.dedupe_window)?;
        let support = Arc::new(
            ChainSupport::new(ledger, self.signer.clone())?.with_waiter_limits(self.limits.waiters),
        );
        self.trust_channel(support.channel_id(), &support.state().config);
        let closed = CancellationToken::new();
        let chain = self
            .consenters
            .get(support.state().consensus_type())?
            .handle_chain(support.clone(), closed.clone())?;
        Ok(Arc::new(ChannelHandle {
            support,
            chain,
            recent: Mutex::new(recent),
            closed,
        }))
    }

    /// Starts the channel whose directory a join just installed; a channel that cannot
    /// start leaves no directory behind (the join is all or nothing).
    fn start_installed(&self, dir: &Path) -> Result<Arc<ChannelHandle>, RegistryError> {
        let started = open_ledger(dir)
            .map_err(RegistryError::from)
            .and_then(|l| self.start(l));
        if started.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        started
    }

    fn my_consenter<'c>(&self, config: &'c ChannelConfig) -> Option<&'c Consenter> {
        config
            .orderer
            .as_ref()?
            .consenters
            .iter()
            .find(|c| c.certificate == *self.signer.cert_bytes())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<ChannelHandle>>> {
        self.channels.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The channel `id`, if served here.
    pub fn get(&self, id: &str) -> Option<Arc<ChannelHandle>> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every channel, sorted by id.
    pub fn list(&self) -> Vec<Arc<ChannelHandle>> {
        let mut v: Vec<_> = self
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id().cmp(b.id()));
        v
    }

    /// Joins a channel from its genesis block, or a running raft channel from a later
    /// config block that names this node as a consenter (see the module docs).
    pub async fn join(&self, genesis: Block) -> Result<Arc<ChannelHandle>, RegistryError> {
        let _guard = self.admin_lock.lock().await;
        if block::number(&genesis) != 0 {
            return self.join_running(genesis).await;
        }
        block::check_structure(&genesis, Some((0, &block::GENESIS_PREVIOUS_HASH)))
            .map_err(|e| RegistryError::InvalidGenesis(e.to_string()))?;
        let cfg = config::config_from_block(&genesis)
            .map_err(|e| RegistryError::InvalidGenesis(e.to_string()))?;
        if cfg.sequence != 0 {
            return Err(RegistryError::InvalidGenesis(
                "config sequence is not 0".into(),
            ));
        }
        let id = cfg.channel_id.clone();
        if self.get(&id).is_some() {
            return Err(RegistryError::AlreadyExists(id));
        }
        let final_dir = self.dirs.install(&id, |tmp| -> Result<(), RegistryError> {
            open_ledger(tmp)?.append(&genesis)?;
            Ok(())
        })?;
        let handle = self.start_installed(&final_dir)?;
        info!(channel = %id, "channel joined");
        self.write_map().insert(id, handle.clone());
        Ok(handle)
    }

    async fn join_running(&self, join_block: Block) -> Result<Arc<ChannelHandle>, RegistryError> {
        let number = block::number(&join_block);
        let invalid = |m: String| RegistryError::InvalidGenesis(m);
        block::check_structure(&join_block, None).map_err(|e| invalid(e.to_string()))?;
        let cfg = config::config_from_block(&join_block).map_err(|e| {
            invalid(format!(
                "block {number} is not a config block ({e}); join from the genesis block or a config block"
            ))
        })?;
        let orderer = cfg.orderer.clone().unwrap_or_default();
        if orderer.consensus_type != "raft" {
            return Err(invalid(format!(
                "a {} channel is joined from its genesis block, not from block {number}",
                orderer.consensus_type
            )));
        }
        let me = self.my_consenter(&cfg).ok_or_else(|| {
            invalid(format!(
                "block {number} does not name this orderer among the consenters"
            ))
        })?;
        let my_id = me.id.clone();
        let id = cfg.channel_id.clone();
        if self.get(&id).is_some() {
            return Err(RegistryError::AlreadyExists(id));
        }
        let sources: Vec<Consenter> = orderer
            .consenters
            .iter()
            .filter(|c| c.id != my_id)
            .cloned()
            .collect();
        info!(channel = %id, block = number, "joining a running raft channel: pulling its blocks from the other consenters");
        let signer = self.signer.clone();
        // The other consenters' TLS roots come with the join block's config.
        self.trust_channel(&id, &cfg);
        let handle = tokio::runtime::Handle::current();
        let final_dir = tokio::task::block_in_place(|| {
            self.dirs.install(&id, |tmp| -> Result<(), RegistryError> {
                let store = open_ledger(tmp)?;
                handle.block_on(onboard(
                    &store,
                    &signer,
                    &id,
                    &sources,
                    &join_block,
                    &self.dialer,
                ))?;
                prepare_join(store.consensus_log(), &join_block)?;
                Ok(())
            })
        })?;
        let handle = self.start_installed(&final_dir)?;
        info!(channel = %id, height = handle.support.height(), "channel joined from a config block");
        self.write_map().insert(id, handle.clone());
        Ok(handle)
    }

    /// Writes backup `name` of channel `only` (or of every channel) into
    /// `<data_dir>/backups/<name>` while the channels keep ordering: one RocksDB
    /// checkpoint per channel at a block boundary ([`ordo_ledger::backup`]). Returns the
    /// manifest and the backup's directory once everything is durable.
    ///
    /// Raft channels are left out (refused when named): a raft node's log and hard state
    /// (term, vote) are written outside the ledger's block lock, and a consenter put back
    /// to an earlier log and vote could vote twice in a term or drop entries it helped
    /// commit, losing committed blocks. A lost raft consenter is recovered by joining it
    /// again from the other consenters (`ordo channel join` with a later config block), not
    /// from a backup. Solo and kafka channels are backed up; see deploy/README.md for
    /// what restoring each means.
    pub async fn backup(
        &self,
        name: &str,
        only: Option<&str>,
        now_ms: u64,
    ) -> Result<(ordo_ledger::Manifest, std::path::PathBuf), RegistryError> {
        ordo_ledger::backup::validate_name(name)?;
        let _guard = self.admin_lock.lock().await;
        let refusal = |h: &ChannelHandle| {
            self.consenters
                .get(h.support.state().consensus_type())
                .ok()
                .and_then(|c| c.backup_refusal())
        };
        let handles: Vec<Arc<ChannelHandle>> = match only {
            Some(id) => {
                let h = self
                    .get(id)
                    .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
                if let Some(why) = refusal(&h) {
                    return Err(RegistryError::NothingToBackUp(format!(
                        "channel {id:?} is a {why}"
                    )));
                }
                vec![h]
            }
            None => self.list(),
        };
        let mut chosen = Vec::new();
        let mut skipped = Vec::new();
        for h in handles {
            match refusal(&h) {
                Some(why) => skipped.push((h.id().to_string(), why)),
                None => chosen.push((h.id().to_string(), h.support.ledger().clone())),
            }
        }
        if chosen.is_empty() {
            return Err(RegistryError::NothingToBackUp(match skipped.first() {
                None => "this orderer serves no channel".into(),
                Some((_, why)) => format!("every channel of this orderer is refused ({why})"),
            }));
        }
        let data_dir = self.dirs.data_dir().to_path_buf();
        let name = name.to_string();
        let node = self.node_name.clone();
        // Checkpoints flush memtables and fsync: blocking work, off the runtime's threads.
        let done = tokio::task::spawn_blocking(move || -> Result<_, RegistryError> {
            let mut writer = ordo_ledger::BackupWriter::begin(&data_dir, &name)?;
            for (id, ledger) in &chosen {
                writer.add_channel(id, ledger)?;
            }
            for (id, why) in &skipped {
                writer.skip_channel(id, *why);
            }
            Ok(writer.finish(&node, "orderer", now_ms)?)
        })
        .await
        .map_err(|e| RegistryError::Dir(std::io::Error::other(e.to_string())))??;
        info!(backup = %done.1.display(), channels = done.0.channels.len(), "backup written");
        Ok(done)
    }

    /// Stops serving a channel and deletes its ledger.
    pub async fn remove(&self, id: &str) -> Result<(), RegistryError> {
        let _guard = self.admin_lock.lock().await;
        let handle = self
            .write_map()
            .remove(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        handle.closed.cancel();
        handle.chain.halt().await;
        drop(handle);
        self.dirs.remove(id)?;
        if let Some(trust) = &self.trust {
            trust.remove_channel(id);
        }
        info!(channel = %id, "channel removed");
        Ok(())
    }

    /// Ends every channel's streams and halts every chain (graceful shutdown).
    pub async fn shutdown(&self) {
        let all = self.list();
        for h in &all {
            h.closed.cancel();
        }
        for h in all {
            h.chain.halt().await;
        }
    }
}

/// Fills `store` with blocks 0..=number of `join_block` pulled from `sources`, verified
/// from the genesis block on (through [`ordo_consensus::catch_up`]); the last one must be
/// `join_block` itself. A block that does not verify ends the join: the join block the
/// admin gave is most likely not this channel's.
async fn onboard(
    store: &BlockStore,
    signer: &Identity,
    channel: &str,
    sources: &[Consenter],
    join_block: &Block,
    dialer: &ClusterDialer,
) -> Result<(), RegistryError> {
    let sources: Vec<JoinSource<'_>> = sources
        .iter()
        .map(|consenter| JoinSource {
            consenter,
            dialer,
            signer,
            channel,
        })
        .collect();
    let sources: Vec<&dyn BlockSource> = sources.iter().map(|s| s as &dyn BlockSource).collect();
    let policy = RetryPolicy {
        pull_timeout: JOIN_PULL_TIMEOUT,
        pause: std::time::Duration::from_millis(500),
        max_rounds: Some(JOIN_PULL_ROUNDS),
        bad_block_is_fatal: true,
    };
    let filled = catch_up::fill_to(
        &sources,
        Target {
            number: block::number(join_block),
            hash: block::hash(join_block),
        },
        || store.height(),
        &mut ChainVerifier::new(),
        |b| store.append(&b).map_err(|e| e.to_string()),
        policy,
        &CancellationToken::new(),
    )
    .await;
    match filled {
        Ok(()) => Ok(()),
        Err(e @ CatchUpError::Pull(PullError::BadBlock { .. })) => {
            Err(RegistryError::InvalidGenesis(format!(
                "{e} (is the join block one of this channel's?)"
            )))
        }
        Err(e) => Err(ChainError::NotReady {
            reason: e.to_string(),
        }
        .into()),
    }
}

/// A consenter of the channel being joined, as a source of blocks over the Cluster
/// service.
struct JoinSource<'a> {
    consenter: &'a Consenter,
    dialer: &'a ClusterDialer,
    signer: &'a Identity,
    channel: &'a str,
}

impl BlockSource for JoinSource<'_> {
    fn name(&self) -> String {
        self.consenter.id.clone()
    }

    fn pull(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Block>, String>> {
        Box::pin(async move {
            let conn = connect(self.consenter, self.dialer).map_err(|e| e.to_string())?;
            pull_blocks(conn, self.signer, self.channel, start, end).await
        })
    }
}
