//! The announcement rounds: every interval, for each channel, this peer's signed
//! announcement to every anchor peer at once; what each answers is verified and kept.
//!
//! Sooner than the interval, a channel is announced when it is new here (just joined, or
//! at start), when its configuration changed (a chaincode defined or retired), and, every [`EAGER_INTERVAL`] for its first [`EAGER_FOR`], while this peer
//! knows no other peer of it (at start, anchors may not be up yet): a network is usable moments after its peers join,
//! not an interval later.
//!
//! A round waits at most [`CALL_TIMEOUT`] (or the interval, if shorter) for any anchor. An
//! anchor that stops answering is logged once (WARN) and its recovery once (INFO), not
//! every round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use ordo_proto::pb::discovery::discovery_client::DiscoveryClient;
use ordo_proto::pb::discovery::{PeersResponse, SignedPeerInfo};

use super::Discovery;
use crate::node::channels::{PeerChannel, PeerChannels};

/// Longest wait for one anchor's answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a channel is announced while this peer knows no other peer of it.
pub const EAGER_INTERVAL: Duration = Duration::from_millis(250);

/// For how long after a channel is first seen here it is announced eagerly (a channel
/// with no other peer at all must not be announced four times a second forever).
pub const EAGER_FOR: Duration = Duration::from_secs(60);

/// Runs announcement rounds until `token` is cancelled; the first at once.
pub fn spawn_announcer(
    discovery: Arc<Discovery>,
    channels: Arc<PeerChannels>,
    pool: Arc<ordo_node::ClientPool>,
    token: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if discovery.settings().endpoint.is_none() {
            warn!(
                "discovery: no endpoint to announce ([node] listen_addr is an unspecified \
                 address and [discovery] endpoint is not set): other peers' gateways cannot \
                 find this peer, and it learns of no others"
            );
            return;
        }
        let mut reachable: HashMap<(String, String), bool> = HashMap::new();
        // When each channel was first seen here, and last announced.
        let mut announced: HashMap<String, (tokio::time::Instant, tokio::time::Instant)> =
            HashMap::new();
        let interval = discovery.settings().interval;
        loop {
            let now = tokio::time::Instant::now();
            let served = channels.list();
            discovery.keep_channels(&served.iter().map(|c| c.id()).collect::<Vec<_>>());
            announced.retain(|id, _| served.iter().any(|c| c.id() == id));
            let due: Vec<Arc<PeerChannel>> = served
                .into_iter()
                .filter(|c| match announced.get(c.id()) {
                    None => true,
                    Some((_, last)) if now.duration_since(*last) >= interval => true,
                    Some(_) if discovery.config_changed(c) => true,
                    Some((first, last)) => {
                        now.duration_since(*first) < EAGER_FOR
                            && now.duration_since(*last) >= EAGER_INTERVAL
                            && discovery.alone(c.id())
                    }
                })
                .collect();
            if !due.is_empty() {
                for c in &due {
                    let first = announced.get(c.id()).map_or(now, |(first, _)| *first);
                    announced.insert(c.id().to_string(), (first, now));
                }
                round(&discovery, due, &pool, &mut reachable).await;
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(EAGER_INTERVAL.min(interval)) => {}
            }
        }
    })
}

/// One round over the channels due.
async fn round(
    discovery: &Arc<Discovery>,
    due: Vec<Arc<PeerChannel>>,
    pool: &Arc<ordo_node::ClientPool>,
    reachable: &mut HashMap<(String, String), bool>,
) {
    let timeout = CALL_TIMEOUT.min(discovery.settings().interval);
    let mut calls = JoinSet::new();
    for channel in due {
        discovery.tidy(&channel);
        let Some(own) = discovery.announce_self(&channel) else {
            continue;
        };
        for anchor in anchors(&channel, discovery.settings().endpoint.as_deref()) {
            let (pool, own, channel) = (pool.clone(), own.clone(), channel.clone());
            calls.spawn(async move {
                let answer = tokio::time::timeout(timeout, announce(&pool, &anchor, own)).await;
                let answer =
                    answer.unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                (channel, anchor, answer)
            });
        }
    }
    while let Some(joined) = calls.join_next().await {
        let Ok((channel, anchor, answer)) = joined else {
            continue;
        };
        let key = (channel.id().to_string(), anchor.clone());
        let was = reachable.insert(key, answer.is_ok());
        match answer {
            Ok(peers) => {
                if was == Some(false) {
                    info!(channel = channel.id(), %anchor, "discovery: anchor peer answers again");
                }
                for signed in &peers.peers {
                    if let Err(why) = discovery.accept(&channel, signed) {
                        debug!(channel = channel.id(), %anchor, "discovery: ignored an announcement it relayed: {why}");
                    }
                }
            }
            Err(why) if was != Some(false) => {
                warn!(channel = channel.id(), %anchor, "discovery: cannot announce to anchor peer: {why}");
            }
            Err(_) => {}
        }
    }
}

/// The channel's anchor peers, this peer's own endpoint left out.
fn anchors(channel: &PeerChannel, own: Option<&str>) -> Vec<String> {
    let status = channel.status();
    let mut out: Vec<String> = Vec::new();
    for anchor in status.config.orgs.iter().flat_map(|o| &o.anchor_peers) {
        if Some(anchor.as_str()) != own && !out.contains(anchor) {
            out.push(anchor.clone());
        }
    }
    out
}

/// Discovery.Announce on `anchor`.
async fn announce(
    pool: &ordo_node::ClientPool,
    anchor: &str,
    own: SignedPeerInfo,
) -> Result<PeersResponse, String> {
    let channel = pool
        .get(anchor)
        .map_err(|e| format!("cannot connect: {e}"))?;
    DiscoveryClient::new(channel)
        .announce(own)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| format!("{}: {}", s.code(), s.message()))
}
