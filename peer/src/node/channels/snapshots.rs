//! Taking a channel's snapshot, and joining a channel from one (see [`crate::snapshot`]
//! for what is trusted and [`ordo_ledger::snapshot`] for the files).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use ordo_ledger::snapshot::{self, SnapshotManifest, SnapshotWriter, SNAPSHOTS_DIR};
use ordo_ledger::BlockStore;

use super::{ChannelError, PeerChannel, PeerChannels};
use crate::committer::Committer;
use crate::deliver::{channel_endpoints, fetch_block, FetchError};
use crate::snapshot::{check_against_chain, check_signer, sign, snapshot_config, TrustError};

/// The least time given to each orderer to serve a block the snapshot is checked against.
const FETCH_TIMEOUT_MIN: Duration = Duration::from_secs(5);

impl PeerChannels {
    /// Takes a snapshot of channel `id` at its committed height into
    /// `<data_dir>/snapshots/<id>-<height>/`, signed by this peer, while the channel keeps
    /// committing. Serialised with joins, removals, backups and other snapshots.
    pub async fn snapshot(
        &self,
        id: &str,
        now_ms: u64,
    ) -> Result<(SnapshotManifest, PathBuf), ChannelError> {
        let _guard = self.admin_lock.lock().await;
        let ch = self
            .get(id)
            .ok_or_else(|| ChannelError::NotFound(id.to_string()))?;
        let ledger = ch.ledger.clone();
        drop(ch);
        let parent = self.dirs.data_dir().join(SNAPSHOTS_DIR);
        let identity = self.settings.identity.clone();
        let id = id.to_string();
        let started = std::time::Instant::now();
        // Reading the state and writing the files is blocking work.
        let done = tokio::task::spawn_blocking(move || -> Result<_, ChannelError> {
            let mut writer = SnapshotWriter::begin(&parent, &id)?;
            let mut manifest = writer.write(&ledger, now_ms, identity.cert_bytes())?;
            sign(&mut manifest, &identity);
            let dir = writer.finish(&manifest)?;
            Ok((manifest, dir))
        })
        .await
        .map_err(|e| ChannelError::Dir(std::io::Error::other(e.to_string())))??;
        info!(
            channel = %done.0.channel_id,
            height = done.0.height,
            dir = %done.1.display(),
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        Ok(done)
    }

    /// Joins a channel from the snapshot in `path` (absolute, or a name under
    /// `<data_dir>/snapshots/`): checks the manifest, its signer and the snapshot against
    /// the orderers' chain, imports it into a new ledger that is moved into place only
    /// once complete, then follows the orderers from the snapshot's height. Refused,
    /// with nothing stored, when any check fails, the snapshot is not of
    /// `expected_channel` (when given) or the channel is already joined.
    pub async fn join_snapshot(
        &self,
        path: &str,
        expected_channel: Option<&str>,
    ) -> Result<Arc<PeerChannel>, ChannelError> {
        let _guard = self.admin_lock.lock().await;
        let dir = self.snapshot_dir(path)?;
        let read_dir = dir.clone();
        let (manifest, config_block) = tokio::task::spawn_blocking(move || {
            let manifest = snapshot::read_manifest(&read_dir)?;
            let config_block = snapshot::read_config_block(&read_dir, &manifest)?;
            Ok::<_, ChannelError>((manifest, config_block))
        })
        .await
        .map_err(|e| ChannelError::Dir(std::io::Error::other(e.to_string())))??;
        if let Some(want) = expected_channel.filter(|c| *c != manifest.channel_id) {
            return Err(TrustError::Manifest(format!(
                "the snapshot is of channel {:?}, not {want:?}",
                manifest.channel_id
            ))
            .into());
        }
        let cfg = snapshot_config(&manifest, &config_block)?;
        let id = manifest.channel_id.clone();
        if self.get(&id).is_some() {
            return Err(ChannelError::AlreadyExists(id));
        }
        let now_secs = ordo_proto::now_ms() / 1000;
        check_signer(&manifest, &cfg, now_secs)?;

        if let Some(trust) = &self.settings.trust {
            // The orderers' TLS roots must be trusted before they can be asked.
            trust.set_channel(&id, ordo_node::ChannelTrust::from_config(&cfg));
        }
        let checked = self
            .check_with_orderers(&manifest, &config_block, &cfg)
            .await;
        if let Err(e) = checked {
            if let Some(trust) = &self.settings.trust {
                trust.remove_channel(&id);
            }
            return Err(e);
        }

        let dirs = self.dirs.clone();
        let install_id = id.clone();
        let started = std::time::Instant::now();
        let installed = tokio::task::spawn_blocking(move || {
            dirs.install(&install_id, |tmp| -> Result<(), ChannelError> {
                let store = BlockStore::open(tmp)?;
                snapshot::import(&store, &dir, &manifest)?;
                Ok(())
            })
        })
        .await
        .map_err(|e| ChannelError::Dir(std::io::Error::other(e.to_string())))?;
        let final_dir = match installed {
            Ok(d) => d,
            Err(e) => {
                if let Some(trust) = &self.settings.trust {
                    trust.remove_channel(&id);
                }
                return Err(e);
            }
        };
        let started_channel = Committer::open(BlockStore::open(&final_dir)?)
            .map_err(ChannelError::from)
            .and_then(|c| self.start(id.clone(), c));
        let ch = match started_channel {
            Ok(ch) => ch,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&final_dir);
                return Err(e);
            }
        };
        info!(
            channel = %id,
            height = ch.ledger.height(),
            import_ms = started.elapsed().as_millis() as u64,
            "channel joined from a snapshot"
        );
        self.channels
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, ch.clone());
        Ok(ch)
    }

    /// The snapshot directory a request names: an absolute path as is; otherwise one name
    /// under `<data_dir>/snapshots/` (no separators, no `..`).
    fn snapshot_dir(&self, path: &str) -> Result<PathBuf, ChannelError> {
        let p = Path::new(path);
        if p.is_absolute() {
            return Ok(p.to_path_buf());
        }
        ordo_ledger::backup::validate_name(path).map_err(|e| {
            ChannelError::Snapshot(snapshot::SnapshotError::Manifest(format!(
                "snapshot path: an absolute path or a name under {SNAPSHOTS_DIR}/: {e}"
            )))
        })?;
        Ok(self.dirs.data_dir().join(SNAPSHOTS_DIR).join(path))
    }

    /// Fetches block `height - 1` and the config block from the orderers and checks the
    /// snapshot against them.
    async fn check_with_orderers(
        &self,
        manifest: &SnapshotManifest,
        config_block: &ordo_proto::pb::common::Block,
        cfg: &ordo_proto::pb::common::ChannelConfig,
    ) -> Result<(), ChannelError> {
        let mut endpoints = channel_endpoints(cfg);
        for e in &self.settings.static_endpoints {
            if !endpoints.contains(e) {
                endpoints.push(e.clone());
            }
        }
        let timeout =
            Duration::from_millis(self.settings.deliver.connect_timeout_ms).max(FETCH_TIMEOUT_MIN);
        let transport = self.settings.pool.transport();
        let identity = &self.settings.identity;
        let id = &manifest.channel_id;
        let last = fetch_block(
            transport,
            identity,
            id,
            &endpoints,
            manifest.height - 1,
            timeout,
        )
        .await
        .map_err(unserved)?;
        let ordered_config = fetch_block(
            transport,
            identity,
            id,
            &endpoints,
            manifest.config_block_number,
            timeout,
        )
        .await
        .map_err(unserved)?;
        check_against_chain(
            manifest,
            config_block,
            cfg,
            &ordered_config,
            &last,
            ordo_proto::now_ms() / 1000,
        )?;
        Ok(())
    }
}

/// A block no orderer served: the snapshot is refused when every orderer said it does not
/// hold the block (the chain is shorter than the snapshot claims), and the orderers are
/// unavailable otherwise.
fn unserved(e: FetchError) -> ChannelError {
    if e.not_held {
        ChannelError::Untrusted(TrustError::Chain(format!(
            "the orderers do not hold a block the snapshot needs: {e}"
        )))
    } else {
        ChannelError::OrderersUnavailable(e.detail)
    }
}
