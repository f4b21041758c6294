//! `ordo bench orderer`: the whole run, from signing to the report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ordo_proto::pb::common::Envelope;
use ordo_sdk::network::Network;
use ordo_sdk::orderer::{broadcast_client, connect};
use ordo_sdk::transport::Transport;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::broadcast::{run_stream, BroadcastTotals, StreamOutcome, StreamPlan};
use crate::deliver::{self, DeliverOutcome, DeliverTracker, FollowSettings};
use crate::prepare::{prepare, split_range};
use crate::progress::{self, Counters, Live};
use crate::report::OrdererBenchReport;
use crate::stats::{LatencySummary, PercentileCurve, ThroughputSeries};

/// Most unanswered envelopes per Broadcast stream. Bounds client memory and queueing, so
/// that the measured latency is the orderer's and not our own backlog's.
pub const BROADCAST_WINDOW: usize = 2_000;

/// Longest wait for a connection, the start of a stream, or the first Deliver block.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest wait for any single Broadcast response before the run is declared stuck
/// (the drain timeout is used when longer): in committed ack mode an answer waits for
/// its block to be cut and made durable.
const MIN_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `ordo bench orderer` was asked to do.
#[derive(Debug, Clone)]
pub struct OrdererBenchOptions {
    /// The network to load, as read from `--network`.
    pub network: Network,
    /// Channel to load; the network's first channel when `None`.
    pub channel: Option<String>,
    /// Orderer node name to target; the network's first orderer when `None`.
    pub orderer: Option<String>,
    /// Total envelopes to send (at least 1).
    pub txs: u64,
    /// Random payload data bytes per envelope.
    pub payload_bytes: usize,
    /// Concurrent Broadcast streams, each on its own connection (at least 1; at most
    /// `txs` are used).
    pub clients: usize,
    /// Print a progress line to stderr about once a second.
    pub progress: bool,
    /// After the last Broadcast answer, how long to wait without a new delivery before
    /// counting the undelivered accepted envelopes as lost.
    pub drain_timeout: Duration,
}

/// Runs the orderer benchmark against a running network; see the crate docs for the
/// method. Fails when the orderer cannot be reached, a stream breaks, or the orderer
/// answers out of order; a run that merely loses envelopes succeeds and reports them.
pub async fn run_orderer_bench(opts: OrdererBenchOptions) -> anyhow::Result<OrdererBenchReport> {
    if opts.txs == 0 {
        bail!("nothing to do: the number of envelopes to send must be at least 1");
    }
    if opts.clients == 0 {
        bail!("at least one Broadcast client is needed");
    }
    let txs = usize::try_from(opts.txs).context("too many envelopes for this machine")?;
    let clients = opts.clients.min(txs);
    let net = &opts.network;
    let channel_entry = net.channel(opts.channel.as_deref())?.clone();
    let channel = channel_entry.name.clone();
    let transport = net
        .transport(None, "client")
        .context("loading the first org's client TLS files")?;
    let addr = match (&opts.orderer, channel_entry.consensus.as_str()) {
        (None, "raft") => raft_leader_addr(net, &transport, &channel, opts.progress).await?,
        _ => orderer_addr(net, opts.orderer.as_deref())?,
    };
    let identity = net
        .identity(None, "client")
        .context("loading the first org's client identity")?;

    // Sign everything before the clock starts.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if opts.progress {
        eprintln!("signing {txs} envelopes on {threads} threads before the clock starts…");
    }
    let prepared = {
        let identity = identity.clone();
        let channel = channel.clone();
        let payload_bytes = opts.payload_bytes;
        tokio::task::spawn_blocking(move || {
            prepare(&identity, &channel, txs, payload_bytes, threads)
        })
        .await
        .context("signing envelopes")?
    };
    let signing = format!(
        "all envelopes signed before the clock started ({:.2} s on {} threads)",
        prepared.elapsed.as_secs_f64(),
        prepared.threads
    );
    tracing::info!(
        txs,
        elapsed_s = prepared.elapsed.as_secs_f64(),
        "envelopes signed"
    );

    // Connections and the Deliver stream, still before the clock.
    let deliver_conn = connect_to("orderer", &addr, &transport).await?;
    let (deliver_stream, _newest) = deliver::open(
        broadcast_client(deliver_conn),
        &identity,
        &channel,
        &addr,
        SETUP_TIMEOUT,
    )
    .await?;
    // Every kafka orderer takes envelopes alike (each produces to the partition), so
    // the streams spread over all of them unless one is named; other backends take
    // them at one node (the raft leader).
    let submit_addrs = match (&opts.orderer, channel_entry.consensus.as_str()) {
        (None, "kafka") => net
            .nodes_with_role("orderer")
            .map(|n| n.grpc_addr.clone())
            .collect(),
        _ => vec![addr.clone()],
    };
    let mut connections = Vec::with_capacity(clients);
    for k in 0..clients {
        let to = &submit_addrs[k % submit_addrs.len()];
        connections.push((connect_to("orderer", to, &transport).await?, to.clone()));
    }
    let plans = plan_streams(prepared.envelopes, connections, opts.drain_timeout);

    // The clock starts with the first submit.
    let counters = Arc::new(Counters::default());
    let mut background = JoinSet::new(); // aborted when dropped, on every return path
    if opts.progress {
        background.spawn(progress::print_every_second(
            counters.clone(),
            Instant::now(),
            Live::Orderer,
        ));
    }
    let (accepted_tx, accepted_rx) = oneshot::channel();
    let mut deliver_task = JoinSet::new();
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
        |_, _| {},
    ));
    let mut senders = JoinSet::new();
    for plan in plans {
        senders.spawn(run_stream(plan, counters.clone()));
    }

    let (streams, delivered) =
        await_streams_then_deliveries(&mut senders, &mut deliver_task, accepted_tx, txs).await?;
    let end = Instant::now();
    background.abort_all();

    Ok(build_report(
        Tally {
            streams: &streams,
            delivered,
            end,
        },
        ReportHeader {
            consensus: channel_entry.consensus,
            ack_mode: channel_entry.ack_mode,
            channel,
            clients,
            payload_bytes: opts.payload_bytes,
            signing,
        },
    ))
}

/// Waits for every Broadcast stream (failing on the first failure of any stream, or if
/// the Deliver task ends first), hands the accepted flags of all `txs` envelopes to the
/// Deliver task, and waits for its outcome. The streams come back in envelope order.
pub(crate) async fn await_streams_then_deliveries(
    senders: &mut JoinSet<anyhow::Result<StreamOutcome>>,
    deliver_task: &mut JoinSet<anyhow::Result<DeliverOutcome>>,
    accepted_tx: oneshot::Sender<Vec<bool>>,
    txs: usize,
) -> anyhow::Result<(Vec<StreamOutcome>, DeliverOutcome)> {
    let mut streams: Vec<StreamOutcome> = Vec::with_capacity(senders.len());
    loop {
        tokio::select! {
            done = senders.join_next() => match done {
                None => break,
                Some(joined) => streams.push(joined.context("a Broadcast task failed")??),
            },
            died = deliver_task.join_next() => {
                return Err(match died {
                    Some(Ok(Err(e))) => e,
                    Some(Err(join)) => anyhow!(join).context("the Deliver task failed"),
                    Some(Ok(Ok(_))) | None => anyhow!("the Deliver task ended before the Broadcast streams"),
                });
            }
        }
    }
    streams.sort_by_key(|s| s.first_index);
    let mut accepted = vec![false; txs];
    for s in &streams {
        accepted[s.first_index..s.first_index + s.accepted.len()].copy_from_slice(&s.accepted);
    }
    tracing::info!("every Broadcast answer is in; draining deliveries");
    accepted_tx
        .send(accepted)
        .map_err(|_| anyhow!("the Deliver task vanished"))?;
    let delivered = match deliver_task.join_next().await {
        Some(joined) => joined.context("the Deliver task failed")??,
        None => bail!("the Deliver task vanished"),
    };
    Ok((streams, delivered))
}

/// The gRPC address of the orderer called `name`, or of the network's first orderer.
pub(crate) fn orderer_addr(net: &Network, name: Option<&str>) -> anyhow::Result<String> {
    let node = match name {
        Some(name) => {
            let node = net.node(name)?;
            if node.role != "orderer" {
                bail!("node {name:?} is a {}, not an orderer", node.role);
            }
            node
        }
        None => net.first_orderer()?,
    };
    Ok(node.grpc_addr.clone())
}

/// The raft leader of `channel`, as the first orderer knows it: clients of a raft channel
/// are best served by the leader (a follower forwards every envelope to it, one more hop),
/// so that is where the benchmark sends unless told otherwise.
async fn raft_leader_addr(
    net: &Network,
    transport: &Transport,
    channel: &str,
    progress: bool,
) -> anyhow::Result<String> {
    let first = net.first_orderer()?;
    let admin = net.identity(Some(&first.org), "admin")?;
    let conn = connect_to("orderer", &first.grpc_addr, transport).await?;
    let mut client = ordo_sdk::orderer::admin_client(conn);
    let req = ordo_sdk::orderer::admin_request(
        &admin,
        channel,
        ordo_proto::pb::admin::admin_command::Command::Info(
            ordo_proto::pb::admin::GetChannelInfo {
                channel_id: channel.to_string(),
            },
        ),
    );
    let info = client
        .execute(req)
        .await
        .with_context(|| format!("asking {} for the raft leader", first.name))?
        .into_inner()
        .channel
        .unwrap_or_default();
    match net.node(&info.leader) {
        Ok(node) if node.role == "orderer" && !info.leader.is_empty() => {
            if progress {
                eprintln!("raft channel: sending to the leader, {}", node.name);
            }
            Ok(node.grpc_addr.clone())
        }
        _ => {
            if progress {
                eprintln!(
                    "raft channel: no known leader in the network file ({:?}); sending to {}",
                    info.leader, first.name
                );
            }
            Ok(first.grpc_addr.clone())
        }
    }
}

/// A connection to the `role` ("orderer", "peer") at `addr`, within [`SETUP_TIMEOUT`].
pub(crate) async fn connect_to(
    role: &str,
    addr: &str,
    transport: &Transport,
) -> anyhow::Result<tonic::transport::Channel> {
    tokio::time::timeout(SETUP_TIMEOUT, connect(addr, transport))
        .await
        .map_err(|_| anyhow!("connecting to {role} at {addr}: no answer in {SETUP_TIMEOUT:?}"))?
        .with_context(|| format!("connecting to {role} at {addr}"))
}

/// Splits the envelopes into one contiguous share per connection.
pub(crate) fn plan_streams(
    envelopes: Vec<Envelope>,
    connections: Vec<(tonic::transport::Channel, String)>,
    drain_timeout: Duration,
) -> Vec<StreamPlan> {
    let total = envelopes.len();
    let parts = connections.len();
    let mut rest = envelopes.into_iter();
    connections
        .into_iter()
        .enumerate()
        .map(|(k, (conn, addr))| {
            let range = split_range(total, parts, k);
            StreamPlan {
                first_index: range.start,
                envelopes: rest.by_ref().take(range.len()).collect(),
                client: broadcast_client(conn),
                addr,
                window: BROADCAST_WINDOW,
                response_timeout: drain_timeout.max(MIN_RESPONSE_TIMEOUT),
            }
        })
        .collect()
}

/// The report's descriptive fields.
struct ReportHeader {
    consensus: String,
    ack_mode: String,
    channel: String,
    clients: usize,
    payload_bytes: usize,
    signing: String,
}

/// What the tasks measured.
struct Tally<'a> {
    streams: &'a [StreamOutcome],
    delivered: DeliverOutcome,
    /// When the run ended (all delivered, or the drain gave up).
    end: Instant,
}

fn build_report(t: Tally<'_>, h: ReportHeader) -> OrdererBenchReport {
    let d = &t.delivered;
    let mut latencies_ms = Vec::with_capacity(d.delivered as usize);
    for s in t.streams {
        for (k, submitted) in s.submitted_at.iter().enumerate() {
            if let Some(at) = d.delivered_at[s.first_index + k] {
                latencies_ms.push(at.saturating_duration_since(*submitted).as_nanos() as f64 / 1e6);
            }
        }
    }
    let latency = LatencySummary::from_samples(&mut latencies_ms);
    let latency_ms_percentiles = PercentileCurve::from_sorted(&latencies_ms);
    let BroadcastTotals {
        sent,
        accepted,
        rejected,
        rejections,
        first_submit,
        last_ack,
    } = BroadcastTotals::of(t.streams);
    let span = |until: Option<Instant>| match (first_submit, until) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let duration_s = span(d.last_delivery.or(Some(t.end)));
    let throughput = match first_submit {
        Some(start) => {
            let until = d.last_delivery.unwrap_or(t.end);
            ThroughputSeries::from_events(
                until.saturating_duration_since(start),
                d.delivered_at
                    .iter()
                    .flatten()
                    .map(|at| (at.saturating_duration_since(start), 1)),
            )
        }
        None => ThroughputSeries::default(),
    };
    let per_s = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let tx_per_s = if d.last_delivery.is_some() {
        per_s(d.delivered, duration_s)
    } else {
        0.0
    };
    OrdererBenchReport {
        consensus: h.consensus,
        ack_mode: h.ack_mode,
        channel: h.channel,
        clients: h.clients,
        payload_bytes: h.payload_bytes,
        signing: h.signing,
        txs_sent: sent,
        txs_accepted: accepted,
        txs_rejected: rejected,
        txs_delivered: d.delivered,
        txs_lost: d.lost,
        txs_duplicated: d.duplicates,
        duration_s,
        tx_per_s,
        accepted_per_s: per_s(accepted, span(last_ack)),
        latency_ms_p50: latency.p50,
        latency_ms_p99: latency.p99,
        latency_ms_max: latency.max,
        latency_ms_percentiles,
        throughput,
        blocks_delivered: d.blocks,
        rejections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::OursInBlock;
    use std::collections::BTreeMap;

    fn header() -> ReportHeader {
        ReportHeader {
            consensus: "raft".into(),
            ack_mode: "committed".into(),
            channel: "ch".into(),
            clients: 2,
            payload_bytes: 10,
            signing: "signed".into(),
        }
    }

    #[test]
    fn report_from_tallies() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Stream 0 sends envelopes 0..2, stream 1 envelopes 2..4; envelope 3 rejected,
        // envelope 1 accepted but lost.
        let streams = vec![
            StreamOutcome {
                first_index: 0,
                submitted_at: vec![ms(0), ms(10)],
                accepted: vec![true, true],
                rejections: BTreeMap::new(),
                last_ack: Some(ms(250)),
            },
            StreamOutcome {
                first_index: 2,
                submitted_at: vec![ms(0), ms(20)],
                accepted: vec![true, false],
                rejections: [("FORBIDDEN".to_string(), 1)].into_iter().collect(),
                last_ack: Some(ms(100)),
            },
        ];
        let delivered = DeliverOutcome {
            delivered_at: vec![Some(ms(100)), None, Some(ms(500)), None],
            delivered: 2,
            duplicates: 1,
            blocks: 3,
            last_delivery: Some(ms(500)),
            ours_per_block: vec![
                OursInBlock {
                    number: 5,
                    txs: 1,
                    at: ms(100),
                },
                OursInBlock {
                    number: 7,
                    txs: 1,
                    at: ms(500),
                },
            ],
            lost: 1,
        };
        let r = build_report(
            Tally {
                streams: &streams,
                delivered,
                end: ms(3000),
            },
            header(),
        );
        assert_eq!((r.txs_sent, r.txs_accepted, r.txs_rejected), (4, 3, 1));
        assert_eq!(
            (
                r.txs_delivered,
                r.txs_lost,
                r.txs_duplicated,
                r.blocks_delivered
            ),
            (2, 1, 1, 3)
        );
        assert_eq!(r.duration_s, 0.5);
        assert_eq!(r.tx_per_s, 4.0);
        assert_eq!(r.accepted_per_s, 12.0);
        assert_eq!(
            (r.latency_ms_p50, r.latency_ms_p99, r.latency_ms_max),
            (100.0, 500.0, 500.0)
        );
        assert_eq!(r.rejections.get("FORBIDDEN"), Some(&1));
        // Deliveries at 0.1 s and 0.5 s of a 0.5 s run: intervals of 0.1 s, the second
        // delivery in the last one.
        assert_eq!(r.throughput.interval_s, 0.1);
        assert_eq!(r.throughput.tx_per_s, vec![0.0, 10.0, 0.0, 0.0, 10.0]);
        assert_eq!(r.latency_ms_percentiles.percent.len(), 104);
        assert_eq!(r.latency_ms_percentiles.value[0], 100.0);
        assert_eq!(r.latency_ms_percentiles.value[49], 100.0);
        assert_eq!(r.latency_ms_percentiles.value[51], 500.0);
        assert_eq!(
            (r.consensus.as_str(), r.ack_mode.as_str(), r.clients),
            ("raft", "committed", 2)
        );
    }

    #[test]
    fn report_when_nothing_was_delivered() {
        let t0 = Instant::now();
        let streams = vec![StreamOutcome {
            first_index: 0,
            submitted_at: vec![t0],
            accepted: vec![false],
            rejections: [("SERVICE_UNAVAILABLE".to_string(), 1)]
                .into_iter()
                .collect(),
            last_ack: None,
        }];
        let delivered = DeliverOutcome {
            delivered_at: vec![None],
            delivered: 0,
            duplicates: 0,
            blocks: 0,
            last_delivery: None,
            ours_per_block: Vec::new(),
            lost: 0,
        };
        let end = t0 + Duration::from_secs(2);
        let r = build_report(
            Tally {
                streams: &streams,
                delivered,
                end,
            },
            header(),
        );
        assert_eq!(r.duration_s, 2.0);
        assert_eq!((r.tx_per_s, r.accepted_per_s), (0.0, 0.0));
        assert_eq!((r.latency_ms_p50, r.latency_ms_max), (0.0, 0.0));
        assert_eq!(r.latency_ms_percentiles, PercentileCurve::default());
        assert_eq!(r.throughput.tx_per_s, vec![0.0; 20]);
        assert_eq!(r.txs_rejected, 1);
    }
}
