//! The channels this node serves: each with its ledger, its chain support, its running
//! chain and its recent tx ids.
//!
//! Joining is all or nothing: the ledger is built in `<id>.joining` (holding the genesis
//! block, or starting after a config block) and renamed into place only once complete; a
//! crash in between leaves a `.joining` directory that the next start removes.
//!
//! A raft or kafka channel can also be joined while it runs, from a later config block
//! (for raft, one that names this node as a consenter, after a config update added it),
//! **without its history**: the node asks the channel's other orderers for their block at
//! that number, and once one holds the same block (and none another) its ledger starts
//! right after it ([`BlockStore::start_after_config_block`]), holding no block below. The
//! backend then resumes from that block ([`ordo_consensus::Consenter::prepare_join`]): raft
//! right after the entry that carried it (the leader replicates the rest, or sends a
//! snapshot and the blocks are pulled), kafka at the partition offset recorded in it. The
//! join takes the same time at block 10 or at block 10 million, and works when every other
//! orderer has pruned the chain's start. Blocks below the join block are not held (Deliver
//! answers NOT_FOUND naming the first block held); they are in the other orderers' ledgers
//! or archives.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::info;

use ordo_consensus::{Chain, ChainError, ChainSupport, Consenters};

use crate::cluster::{connect, pull_blocks, ClusterDialer};
pub use crate::recent::RecentTxIds;
use ordo_ledger::{BlockStore, ChannelDirs, LedgerError, TxIndex};
use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, ChannelConfig, Consenter, Status};

/// Rounds of pulls over all consenters before a join from a later block gives up.
const JOIN_PULL_ROUNDS: u32 = 5;
/// How long a join waits for another orderer's copy of the join block (all are asked at
/// once; one block is small).
const JOIN_PULL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The pause between two rounds of pulls of a join.
const JOIN_PULL_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

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
            RegistryError::Chain(ChainError::NotReady { .. }) => Status::ServiceUnavailable,
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
        let consenter = self.consenters.get(&orderer.consensus_type)?.clone();
        if !consenter.joins_after_config_block() {
            return Err(invalid(format!(
                "a {} channel is joined from its genesis block, not from block {number}",
                orderer.consensus_type
            )));
        }
        let me = self.my_consenter(&cfg);
        if orderer.consensus_type == "raft" && me.is_none() {
            return Err(invalid(format!(
                "block {number} does not name this orderer among the consenters"
            )));
        }
        let my_id = me.map(|c| c.id.clone());
        let id = cfg.channel_id.clone();
        if self.get(&id).is_some() {
            return Err(RegistryError::AlreadyExists(id));
        }
        let sources: Vec<Consenter> = orderer
            .consenters
            .iter()
            .filter(|c| Some(&c.id) != my_id.as_ref())
            .cloned()
            .collect();
        if sources.is_empty() {
            return Err(invalid(format!(
                "block {number} names no other orderer to check it against and pull from; \
                 join from the genesis block"
            )));
        }
        info!(channel = %id, block = number, "joining a running channel after a config block, without its history");
        // The other orderers' TLS roots come with the join block's config.
        self.trust_channel(&id, &cfg);
        let agreed =
            confirm_join_block(&self.signer, &id, &sources, &join_block, &self.dialer).await?;
        // Writing the base syncs, and a kafka join asks the brokers: blocking work.
        let final_dir = tokio::task::block_in_place(|| {
            self.dirs.install(&id, |tmp| -> Result<(), RegistryError> {
                let store = open_ledger(tmp)?;
                store.start_after_config_block(&agreed)?;
                consenter.prepare_join(&store, &agreed)?;
                Ok(())
            })
        })?;
        let handle = self.start_installed(&final_dir)?;
        info!(channel = %id, first_block = number + 1, "channel joined after a config block");
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

/// Asks the other orderers of the channel for block `number` of `join_block` and returns
/// their copy once one of them holds the same block (its header hash) and none holds
/// another: the admin's block is then the channel's, and the copy carries the consensus
/// position (raft index, kafka offsets) that the node resumes from — metadata the block
/// hash does not cover, so it is taken from the orderers, not from the admin.
///
/// A different block at that number ends the join at once (the join block is not this
/// channel's, or not its block at that height). Orderers that cannot answer are retried
/// for [`JOIN_PULL_ROUNDS`] rounds; a block they no longer hold (pruned below it) means
/// the join block is too old: join from the latest config block.
async fn confirm_join_block(
    signer: &Identity,
    channel: &str,
    sources: &[Consenter],
    join_block: &Block,
    dialer: &ClusterDialer,
) -> Result<Block, RegistryError> {
    let number = block::number(join_block);
    let wanted = block::hash(join_block);
    let mut reasons = Vec::new();
    for round in 0..JOIN_PULL_ROUNDS {
        if round > 0 {
            tokio::time::sleep(JOIN_PULL_PAUSE).await;
        }
        reasons.clear();
        let mut agreed = None;
        // Every source at once: one unreachable orderer costs one timeout, not one each.
        let mut pulls = tokio::task::JoinSet::new();
        for source in sources {
            let (source, dialer, signer) = (source.clone(), dialer.clone(), signer.clone());
            let channel = channel.to_string();
            pulls.spawn(async move {
                let pulled = match connect(&source, &dialer) {
                    Ok(conn) => tokio::time::timeout(
                        JOIN_PULL_TIMEOUT,
                        pull_blocks(conn, &signer, &channel, number, number),
                    )
                    .await
                    .unwrap_or_else(|_| Err("timed out".into())),
                    Err(e) => Err(e.to_string()),
                };
                (source, pulled)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = pulls.join_next().await {
            match joined {
                Ok(answer) => answers.push(answer),
                Err(e) => reasons.push(format!("a pull task failed: {e}")),
            }
        }
        for (source, pulled) in answers {
            match pulled.map(|mut b| b.pop()) {
                Ok(Some(theirs)) if block::hash(&theirs) == wanted => {
                    agreed.get_or_insert(theirs);
                }
                Ok(Some(_)) => {
                    return Err(RegistryError::InvalidGenesis(format!(
                        "orderer {} holds another block {number} than the join block: is the join block this channel's?",
                        source.id
                    )))
                }
                Ok(None) => reasons.push(format!("{}: no block {number}", source.id)),
                Err(e) => reasons.push(format!("{}: {e}", source.id)),
            }
        }
        if let Some(block) = agreed {
            return Ok(block);
        }
    }
    Err(ChainError::NotReady {
        reason: format!(
            "no other orderer confirmed block {number} ({}); if they no longer hold it, join from the latest config block",
            reasons.join("; ")
        ),
    }
    .into())
}
