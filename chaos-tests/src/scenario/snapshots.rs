//! The snapshot scenarios' faults: a peer killed while it writes a snapshot, and a peer
//! killed while it joins the channel from one. Both must leave the peers agreeing (the
//! `peers` checker) and every peer back at the orderers' height (liveness); here, in
//! addition, a snapshot must be takeable and a join must succeed once the killed peer is
//! back (an interrupted one must leave nothing that stands in the way).

use ordo_proto::pb::admin::{admin_command, JoinBySnapshot, ListChannels, RemoveChannel};
use ordo_proto::pb::admin::{AdminResponse, TakeSnapshot};

use super::*;
use crate::net::CHANNEL;

/// How long an Admin call of these scenarios may take (a join fetches blocks from the
/// orderers, possibly while one is down).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

fn snapshot_command() -> admin_command::Command {
    admin_command::Command::Snapshot(TakeSnapshot {
        channel_id: CHANNEL.into(),
    })
}

/// Waits until the node's Admin service answers again after a restart.
async fn wait_up(n: &Nemesis<'_>, r: NodeRef) -> bool {
    for _ in 0..300 {
        let list = admin_command::Command::List(ListChannels {});
        if n.net.admin(r, list).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn serves_channel(n: &Nemesis<'_>, r: NodeRef) -> bool {
    let list = admin_command::Command::List(ListChannels {});
    n.net
        .admin(r, list)
        .await
        .ok()
        .and_then(|resp: AdminResponse| resp.list)
        .is_some_and(|l| l.channels.iter().any(|c| c.channel_id == CHANNEL))
}

/// Takes a snapshot on `peer` without interfering; its path on the peer's host.
async fn snapshot_path(n: &mut Nemesis<'_>, peer: NodeRef) -> Result<String, String> {
    let resp = n
        .net
        .admin_call(peer, snapshot_command(), CALL_TIMEOUT)
        .await?;
    resp.snapshot
        .map(|s| s.path)
        .ok_or_else(|| "a snapshot answer without a snapshot".to_string())
}

/// Peer 0 snapshots the channel again and again and is killed at a random moment of it;
/// once restarted it must take a snapshot.
pub(super) async fn kill_while_snapshotting(
    n: &mut Nemesis<'_>,
    rng: &mut StdRng,
    end: tokio::time::Instant,
) -> Vec<Violation> {
    let peer = NodeRef::Peer(0);
    let mut found = Vec::new();
    let (mut interrupted, mut completed) = (0u32, 0u32);
    while tokio::time::Instant::now() < end {
        let call = tokio::spawn(n.net.admin_call(peer, snapshot_command(), CALL_TIMEOUT));
        // A snapshot of the chaos channel's small state takes milliseconds: kill soon.
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..12_000))).await;
        n.kill(peer);
        match call.await {
            Ok(Ok(_)) => completed += 1,
            _ => interrupted += 1,
        }
        n.start(peer);
        if !wait_up(n, peer).await {
            found.push(Violation::new(
                "snapshot",
                "peer0 did not come back after a kill while snapshotting",
            ));
            return found;
        }
        // Blocks move on before the next one, so its height is new.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1000))).await;
    }
    n.note_fact(format!(
        "snapshots killed: {interrupted} interrupted, {completed} completed before the kill"
    ));
    match snapshot_path(n, peer).await {
        Ok(path) => n.note_operation(format!("snapshot after the kills: {path}")),
        Err(e) => found.push(Violation::new(
            "snapshot",
            format!("no snapshot could be taken after the kills: {e}"),
        )),
    }
    found
}

/// Peer 1 leaves the channel and joins it from a snapshot of peer 0, again and again, and
/// is killed at a random moment of the join; once restarted, the channel is joined from
/// the snapshot again if the interrupted join did not finish. The commit hashes must agree
/// with peer 0's (the `peers` checker).
pub(super) async fn kill_while_joining(
    n: &mut Nemesis<'_>,
    rng: &mut StdRng,
    end: tokio::time::Instant,
) -> Vec<Violation> {
    let (source, joiner) = (NodeRef::Peer(0), NodeRef::Peer(1));
    let mut found = Vec::new();
    let violation = |what: String| Violation::new("snapshot", what);
    let (mut interrupted, mut completed, mut rejoined) = (0u32, 0u32, 0u32);
    while tokio::time::Instant::now() < end {
        let path = match snapshot_path(n, source).await {
            Ok(p) => p,
            Err(e) if e.contains("already exists") => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            Err(e) => {
                found.push(violation(format!("peer0 could not take a snapshot: {e}")));
                return found;
            }
        };
        let remove = admin_command::Command::Remove(RemoveChannel {
            channel_id: CHANNEL.into(),
        });
        if let Err(e) = n.net.admin(joiner, remove).await {
            found.push(violation(format!("peer1 could not leave the channel: {e}")));
            return found;
        }
        let join = || {
            admin_command::Command::JoinBySnapshot(JoinBySnapshot {
                path: path.clone(),
                channel_id: CHANNEL.into(),
            })
        };
        let call = tokio::spawn(n.net.admin_call(joiner, join(), CALL_TIMEOUT));
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
        n.kill(joiner);
        match call.await {
            Ok(Ok(_)) => completed += 1,
            _ => interrupted += 1,
        }
        n.start(joiner);
        if !wait_up(n, joiner).await {
            found.push(violation(
                "peer1 did not come back after a kill while joining".into(),
            ));
            return found;
        }
        if !serves_channel(n, joiner).await {
            rejoined += 1;
            if let Err(e) = n.net.admin_call(joiner, join(), CALL_TIMEOUT).await {
                found.push(violation(format!(
                    "peer1 could not join from the snapshot after an interrupted join: {e}"
                )));
                return found;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..1500))).await;
    }
    n.note_fact(format!(
        "joins killed: {interrupted} interrupted ({rejoined} joined again), {completed} \
         completed before the kill"
    ));
    found
}
