//! The channels a peer serves: each with its ledger, a follower task (deliver client →
//! committer) and a status snapshot for Admin, Query and metrics.
//!
//! Joining is all or nothing: the ledger is built in `<id>.joining` holding the committed
//! genesis block and renamed into place only once complete.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use ordo_ledger::backup::{BackupError, BackupWriter, Manifest};
use ordo_ledger::snapshot::SnapshotError;
use ordo_ledger::{BlockStore, ChannelDirs, LedgerError};
use ordo_proto::config;
use ordo_proto::hash::Hash;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, ChannelConfig, Status};
use ordo_proto::verify::ChainVerifier;

use crate::committer::{CommitError, Committer};
use crate::deliver::{self, DeliverConfig, DeliverStats, FollowOptions};
use crate::snapshot::TrustError;

use super::metrics::CommitMetrics;
use commit_sink::CommitSink;

mod commit_sink;
mod snapshots;

/// Why a channel operation failed.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// Not served here.
    #[error("channel {0:?} not found")]
    NotFound(String),
    /// Already joined.
    #[error("channel {0:?} already joined")]
    AlreadyExists(String),
    /// The genesis block is unusable.
    #[error("invalid genesis block: {0}")]
    InvalidGenesis(String),
    /// Ledger or commit failure.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// Ledger failure.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Creating, moving or deleting a channel directory failed.
    #[error("channel directory: {0}")]
    Dir(#[from] std::io::Error),
    /// A backup was refused or failed.
    #[error("backup: {0}")]
    Backup(#[from] BackupError),
    /// Nothing to back up.
    #[error("this peer serves no channel: nothing to back up")]
    NothingToBackUp,
    /// A snapshot could not be taken, read or imported.
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    /// The snapshot is not trusted (`crate::snapshot`): nothing was imported.
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    /// No orderer could serve the blocks a snapshot is checked against.
    #[error("checking the snapshot against the orderers: {0}")]
    OrderersUnavailable(String),
}

impl ChannelError {
    /// The status a client sees.
    pub fn status(&self) -> Status {
        match self {
            ChannelError::NotFound(_) => Status::NotFound,
            ChannelError::AlreadyExists(_) => Status::Conflict,
            ChannelError::InvalidGenesis(_) => Status::BadRequest,
            ChannelError::Backup(e) => e.status(),
            ChannelError::NothingToBackUp => Status::BadRequest,
            ChannelError::Snapshot(SnapshotError::AlreadyExists(_)) => Status::Conflict,
            ChannelError::Snapshot(SnapshotError::Manifest(_) | SnapshotError::File { .. }) => {
                Status::BadRequest
            }
            // A snapshot directory the peer cannot read is the request's mistake too.
            ChannelError::Snapshot(SnapshotError::Io { .. }) => Status::BadRequest,
            ChannelError::Untrusted(_) => Status::BadRequest,
            ChannelError::OrderersUnavailable(_) => Status::ServiceUnavailable,
            _ => Status::InternalServerError,
        }
    }
}

/// What the follower last committed.
#[derive(Debug, Clone)]
pub struct ChannelStatus {
    /// Committed blocks.
    pub height: u64,
    /// Commit hash after the last block.
    pub commit_hash: Hash,
    /// Hash of the last block.
    pub last_block_hash: Option<Hash>,
    /// Configuration in force.
    pub config: Arc<ChannelConfig>,
    /// The configuration's MSP, with its cache of verified certificates: Admin and Query
    /// check requesters against it without rebuilding it per request.
    pub msp: Option<ordo_proto::cert::Msp>,
    /// Transactions committed since start, VALID ones.
    pub valid_txs: u64,
    /// Transactions committed since start, by non-VALID code name.
    pub invalid_txs: HashMap<String, u64>,
    /// Why the follower stopped, if it did.
    pub failed: Option<String>,
    /// Blocks committed since start.
    pub blocks_committed: u64,
    /// Time spent validating their transactions.
    pub validate_time: std::time::Duration,
    /// Time spent writing them with their state (fsync included).
    pub write_time: std::time::Duration,
}

/// One channel of the peer.
pub struct PeerChannel {
    id: String,
    ledger: BlockStore,
    status: RwLock<ChannelStatus>,
    /// The deliver client's counters.
    pub deliver_stats: Arc<DeliverStats>,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl PeerChannel {
    /// The channel id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The channel's ledger (reads only; the follower is its one writer).
    pub fn ledger(&self) -> &BlockStore {
        &self.ledger
    }

    /// A snapshot of the status.
    pub fn status(&self) -> ChannelStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

/// Settings every channel's follower shares.
#[derive(Clone)]
pub struct FollowerSettings {
    /// The peer's identity.
    pub identity: Identity,
    /// Orderer endpoints from the peer's configuration.
    pub static_endpoints: Vec<String>,
    /// Deliver client tunables.
    pub deliver: DeliverConfig,
    /// `/readyz` is ready while every channel is at most this many blocks behind.
    pub max_lag_blocks: u64,
    /// Cached channels to orderers, endorsers and external chaincode, over the peer's
    /// transport (TLS or plaintext).
    pub pool: Arc<ordo_node::ClientPool>,
    /// The peer's TLS trust, fed with each channel's TLS roots (`None` in plaintext).
    pub trust: Option<Arc<ordo_node::TrustStore>>,
    /// Where every channel's committer records its blocks (the `/metrics` endpoint reads
    /// them).
    pub metrics: CommitMetrics,
}

/// All channels of the peer.
pub struct PeerChannels {
    dirs: ChannelDirs,
    settings: FollowerSettings,
    channels: RwLock<HashMap<String, Arc<PeerChannel>>>,
    admin_lock: tokio::sync::Mutex<()>,
}

impl PeerChannels {
    /// Opens every channel under `<data_dir>/channels` and starts its follower.
    pub fn open(data_dir: &Path, settings: FollowerSettings) -> Result<Self, ChannelError> {
        let (dirs, ids) = ChannelDirs::open(&data_dir.join("channels"))?;
        let me = Self {
            dirs,
            settings,
            channels: RwLock::new(HashMap::new()),
            admin_lock: tokio::sync::Mutex::new(()),
        };
        for name in ids {
            let committer = Committer::open(BlockStore::open(&me.dirs.path(&name))?)?;
            let ch = me.start(name.clone(), committer)?;
            me.channels
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name, ch);
        }
        Ok(me)
    }

    fn start(&self, id: String, committer: Committer) -> Result<Arc<PeerChannel>, ChannelError> {
        let (cfg, cfg_block) = committer.config();
        let (cfg, cfg_block) = (cfg.clone(), cfg_block);
        let height = committer.height();
        let last_hash = committer
            .ledger()
            .last_hash()
            .unwrap_or(ordo_proto::block::GENESIS_PREVIOUS_HASH);
        let verifier = ChainVerifier::resume(height, last_hash, cfg.clone(), cfg_block)
            .map_err(|e| ChannelError::InvalidGenesis(e.to_string()))?;
        if let Some(trust) = &self.settings.trust {
            // The orderers' TLS roots must be trusted before the follower dials them.
            trust.set_channel(&id, ordo_node::ChannelTrust::from_config(&cfg));
        }
        let mut opts = FollowOptions::new(id.clone(), self.settings.identity.clone(), verifier);
        opts.static_endpoints = self.settings.static_endpoints.clone();
        opts.config = self.settings.deliver.clone();
        opts.transport = self.settings.pool.transport().clone();
        let channel = Arc::new(PeerChannel {
            id: id.clone(),
            ledger: committer.ledger().clone(),
            status: RwLock::new(ChannelStatus {
                height,
                commit_hash: committer.commit_hash(),
                last_block_hash: committer.ledger().last_hash(),
                msp: ordo_proto::cert::Msp::from_config(&cfg).ok(),
                config: Arc::new(cfg),
                valid_txs: 0,
                invalid_txs: HashMap::new(),
                failed: None,
                blocks_committed: 0,
                validate_time: std::time::Duration::ZERO,
                write_time: std::time::Duration::ZERO,
            }),
            deliver_stats: opts.stats.clone(),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        });
        let sink = CommitSink::new(committer, channel.clone(), self.settings.metrics.clone());
        let stop = channel.stop.clone();
        let ch = channel.clone();
        let task = tokio::spawn(async move {
            info!(channel = %ch.id, height, "following the ordering service");
            if let Err(e) = deliver::follow(opts, sink, stop).await {
                error!(channel = %ch.id, error = %e, "the channel stopped committing");
                ch.status.write().unwrap_or_else(|p| p.into_inner()).failed = Some(e.to_string());
            }
        });
        *channel.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(channel)
    }

    /// The settings every follower shares (identity, static orderer endpoints).
    pub fn settings(&self) -> &FollowerSettings {
        &self.settings
    }

    /// The channel `id`.
    pub fn get(&self, id: &str) -> Option<Arc<PeerChannel>> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every channel, sorted by id.
    pub fn list(&self) -> Vec<Arc<PeerChannel>> {
        let mut v: Vec<_> = self
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Joins a channel from its genesis block: commits it, then follows the orderers.
    pub async fn join(&self, genesis: Block) -> Result<Arc<PeerChannel>, ChannelError> {
        let _guard = self.admin_lock.lock().await;
        let cfg = config::config_from_block(&genesis)
            .map_err(|e| ChannelError::InvalidGenesis(e.to_string()))?;
        if ordo_proto::block::number(&genesis) != 0 || cfg.sequence != 0 {
            return Err(ChannelError::InvalidGenesis(
                "not block 0 with config sequence 0".into(),
            ));
        }
        let id = cfg.channel_id.clone();
        if self.get(&id).is_some() {
            return Err(ChannelError::AlreadyExists(id));
        }
        let final_dir = self
            .dirs
            .install(&id, |tmp| -> Result<(), ChannelError> {
                Committer::join(BlockStore::open(tmp)?, genesis)?;
                Ok(())
            })
            .map_err(|e| match e {
                ChannelError::Commit(CommitError::Config(m)) => ChannelError::InvalidGenesis(m),
                other => other,
            })?;
        let started = Committer::open(BlockStore::open(&final_dir)?)
            .map_err(ChannelError::from)
            .and_then(|c| self.start(id.clone(), c));
        let ch = match started {
            Ok(ch) => ch,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&final_dir);
                return Err(e);
            }
        };
        info!(channel = %id, "channel joined");
        self.channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, ch.clone());
        Ok(ch)
    }

    /// Leaves a channel and deletes its ledger and state.
    pub async fn remove(&self, id: &str) -> Result<(), ChannelError> {
        let _guard = self.admin_lock.lock().await;
        let ch = self
            .channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .ok_or_else(|| ChannelError::NotFound(id.to_string()))?;
        ch.stop().await;
        drop(ch);
        self.settings.metrics.forget(id);
        self.dirs.remove(id)?;
        if let Some(trust) = &self.settings.trust {
            trust.remove_channel(id);
        }
        info!(channel = %id, "channel removed");
        Ok(())
    }

    /// Writes backup `name` of channel `only` (or of every channel) into
    /// `<data_dir>/backups/<name>` while the channels keep committing: one RocksDB
    /// checkpoint per channel, each holding blocks, tx index, world state, history and
    /// commit hash at one block boundary ([`ordo_ledger::backup`]). Returns the manifest
    /// and the backup's directory once everything is durable. Serialised with joins,
    /// removals and other backups.
    pub async fn backup(
        &self,
        name: &str,
        only: Option<&str>,
        now_ms: u64,
    ) -> Result<(Manifest, std::path::PathBuf), ChannelError> {
        ordo_ledger::backup::validate_name(name)?;
        let _guard = self.admin_lock.lock().await;
        let chosen: Vec<(String, BlockStore)> = match only {
            Some(id) => {
                let ch = self
                    .get(id)
                    .ok_or_else(|| ChannelError::NotFound(id.to_string()))?;
                vec![(ch.id.clone(), ch.ledger.clone())]
            }
            None => self
                .list()
                .iter()
                .map(|c| (c.id.clone(), c.ledger.clone()))
                .collect(),
        };
        if chosen.is_empty() {
            return Err(ChannelError::NothingToBackUp);
        }
        let data_dir = self.dirs.data_dir().to_path_buf();
        let name = name.to_string();
        let node = self.settings.identity.subject().to_string();
        // Checkpoints flush memtables and fsync: blocking work, off the runtime's threads.
        let done = tokio::task::spawn_blocking(move || -> Result<_, ChannelError> {
            let mut writer = BackupWriter::begin(&data_dir, &name)?;
            for (id, ledger) in &chosen {
                writer.add_channel(id, ledger)?;
            }
            Ok(writer.finish(&node, "peer", now_ms)?)
        })
        .await
        .map_err(|e| ChannelError::Dir(std::io::Error::other(e.to_string())))??;
        info!(backup = %done.1.display(), channels = done.0.channels.len(), "backup written");
        Ok(done)
    }

    /// Refreshes the peer's TLS trust from every channel's config in force (committed
    /// config blocks may have changed TLS roots or revoked certificates).
    pub fn sync_trust(&self) {
        let Some(trust) = &self.settings.trust else {
            return;
        };
        for ch in self.list() {
            trust.set_channel(
                &ch.id,
                ordo_node::ChannelTrust::from_config(&ch.status().config),
            );
        }
    }

    /// Stops every follower (graceful shutdown; a block being committed finishes).
    pub async fn shutdown(&self) {
        for ch in self.list() {
            ch.stop().await;
        }
    }
}
