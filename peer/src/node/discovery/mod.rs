//! Discovery: how a peer's gateway finds the channel's other peers without a list in its
//! configuration.
//!
//! **Announcing.** Every [`DiscoverySettings::interval`] (and at once for a channel just
//! joined), for each channel it serves, a peer signs a `PeerInfo` about itself (where it is reached, which of the channel's
//! chaincodes it can run, its height) and pushes it to every anchor peer the channel's
//! configuration names (`Organization.anchor_peers`) with `Discovery.Announce`; the
//! anchor answers every live announcement it holds, which the peer verifies and keeps.
//! Anchors announce to each other the same way, so each anchor knows every peer that
//! reaches any anchor, and every peer learns them all within two rounds (`announcer.rs`).
//!
//! **Trust.** Nothing relayed is taken on the relayer's word: each announcement is
//! verified by whoever receives it (`ordo_proto::discovery::verify`: a channel peer's
//! certificate, valid when it signed, its signature, fresh). After a configuration change
//! (an org removed, a CA replaced) the table is verified again against the new
//! configuration. Entries expire [`DiscoverySettings::ttl_ms`] after they were signed.
//!
//! **Use.** The gateway asks [`Discovery::endorsers`] for the live peers (not itself) of
//! a channel that run a chaincode, with their verified certificates, so it knows each
//! endorser's org before asking it and plans the fewest endorsements the policy needs.
//! `Discovery.Peers` shows a channel reader what this peer sees (`ordo channel info
//! --peers`).

mod announcer;
pub mod membership;
mod service;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ordo_proto::cert::VerifiedCert;
use ordo_proto::discovery::{self as announcement, AnnouncementError, VerifiedPeer};
use ordo_proto::hash::{sha256, Hash};
use ordo_proto::identity::Identity;
use ordo_proto::pb::discovery::{PeerInfo, SignedPeerInfo};

pub use announcer::spawn_announcer;
use membership::{Membership, Offered};
pub use service::DiscoveryService;

use super::channels::PeerChannel;
use super::endorser::RuntimeBindings;

/// Discovery tunables (the peer config's `[discovery]` section).
#[derive(Debug, Clone)]
pub struct DiscoverySettings {
    /// Whether this peer announces itself and its gateway uses what it learns.
    pub enabled: bool,
    /// Where other nodes reach this peer; `None`: nothing to announce (it still learns).
    pub endpoint: Option<String>,
    /// Time between announcement rounds.
    pub interval: Duration,
    /// How long an announcement counts after it was signed, ms.
    pub ttl_ms: u64,
}

/// A discovered endorser: where to reach it and who it is.
#[derive(Debug, Clone)]
pub struct Endorser {
    /// `host:port`.
    pub endpoint: String,
    /// Whether it announced the chaincode asked about.
    pub runs: bool,
    /// Its verified certificate (org, identity).
    pub cert: VerifiedCert,
}

/// The peer's view of every channel's peers.
pub struct Discovery {
    settings: DiscoverySettings,
    identity: Identity,
    own_hash: Hash,
    /// Which chaincodes this peer runs (announced as its chaincodes).
    bindings: RuntimeBindings,
    tables: Mutex<HashMap<String, Table>>,
}

/// One channel's table and the configuration it was verified under.
#[derive(Default)]
struct Table {
    membership: Membership,
    config_sequence: u64,
}

impl Discovery {
    /// Discovery for a peer signing with `identity` and running chaincodes as `bindings`
    /// say.
    pub fn new(settings: DiscoverySettings, identity: Identity, bindings: RuntimeBindings) -> Self {
        Self {
            own_hash: sha256(identity.cert_bytes()),
            settings,
            identity,
            bindings,
            tables: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &DiscoverySettings {
        &self.settings
    }

    /// Offers an announcement received for `channel`: verified unless it is exactly the one
    /// held, then kept if newer (see [`membership`]).
    pub fn accept(
        &self,
        channel: &PeerChannel,
        signed: &SignedPeerInfo,
    ) -> Result<Offered, AnnouncementError> {
        let now = ordo_proto::now_ms();
        {
            let tables = self.lock();
            if tables
                .get(channel.id())
                .is_some_and(|t| t.membership.holds(signed))
            {
                return Ok(Offered::Stale);
            }
        }
        let status = channel.status();
        let msp = status.msp.as_ref().ok_or_else(|| {
            AnnouncementError::Certificate("the channel configuration has no usable MSP".into())
        })?;
        let verified = announcement::verify(signed, channel.id(), msp, now, self.settings.ttl_ms)?;
        let mut tables = self.lock();
        let table = tables.entry(channel.id().to_string()).or_default();
        Ok(table.membership.offer(verified, now, self.settings.ttl_ms))
    }

    /// The live announcements held for a channel, exactly as signed.
    pub fn announcements(&self, channel_id: &str) -> Vec<SignedPeerInfo> {
        let now = ordo_proto::now_ms();
        let tables = self.lock();
        tables
            .get(channel_id)
            .map(|t| {
                t.membership
                    .live(now, self.settings.ttl_ms)
                    .into_iter()
                    .map(|p| p.signed.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The live peers of a channel, other than this one: first those that announced they
    /// run `chaincode`, then the others (a chaincode defined moments ago is not in
    /// announcements signed before it; such a peer is asked only when the first kind
    /// cannot meet the policy). Empty when discovery is off.
    pub fn endorsers(&self, channel_id: &str, chaincode: &str) -> Vec<Endorser> {
        if !self.settings.enabled {
            return Vec::new();
        }
        let now = ordo_proto::now_ms();
        let tables = self.lock();
        let Some(table) = tables.get(channel_id) else {
            return Vec::new();
        };
        let (runs, others): (Vec<_>, Vec<_>) = table
            .membership
            .live(now, self.settings.ttl_ms)
            .into_iter()
            .filter(|p| p.cert.cert_hash != self.own_hash)
            .partition(|p| p.info.chaincodes.iter().any(|c| c == chaincode));
        let endorser = |p: &VerifiedPeer, runs: bool| Endorser {
            endpoint: p.info.endpoint.clone(),
            runs,
            cert: p.cert.clone(),
        };
        runs.iter()
            .map(|p| endorser(p, true))
            .chain(others.iter().map(|p| endorser(p, false)))
            .collect()
    }

    /// Whether the channel's configuration changed since this peer last announced itself
    /// on it (its chaincodes may have too).
    pub fn config_changed(&self, channel: &PeerChannel) -> bool {
        let sequence = channel.status().config.sequence;
        self.lock()
            .get(channel.id())
            .is_some_and(|t| t.config_sequence != sequence)
    }

    /// Signs this peer's announcement for `channel` and holds it (so `Peers` and the
    /// anchors' answers include this peer); `None` when there is no endpoint to announce.
    pub fn announce_self(&self, channel: &PeerChannel) -> Option<SignedPeerInfo> {
        let endpoint = self.settings.endpoint.clone()?;
        let status = channel.status();
        let info = PeerInfo {
            channel_id: channel.id().to_string(),
            endpoint,
            certificate: self.identity.cert_bytes().clone(),
            chaincodes: status
                .config
                .chaincodes
                .iter()
                .filter(|d| self.bindings.runs(d))
                .map(|d| d.name.clone())
                .take(announcement::MAX_ANNOUNCED_CHAINCODES)
                .collect(),
            height: status.height,
            issued_ms: ordo_proto::now_ms(),
        };
        let signed = announcement::sign(&self.identity, &info);
        if let Err(why) = self.accept(channel, &signed) {
            // This peer's own certificate is not a peer's of the channel (or has expired):
            // announcing it would be refused everywhere.
            tracing::warn!(channel = channel.id(), "not announcing this peer: {why}");
            return None;
        }
        Some(signed)
    }

    /// Drops expired entries, and after a configuration change keeps only the entries the
    /// configuration in force still admits.
    pub fn tidy(&self, channel: &PeerChannel) {
        let now = ordo_proto::now_ms();
        let status = channel.status();
        let mut tables = self.lock();
        let table = tables.entry(channel.id().to_string()).or_default();
        table.membership.expire(now, self.settings.ttl_ms);
        if table.config_sequence != status.config.sequence {
            table.config_sequence = status.config.sequence;
            let ttl = self.settings.ttl_ms;
            table.membership.retain(|p| {
                status.msp.as_ref().is_some_and(|msp| {
                    announcement::verify(&p.signed, channel.id(), msp, now, ttl).is_ok()
                })
            });
        }
    }

    /// Forgets the channels the peer no longer serves.
    pub fn keep_channels(&self, served: &[&str]) {
        self.lock().retain(|id, _| served.contains(&id.as_str()));
    }

    /// Whether this peer knows no other live peer of a channel.
    pub fn alone(&self, channel_id: &str) -> bool {
        let now = ordo_proto::now_ms();
        self.lock().get(channel_id).is_none_or(|t| {
            t.membership
                .live(now, self.settings.ttl_ms)
                .iter()
                .all(|p| p.cert.cert_hash == self.own_hash)
        })
    }

    /// Live peers per channel (this one included), for metrics.
    pub fn live_counts(&self) -> Vec<(String, usize)> {
        let now = ordo_proto::now_ms();
        self.lock()
            .iter()
            .map(|(c, t)| {
                (
                    c.clone(),
                    t.membership.live(now, self.settings.ttl_ms).len(),
                )
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Table>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}
