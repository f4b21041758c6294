//! `ordo bench peer`: the whole run, from signing to the report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ordo_proto::cert::Msp;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, ChannelConfig};
use ordo_sdk::network::{ChannelEntry, Network};
use ordo_sdk::orderer::broadcast_client;
use prost::Message;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::broadcast::{run_stream, BroadcastTotals, StreamOutcome};
use crate::deliver::{self, DeliverOutcome, DeliverTracker, FollowSettings};
use crate::endorse::{conflicts_for, prepare_endorsed, TxPlan};
use crate::orderer::{
    await_streams_then_deliveries, connect_to, orderer_addr, plan_streams, SETUP_TIMEOUT,
};
use crate::peers::{
    on_every_peer, settled_infos, watch_peer, CodeTally, CommitProgress, PeerConn, PeerTrace,
};
use crate::progress::{self, Counters, Live};
use crate::report::{PeerBenchReport, PeerFigures};
use crate::stats::{LatencySummary, PercentileCurve, ThroughputSeries};

/// The chaincode the peer bench invokes (deployed by `ordo up`).
pub const PEER_BENCH_CHAINCODE: &str = "bank";

/// Longest wait, before the clock starts, for every peer to catch up with the blocks the
/// orderer already has (an earlier run's backlog, say).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);

/// After the run, how long the peers' heights may differ (blocks other than ours still
/// arriving) before their commit hashes are compared anyway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What `ordo bench peer` was asked to do.
#[derive(Debug, Clone)]
pub struct PeerBenchOptions {
    /// The network to load, as read from `--network`; every node with role "peer" is
    /// measured.
    pub network: Network,
    /// Channel to load; the network's first channel when `None`.
    pub channel: Option<String>,
    /// Orderer node name to broadcast to; the network's first orderer when `None`.
    pub orderer: Option<String>,
    /// Total transactions to send (at least 1).
    pub txs: u64,
    /// Share of the transactions, in percent (0–100), built to fail MVCC on purpose;
    /// rounded down, and at most `txs - 1`.
    pub conflict_percent: u32,
    /// Concurrent Broadcast streams, each on its own connection (at least 1; at most
    /// `txs` are used).
    pub clients: usize,
    /// Print a progress line to stderr about once a second.
    pub progress: bool,
    /// How long to wait without progress — no new delivery from the orderer, no new
    /// block on a peer — before giving up on the rest.
    pub drain_timeout: Duration,
}

/// Runs the peer benchmark against a running network; see the crate docs for the method.
/// Fails when a node cannot be reached, the channel does not define the `bank`
/// chaincode, or a stream breaks; a run in which transactions go missing, a peer falls
/// behind or commit hashes differ succeeds and reports it.
pub async fn run_peer_bench(opts: PeerBenchOptions) -> anyhow::Result<PeerBenchReport> {
    if opts.txs == 0 {
        bail!("nothing to do: the number of transactions to send must be at least 1");
    }
    if opts.clients == 0 {
        bail!("at least one Broadcast client is needed");
    }
    if opts.conflict_percent > 100 {
        bail!(
            "the conflict percentage is {}; it must be 0 to 100",
            opts.conflict_percent
        );
    }
    let txs = usize::try_from(opts.txs).context("too many transactions for this machine")?;
    let clients = opts.clients.min(txs);
    let net = &opts.network;
    let channel_entry = net.channel(opts.channel.as_deref())?.clone();
    let channel = channel_entry.name.clone();
    let addr = orderer_addr(net, opts.orderer.as_deref())?;
    let transport = net
        .transport(None, "client")
        .context("loading the first org's client TLS files")?;
    let creator = net
        .identity(None, "client")
        .context("loading the first org's client identity")?;
    let config = genesis_config(&channel_entry)?;
    let (chaincode_version, endorsing_orgs, endorsers) = pick_endorsers(net, &config)?;

    let mut peers = Vec::new();
    for node in net.nodes_with_role("peer") {
        let admin = net
            .identity(Some(&node.org), "admin")
            .with_context(|| format!("loading the admin identity of {}", node.org))?;
        let conn = connect_to("peer", &node.grpc_addr, &transport).await?;
        peers.push(PeerConn::new(
            node.name.clone(),
            node.org.clone(),
            node.grpc_addr.clone(),
            admin,
            conn,
        ));
    }
    if peers.is_empty() {
        bail!("the network has no peers to measure (was it started with `ordo up --no-peers`?)");
    }

    // Sign everything before the clock starts.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let conflicts = conflicts_for(txs, opts.conflict_percent);
    if opts.progress {
        eprintln!(
            "signing {txs} endorser transactions ({conflicts} conflicting on purpose) on {threads} threads before the clock starts…"
        );
    }
    let prepared = {
        let (creator, endorsers, channel) = (creator.clone(), endorsers.clone(), channel.clone());
        let version = chaincode_version.clone();
        tokio::task::spawn_blocking(move || {
            let plan = TxPlan {
                creator: &creator,
                endorsers: &endorsers,
                channel: &channel,
                chaincode: PEER_BENCH_CHAINCODE,
                chaincode_version: &version,
                run_id: rand::random(),
                txs,
                conflicts,
            };
            prepare_endorsed(&plan, threads)
        })
        .await
        .context("signing transactions")?
        .context("building transactions")?
    };
    let signing = format!(
        "all transactions built, endorsed and signed before the clock started ({:.2} s on {} threads)",
        prepared.elapsed.as_secs_f64(),
        prepared.threads
    );
    let index = prepared.index.clone();

    // The Deliver stream, and every peer caught up with the orderer, still before the
    // clock: from here on, every block is ours or someone else's new load.
    let deliver_conn = connect_to("orderer", &addr, &transport).await?;
    let (deliver_stream, newest) = deliver::open(
        broadcast_client(deliver_conn),
        &creator,
        &channel,
        &addr,
        SETUP_TIMEOUT,
    )
    .await?;
    let start_height = newest + 1;
    wait_caught_up(&mut peers, &channel, start_height, opts.progress).await?;
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push((
            connect_to("orderer", &addr, &transport).await?,
            addr.clone(),
        ));
    }
    let plans = plan_streams(prepared.envelopes, connections, opts.drain_timeout);

    // The clock starts with the first submit.
    let counters = Arc::new(Counters::default());
    let commit_progress = Arc::new(CommitProgress::new(peers.len()));
    let mut background = JoinSet::new(); // aborted when dropped, on every return path
    if opts.progress {
        background.spawn(progress::print_every_second(
            counters.clone(),
            Instant::now(),
            Live::Peer(commit_progress.clone()),
        ));
    }
    let (target_tx, target_rx) = watch::channel(None);
    let mut watchers = JoinSet::new();
    for (slot, peer) in peers.iter().enumerate() {
        let watch = watch_peer(
            peer.clone(),
            channel.clone(),
            slot,
            commit_progress.clone(),
            target_rx.clone(),
            opts.drain_timeout,
        );
        watchers.spawn(async move { (slot, watch.await) });
    }
    let (accepted_tx, accepted_rx) = oneshot::channel();
    let mut deliver_task = JoinSet::new();
    let on_block = {
        let p = commit_progress.clone();
        move |number, ours| p.add_block(number, ours)
    };
    deliver_task.spawn(deliver::follow(
        deliver_stream,
        DeliverTracker::new(prepared.index),
        accepted_rx,
        FollowSettings {
            addr: addr.clone(),
            channel: channel.clone(),
            drain_timeout: opts.drain_timeout,
        },
        counters.clone(),
        on_block,
    ));
    let mut senders = JoinSet::new();
    for plan in plans {
        senders.spawn(run_stream(plan, counters.clone()));
    }
    let (streams, delivered) =
        await_streams_then_deliveries(&mut senders, &mut deliver_task, accepted_tx, txs).await?;

    // Every transaction of ours is in a block below the final height; wait for each peer
    // to get there.
    let final_height = delivered
        .ours_per_block
        .iter()
        .map(|b| b.number + 1)
        .max()
        .unwrap_or(start_height);
    tracing::info!(final_height, "every delivery is in; waiting for the peers");
    target_tx.send_replace(Some(final_height));
    let mut traces: Vec<Option<PeerTrace>> = vec![None; peers.len()];
    while let Some(joined) = watchers.join_next().await {
        let (slot, trace) = joined.context("a peer watcher failed")?;
        traces[slot] = Some(trace);
    }
    let end = Instant::now();
    background.abort_all();
    let traces: Vec<PeerTrace> = traces.into_iter().flatten().collect();

    // After the clock: heights, commit hashes, and the codes of our transactions.
    let infos = settled_infos(&mut peers, &channel, SETTLE_TIMEOUT).await?;
    let reader = traces
        .iter()
        .position(|t| t.reached(final_height).is_some())
        .unwrap_or(0);
    let mut blocks: Vec<u64> = delivered.ours_per_block.iter().map(|b| b.number).collect();
    blocks.sort_unstable();
    blocks.dedup();
    let mut tally = CodeTally::new(txs);
    let reader_height = infos.get(reader).map(|i| i.height).unwrap_or(0);
    for &n in blocks.iter().filter(|&&n| n < reader_height) {
        let block = peers[reader].block(&creator, &channel, n).await?;
        tally.add_block(&block, &index);
    }
    if tally.duplicates > 0 {
        tracing::warn!(
            duplicates = tally.duplicates,
            "transactions of ours committed more than once"
        );
    }

    let figures = peers
        .iter()
        .zip(&infos)
        .zip(&traces)
        .map(|((p, info), trace)| PeerResult {
            name: p.name.clone(),
            org: p.org.clone(),
            height: info.height,
            commit_hash: info.commit_hash.to_vec(),
            reached_at: trace.reached(final_height),
        })
        .collect();
    let committed_at = on_every_peer(&delivered.ours_per_block, &traces);
    Ok(build_report(
        PeerTally {
            totals: BroadcastTotals::of(&streams),
            streams: &streams,
            delivered: &delivered,
            committed_at,
            tally,
            peers: figures,
            start_height,
            final_height,
            end,
        },
        PeerReportHeader {
            consensus: channel_entry.consensus,
            ack_mode: channel_entry.ack_mode,
            channel,
            clients,
            endorsing_orgs,
            signing,
            conflicts_planned: conflicts as u64,
            codes_from: peers[reader].name.clone(),
        },
    ))
}

/// The channel configuration in the channel's genesis block file.
fn genesis_config(channel: &ChannelEntry) -> anyhow::Result<ChannelConfig> {
    let path = &channel.genesis_block;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let block = Block::decode(bytes.as_slice())
        .with_context(|| format!("{}: not a block", path.display()))?;
    ordo_proto::config::config_from_block(&block)
        .with_context(|| format!("{}: not a genesis block", path.display()))
}

/// The version of the bench's chaincode on the channel, and the fewest orgs — taken in
/// configuration order — whose peer identities satisfy its endorsement policy, with those
/// identities.
fn pick_endorsers(
    net: &Network,
    config: &ChannelConfig,
) -> anyhow::Result<(String, Vec<String>, Vec<Identity>)> {
    let Some(cc) = config
        .chaincodes
        .iter()
        .find(|c| c.name == PEER_BENCH_CHAINCODE)
    else {
        let defined: Vec<&str> = config.chaincodes.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "channel {:?} does not define chaincode {PEER_BENCH_CHAINCODE:?} (it defines: {}); \
             create it with `--chaincode {PEER_BENCH_CHAINCODE}`",
            config.channel_id,
            if defined.is_empty() {
                "none".to_string()
            } else {
                defined.join(", ")
            }
        );
    };
    let policy = cc
        .endorsement_policy
        .as_ref()
        .ok_or_else(|| anyhow!("chaincode {:?} has no endorsement policy", cc.name))?;
    let msp = Msp::from_config(config).context("the channel's orgs")?;
    let now_secs = ordo_proto::now_ms() / 1000;
    let mut orgs = Vec::new();
    let mut identities = Vec::new();
    let mut certs = Vec::new();
    for org in msp.org_names().to_vec() {
        let peer = net
            .identity(Some(&org), "peer")
            .with_context(|| format!("loading the peer identity of {org}"))?;
        let cert = msp
            .verify(peer.cert_bytes(), now_secs)
            .with_context(|| format!("the peer certificate of {org}"))?;
        orgs.push(org);
        identities.push(peer);
        certs.push(cert);
        if ordo_proto::policy::evaluate(policy, &certs, msp.org_names()).is_ok() {
            return Ok((cc.version.clone(), orgs, identities));
        }
    }
    bail!(
        "the peers of all orgs together do not satisfy the endorsement policy of {:?}",
        cc.name
    )
}

/// Polls every peer until it is at `height` or above.
async fn wait_caught_up(
    peers: &mut [PeerConn],
    channel: &str,
    height: u64,
    progress: bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let mut said = false;
    for p in peers.iter_mut() {
        loop {
            let info = p
                .info(channel)
                .await
                .with_context(|| format!("{} on channel {channel:?}", p.name))?;
            if info.height >= height {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} is at height {} on channel {channel:?}, the orderer at {height}: it did not catch up in {CATCH_UP_TIMEOUT:?}",
                    p.name,
                    info.height
                );
            }
            if progress && !said {
                eprintln!(
                    "waiting for {} to catch up with the orderer (height {} of {height})…",
                    p.name, info.height
                );
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The report's descriptive fields.
struct PeerReportHeader {
    consensus: String,
    ack_mode: String,
    channel: String,
    clients: usize,
    endorsing_orgs: Vec<String>,
    signing: String,
    conflicts_planned: u64,
    codes_from: String,
}

/// One peer as measured.
struct PeerResult {
    name: String,
    org: String,
    /// Height after the run.
    height: u64,
    /// Commit hash at `height`.
    commit_hash: Vec<u8>,
    /// When it was first seen at the final height.
    reached_at: Option<Instant>,
}

/// What the tasks measured.
struct PeerTally<'a> {
    totals: BroadcastTotals,
    /// The streams `totals` sums: when each transaction was submitted.
    streams: &'a [StreamOutcome],
    delivered: &'a DeliverOutcome,
    /// When each block of `delivered.ours_per_block` was on every peer (`on_every_peer`).
    committed_at: Vec<Option<Instant>>,
    tally: CodeTally,
    peers: Vec<PeerResult>,
    start_height: u64,
    final_height: u64,
    /// When the run ended (every peer at the final height, or given up on).
    end: Instant,
}

fn build_report(t: PeerTally<'_>, h: PeerReportHeader) -> PeerBenchReport {
    let first_submit = t.totals.first_submit;
    let span = |until: Instant| match first_submit {
        Some(a) => until.saturating_duration_since(a).as_secs_f64(),
        None => 0.0,
    };
    let per_s = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let committed = t.tally.committed;
    let all_reached = t.peers.iter().all(|p| p.reached_at.is_some());
    let slowest = t.peers.iter().filter_map(|p| p.reached_at).max();
    let until = match slowest {
        Some(at) if all_reached => at,
        _ => t.end,
    };
    let duration_s = span(until);
    let agree = all_reached
        && t.peers
            .windows(2)
            .all(|w| w[0].height == w[1].height && w[0].commit_hash == w[1].commit_hash)
        && t.peers.iter().all(|p| p.height >= t.final_height);
    let (latency, latency_ms_percentiles) = commit_latencies(&t);
    let throughput = match first_submit {
        Some(start) => ThroughputSeries::from_events(
            until.saturating_duration_since(start),
            t.delivered
                .ours_per_block
                .iter()
                .zip(&t.committed_at)
                .filter_map(|(b, at)| Some((at.as_ref()?.saturating_duration_since(start), b.txs))),
        ),
        None => ThroughputSeries::default(),
    };
    let peers = t
        .peers
        .iter()
        .map(|p| {
            let secs = p.reached_at.map(span).unwrap_or(0.0);
            PeerFigures {
                name: p.name.clone(),
                org: p.org.clone(),
                height: p.height,
                reached_final_height: p.reached_at.is_some(),
                duration_s: secs,
                tx_per_s: per_s(committed, secs),
                commit_hash: hex::encode(&p.commit_hash),
            }
        })
        .collect();
    PeerBenchReport {
        consensus: h.consensus,
        ack_mode: h.ack_mode,
        channel: h.channel,
        chaincode: PEER_BENCH_CHAINCODE.to_string(),
        clients: h.clients,
        endorsing_orgs: h.endorsing_orgs,
        signing: h.signing,
        txs_sent: t.totals.sent,
        txs_accepted: t.totals.accepted,
        txs_rejected: t.totals.rejected,
        txs_ordered: t.delivered.delivered,
        txs_committed: committed,
        conflicts_planned: h.conflicts_planned,
        codes: t.tally.codes,
        rejections: t.totals.rejections,
        codes_from: h.codes_from,
        start_height: t.start_height,
        final_height: t.final_height,
        blocks: t.delivered.ours_per_block.len() as u64,
        ordered_per_s: t
            .delivered
            .last_delivery
            .map(|at| per_s(t.delivered.delivered, span(at)))
            .unwrap_or(0.0),
        duration_s,
        tx_per_s: if all_reached {
            per_s(committed, duration_s)
        } else {
            0.0
        },
        latency_ms_p50: latency.p50,
        latency_ms_p99: latency.p99,
        latency_ms_max: latency.max,
        latency_ms_percentiles,
        throughput,
        commit_hashes_agree: agree,
        peers,
    }
}

/// Submit → on every peer, per transaction whose block reached every peer: its summary
/// and its curve, in milliseconds. A transaction's block is the first block of ours
/// delivered at or after the transaction's delivery time (delivery times never decrease
/// from block to block).
fn commit_latencies(t: &PeerTally<'_>) -> (LatencySummary, PercentileCurve) {
    let blocks = &t.delivered.ours_per_block;
    let mut latencies_ms = Vec::with_capacity(t.delivered.delivered as usize);
    for s in t.streams {
        for (k, submitted) in s.submitted_at.iter().enumerate() {
            let Some(Some(delivered)) = t.delivered.delivered_at.get(s.first_index + k) else {
                continue;
            };
            let block = blocks.partition_point(|b| b.at < *delivered);
            if let Some(Some(committed)) = t.committed_at.get(block) {
                let latency = committed.saturating_duration_since(*submitted);
                latencies_ms.push(latency.as_nanos() as f64 / 1e6);
            }
        }
    }
    let summary = LatencySummary::from_samples(&mut latencies_ms);
    (summary, PercentileCurve::from_sorted(&latencies_ms))
}

#[cfg(test)]
mod tests;
