//! `ordo bench e2e`: what a chaincode application sees — endorse → order → validate →
//! commit through the peers' Gateways — measured.
//!
//! # Method
//!
//! 1. **Accounts**, before the clock: `accounts` new `bank` accounts (names carry a random
//!    run id, so runs on one network never collide), each opened with
//!    [`OPENING_BALANCE`] through the gateway, every one committed VALID.
//! 2. **Load**: `clients` tasks, client `k` on the gateway of peer `k mod peers` (so every
//!    org's gateway serves some), each signing as its peer's org `client`. Each task loops:
//!    pick two distinct accounts from its own seeded RNG, build and sign a proposal
//!    `transfer FROM TO 1`, then time each phase — **endorse** (Gateway `Endorse`: the
//!    gateway collects the endorsements its policy needs), **order** (sign the transaction,
//!    Gateway `Submit`: answered once the orderer took it), **commit** (Gateway
//!    `CommitStatus`: answered once the gateway's peer committed the block) — and counts
//!    the validation code. A few accounts means many MVCC conflicts; many means almost
//!    none. The load ends after `txs` transactions in all, or after `duration`.
//! 3. **After**: every peer is polled until all are at one height (so every committed
//!    transaction is counted on every peer), their commit hashes compared, and the
//!    accounts' balances read back: the money is conserved exactly when their sum is
//!    `accounts × OPENING_BALANCE` (a transfer moves money; it never creates any).
//!
//! `tx_per_s` is VALID transactions per second from the first proposal to the moment the
//! slowest peer held the last block; `throughput` is the same over time, each VALID
//! transaction counted when its client received its commit status. Latencies are per
//! transaction, in milliseconds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use ordo_proto::identity::Identity;
use ordo_proto::pb::gateway::gateway_client::GatewayClient;
use ordo_proto::pb::peer::TxValidationCode;
use ordo_sdk::gateway::{commit_status_request, signed_proposal};
use ordo_sdk::network::Network;
use ordo_sdk::tx::{self, Proposal};

use crate::disk::{DiskSeries, DiskWatcher, SAMPLE_EVERY};
use crate::orderer::connect_to;
use crate::peers::{settled_infos, PeerConn};
use crate::stats::{LatencySummary, PercentileCurve, ThroughputSeries};
use crate::windows::{self, Drift, Finished, Window, DRIFT_SPAN};

/// The chaincode the end-to-end bench invokes (deployed by `ordo up`).
pub const E2E_CHAINCODE: &str = "bank";

/// Each account's balance when opened: far more than a run can move out of it one unit
/// at a time, so no transfer fails for want of funds.
pub const OPENING_BALANCE: u64 = 1_000_000_000;

/// After the load, how long the peers' heights may differ before they are compared
/// anyway (a peer that never catches up makes `commit_hashes_agree` false).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for one Gateway call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What `ordo bench e2e` was asked to do.
#[derive(Debug, Clone)]
pub struct E2eBenchOptions {
    /// The network to load; every node with role "peer" serves a gateway.
    pub network: Network,
    /// Channel to load; the network's first channel when `None`.
    pub channel: Option<String>,
    /// Transactions to submit in all; `None` with a `duration`.
    pub txs: Option<u64>,
    /// How long to keep submitting; `None` with `txs`.
    pub duration: Option<Duration>,
    /// Concurrent clients, each waiting for its transaction's commit status before the
    /// next (at least 1).
    pub clients: usize,
    /// Accounts the transfers move money between (at least 2).
    pub accounts: u32,
    /// Seeds the clients' choice of accounts.
    pub seed: u64,
    /// Print a progress line to stderr about once a second.
    pub progress: bool,
    /// Width of the report's windows (`windows`): throughput and latency per minute, say,
    /// for a long run.
    pub window: Duration,
    /// Directories whose disk use is sampled while the load runs (a node's data
    /// directory, say); none to sample nothing.
    pub watch_disk: Vec<PathBuf>,
}

/// The outcome of one end-to-end run. Field names end in their unit; counts are
/// transactions unless they say otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct E2eBenchReport {
    /// Consensus type of the channel.
    pub consensus: String,
    /// Broadcast ack mode of the channel.
    pub ack_mode: String,
    /// Channel id.
    pub channel: String,
    /// The chaincode invoked.
    pub chaincode: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Accounts the transfers used.
    pub accounts: u32,
    /// The gateways the clients used (peer node names).
    pub gateways: Vec<String>,
    /// Proposals sent for endorsement.
    pub txs_submitted: u64,
    /// Transactions with a commit status (VALID or not).
    pub txs_committed: u64,
    /// Validation code name → transactions.
    pub codes: BTreeMap<String, u64>,
    /// Transactions that failed before a commit status, by step and gRPC code.
    pub failures: BTreeMap<String, u64>,
    /// Seconds from the first proposal until the slowest peer held the last block.
    pub duration_s: f64,
    /// VALID transactions per second over `duration_s`.
    pub tx_per_s: f64,
    /// Proposal → commit status, per transaction with a commit status.
    pub latency_ms_p50: f64,
    /// 99th percentile of the same.
    pub latency_ms_p99: f64,
    /// Largest of the same.
    pub latency_ms_max: f64,
    /// The whole proposal → commit status distribution, in milliseconds: the tail and the
    /// shape that p50 and p99 alone hide (what `--plot` draws).
    pub latency_ms_percentiles: PercentileCurve,
    /// VALID transactions per second over time, from the first proposal to the end of
    /// `duration_s`, each counted when its client received its commit status: shows
    /// warm-up, stalls and the block cadence that the average hides.
    pub throughput: ThroughputSeries,
    /// Width of each of `windows`, in seconds.
    pub window_s: f64,
    /// The run cut into windows of `window_s`: VALID tx/s and the latency of the
    /// transactions that received their commit status in each (see `windows`).
    pub windows: Vec<Window>,
    /// The first 10 minutes against the last 10 (`None` for a run under 20 minutes).
    pub drift: Option<Drift>,
    /// Disk use of the watched directories over the run (`None` when none were given).
    pub disk: Option<DiskSeries>,
    /// Gateway `Endorse`.
    pub endorse_ms: Phase,
    /// Signing the transaction and Gateway `Submit` (answered once the orderer took it).
    pub order_ms: Phase,
    /// Gateway `CommitStatus` (answered once the gateway's peer committed it).
    pub commit_ms: Phase,
    /// All peers reached one height and have the same commit hash there.
    pub commit_hashes_agree: bool,
    /// Per peer, in network order.
    pub peers: Vec<E2ePeer>,
    /// Sum of the accounts' balances before the load, read back through a gateway.
    pub money_before: u64,
    /// Sum of the accounts' balances after it, read back through a gateway.
    pub money_after: u64,
    /// `money_before == money_after`.
    pub money_conserved: bool,
}

/// A phase's latency summary, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Phase {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
}

impl From<LatencySummary> for Phase {
    fn from(s: LatencySummary) -> Self {
        Self {
            p50: s.p50,
            p99: s.p99,
            mean: s.mean,
        }
    }
}

/// One peer after the run.
#[derive(Debug, Clone, Serialize)]
pub struct E2ePeer {
    /// Node name.
    pub name: String,
    /// Its org.
    pub org: String,
    /// Its height.
    pub height: u64,
    /// Hex commit hash at that height.
    pub commit_hash: String,
}

impl E2eBenchReport {
    /// A multi-line human-readable summary (no trailing newline).
    pub fn human(&self) -> String {
        let codes: Vec<String> = self.codes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let mut s = format!(
            "end-to-end benchmark on channel {:?} ({}, ack {}), {} clients over {} accounts\n\
             {:.0} VALID tx/s ({} submitted, {} committed: {}) in {:.2} s\n\
             latency submit → commit: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
             phases (p50 / p99 ms): endorse {:.1} / {:.1}, order {:.1} / {:.1}, commit {:.1} / {:.1}\n\
             peers agree: {}; money conserved: {} ({} → {})",
            self.channel,
            self.consensus,
            self.ack_mode,
            self.clients,
            self.accounts,
            self.tx_per_s,
            self.txs_submitted,
            self.txs_committed,
            codes.join(", "),
            self.duration_s,
            self.latency_ms_p50,
            self.latency_ms_p99,
            self.latency_ms_max,
            self.endorse_ms.p50,
            self.endorse_ms.p99,
            self.order_ms.p50,
            self.order_ms.p99,
            self.commit_ms.p50,
            self.commit_ms.p99,
            self.commit_hashes_agree,
            self.money_conserved,
            self.money_before,
            self.money_after,
        );
        if !self.failures.is_empty() {
            let f: Vec<String> = self
                .failures
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!("\nfailures: {}", f.join(", ")));
        }
        if let Some(d) = &self.drift {
            s.push_str(&format!(
                "\nfirst {:.0} s against the last: {:.0} → {:.0} VALID tx/s ({:+.1}%), p99 {:.1} → {:.1} ms ({:+.1}%)",
                d.span_s,
                d.first_tx_per_s,
                d.last_tx_per_s,
                d.throughput_change_pct,
                d.first_p99_ms,
                d.last_p99_ms,
                d.p99_change_pct
            ));
        }
        if let Some(disk) = &self.disk {
            s.push_str(&format!("\n{}", disk.summary()));
        }
        if self.windows.len() > 1 {
            let disk = |at_s: f64| self.disk.as_ref().and_then(|d| d.total_at(at_s));
            s.push_str(&format!(
                "\nper {:.0} s:\n{}",
                self.window_s,
                windows::table(&self.windows, &disk)
            ));
        }
        s
    }
}

/// One gateway and the org client that signs through it.
#[derive(Clone)]
struct Gateway {
    peer: String,
    client: GatewayClient<Channel>,
    identity: Identity,
}

/// What one client task measured.
#[derive(Default)]
struct ClientRecord {
    submitted: u64,
    codes: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
    /// Every transaction with a commit status: when it arrived, how long it took, whether
    /// it was VALID (16 bytes a transaction; for `throughput` and `windows`).
    finished: Vec<Finished>,
    endorse_ms: Vec<f64>,
    order_ms: Vec<f64>,
    commit_ms: Vec<f64>,
}

/// When the load started, and when it must stop (with `--duration`).
#[derive(Clone, Copy)]
struct Clock {
    started: Instant,
    deadline: Option<Instant>,
}

/// How one transaction ended.
enum Outcome {
    Committed {
        code: String,
        endorse: Duration,
        order: Duration,
        commit: Duration,
    },
    Failed(String),
}

/// Runs the end-to-end benchmark against a running network (see the module docs).
/// Fails when a node cannot be reached or the accounts cannot be opened; a run in which
/// transactions fail, peers disagree or money is not conserved succeeds and says so.
pub async fn run_e2e_bench(opts: E2eBenchOptions) -> anyhow::Result<E2eBenchReport> {
    if opts.clients == 0 {
        bail!("at least one client is needed");
    }
    if opts.accounts < 2 {
        bail!("a transfer needs two accounts: --accounts must be at least 2");
    }
    match (opts.txs, opts.duration) {
        (Some(0), _) => bail!("nothing to do: --txs must be at least 1"),
        (None, None) => bail!("say how much load: --txs N or --duration SECONDS"),
        (Some(_), Some(_)) => bail!("--txs and --duration exclude each other"),
        _ => {}
    }
    let net = &opts.network;
    let channel_entry = net.channel(opts.channel.as_deref())?.clone();
    let channel = channel_entry.name.clone();

    let mut gateways = Vec::new();
    let mut peers = Vec::new();
    for node in net.nodes_with_role("peer") {
        let member = net
            .member(Some(&node.org), "client")
            .with_context(|| format!("loading the client identity of {}", node.org))?;
        let admin = net
            .identity(Some(&node.org), "admin")
            .with_context(|| format!("loading the admin identity of {}", node.org))?;
        let conn = connect_to("peer", &node.grpc_addr, &member.transport).await?;
        gateways.push(Gateway {
            peer: node.name.clone(),
            client: GatewayClient::new(conn.clone()),
            identity: member.identity,
        });
        peers.push(PeerConn::new(
            node.name.clone(),
            node.org.clone(),
            node.grpc_addr.clone(),
            admin,
            conn,
        ));
    }
    if gateways.is_empty() {
        bail!("the network has no peers (was it started with `ordo up --no-peers`?)");
    }

    let run_id: u32 = rand::random();
    let names: Arc<Vec<String>> = Arc::new(
        (0..opts.accounts)
            .map(|i| format!("e2e-{run_id:08x}-{i}"))
            .collect(),
    );
    if opts.progress {
        eprintln!(
            "opening {} accounts of {OPENING_BALANCE} through {} gateways before the clock starts…",
            names.len(),
            gateways.len()
        );
    }
    open_accounts(&gateways, &channel, &names, opts.clients).await?;
    let money_before = balances(&gateways[0], &channel, &names).await?;
    if money_before != u64::from(opts.accounts) * OPENING_BALANCE {
        bail!(
            "the {} accounts just opened hold {money_before} in all, not {} each",
            opts.accounts,
            OPENING_BALANCE
        );
    }

    // The load.
    let remaining = Arc::new(AtomicU64::new(opts.txs.unwrap_or(u64::MAX)));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let disk = if opts.watch_disk.is_empty() {
        None
    } else {
        Some(DiskWatcher::start(&opts.watch_disk, SAMPLE_EVERY, started).context("--watch-disk")?)
    };
    let clock = Clock {
        started,
        deadline: opts.duration.map(|d| started + d),
    };
    let mut tasks = JoinSet::new();
    for k in 0..opts.clients {
        let gw = gateways[k % gateways.len()].clone();
        let (channel, names) = (channel.clone(), names.clone());
        let (remaining, done) = (remaining.clone(), done.clone());
        let seed = opts.seed.wrapping_add(k as u64);
        tasks.spawn(async move {
            client_loop(gw, &channel, &names, seed, &remaining, clock, &done).await
        });
    }
    let progress = opts.progress.then(|| {
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = done.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>6.1}s] committed {now}  ({} tx/s)",
                    started.elapsed().as_secs_f64(),
                    now - last
                );
                last = now;
            }
        })
    });
    let mut records = Vec::new();
    while let Some(r) = tasks.join_next().await {
        records.push(r.context("a client task failed")?);
    }
    if let Some(p) = progress {
        p.abort();
    }
    let infos = settled_infos(&mut peers, &channel, SETTLE_TIMEOUT).await?;
    let duration = started.elapsed();
    let disk = match disk {
        Some(watcher) => Some(watcher.finish().await),
        None => None,
    };
    let first = infos.first().context("no peer answered")?;
    let commit_hashes_agree = infos
        .iter()
        .all(|i| i.height == first.height && i.commit_hash == first.commit_hash);
    let money_after = balances(&gateways[0], &channel, &names).await?;

    let mut all = ClientRecord::default();
    for r in records {
        all.submitted += r.submitted;
        for (k, v) in r.codes {
            *all.codes.entry(k).or_default() += v;
        }
        for (k, v) in r.failures {
            *all.failures.entry(k).or_default() += v;
        }
        all.finished.extend(r.finished);
        all.endorse_ms.extend(r.endorse_ms);
        all.order_ms.extend(r.order_ms);
        all.commit_ms.extend(r.commit_ms);
    }
    let committed: u64 = all.codes.values().sum();
    let valid = all.codes.get("VALID").copied().unwrap_or(0);
    let mut total_ms: Vec<f64> = all.finished.iter().map(|f| f.latency_ms).collect();
    let total = LatencySummary::from_samples(&mut total_ms);
    let throughput = ThroughputSeries::from_events(
        duration,
        all.finished
            .iter()
            .filter(|f| f.counted)
            .map(|f| (Duration::from_millis(u64::from(f.at_ms)), 1)),
    );
    // The load's own span (not the settling after it), so the last window is not diluted
    // by the wait for the peers: the duration asked for (transactions in flight at its end
    // count in the last window), or until the last commit status of a `--txs` run.
    let load_span = opts.duration.unwrap_or_else(|| {
        all.finished
            .iter()
            .map(|f| Duration::from_millis(u64::from(f.at_ms)))
            .max()
            .unwrap_or_default()
    });
    let windows = windows::windows(load_span, opts.window, &all.finished);
    let drift = windows::drift(load_span, DRIFT_SPAN, &all.finished);
    let secs = duration.as_secs_f64();
    Ok(E2eBenchReport {
        consensus: channel_entry.consensus.clone(),
        ack_mode: channel_entry.ack_mode.clone(),
        channel,
        chaincode: E2E_CHAINCODE.into(),
        clients: opts.clients,
        accounts: opts.accounts,
        gateways: gateways.iter().map(|g| g.peer.clone()).collect(),
        txs_submitted: all.submitted,
        txs_committed: committed,
        codes: all.codes,
        failures: all.failures,
        duration_s: secs,
        tx_per_s: if secs > 0.0 { valid as f64 / secs } else { 0.0 },
        latency_ms_p50: total.p50,
        latency_ms_p99: total.p99,
        latency_ms_max: total.max,
        latency_ms_percentiles: PercentileCurve::from_sorted(&total_ms),
        throughput,
        window_s: opts.window.as_secs_f64(),
        windows,
        drift,
        disk,
        endorse_ms: LatencySummary::from_samples(&mut all.endorse_ms).into(),
        order_ms: LatencySummary::from_samples(&mut all.order_ms).into(),
        commit_ms: LatencySummary::from_samples(&mut all.commit_ms).into(),
        commit_hashes_agree,
        peers: peers
            .iter()
            .zip(&infos)
            .map(|(p, i)| E2ePeer {
                name: p.name.clone(),
                org: p.org.clone(),
                height: i.height,
                commit_hash: hex::encode(&i.commit_hash),
            })
            .collect(),
        money_before,
        money_after,
        money_conserved: money_before == money_after,
    })
}

/// One client: transfers until the shared budget or the deadline runs out.
async fn client_loop(
    mut gw: Gateway,
    channel: &str,
    names: &[String],
    seed: u64,
    remaining: &AtomicU64,
    clock: Clock,
    done: &AtomicU64,
) -> ClientRecord {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rec = ClientRecord::default();
    loop {
        if clock.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let took =
            remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if took.is_err() {
            break;
        }
        let from = rng.gen_range(0..names.len());
        let to = (from + rng.gen_range(1..names.len())) % names.len();
        let args = vec![
            Bytes::from(names[from].clone()),
            Bytes::from(names[to].clone()),
            Bytes::from_static(b"1"),
        ];
        rec.submitted += 1;
        let t0 = Instant::now();
        match transact(&mut gw, channel, "transfer", args).await {
            Outcome::Committed {
                code,
                endorse,
                order,
                commit,
            } => {
                let now = Instant::now();
                let since_start = now.saturating_duration_since(clock.started).as_millis();
                rec.finished.push(Finished {
                    at_ms: u32::try_from(since_start).unwrap_or(u32::MAX),
                    latency_ms: ms(now.saturating_duration_since(t0)),
                    counted: code == "VALID",
                });
                rec.endorse_ms.push(ms(endorse));
                rec.order_ms.push(ms(order));
                rec.commit_ms.push(ms(commit));
                *rec.codes.entry(code).or_default() += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(why) => *rec.failures.entry(why).or_default() += 1,
        }
    }
    rec
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Endorses, signs, submits and waits for the commit status of one invocation, timing
/// each phase.
async fn transact(gw: &mut Gateway, channel: &str, function: &str, args: Vec<Bytes>) -> Outcome {
    let proposal = Proposal::new(
        &gw.identity,
        channel,
        tx::invocation(E2E_CHAINCODE, function, args),
    );
    let request = signed_proposal(&gw.identity, &proposal, ordo_proto::now_ms());
    let t0 = Instant::now();
    let request = ordo_proto::pb::gateway::EndorseRequest {
        proposal: Some(request),
        endorsing_orgs: Vec::new(),
    };
    let endorsed = match call(gw.client.endorse(request)).await {
        Ok(e) => e,
        Err(code) => return Outcome::Failed(format!("endorse {code}")),
    };
    let t1 = Instant::now();
    let signature = gw.identity.sign(&endorsed.payload);
    let transaction = tx::attach_signature(endorsed.payload, &signature);
    if let Err(code) = call(gw.client.submit(transaction)).await {
        return Outcome::Failed(format!("submit {code}"));
    }
    let t2 = Instant::now();
    let status_request = commit_status_request(&gw.identity, channel, proposal.tx_id());
    let status = match call(gw.client.commit_status(status_request)).await {
        Ok(s) => s,
        Err(code) => return Outcome::Failed(format!("commit_status {code}")),
    };
    let code = TxValidationCode::try_from(status.code as i32)
        .map(|c| c.as_str_name().to_string())
        .unwrap_or_else(|_| format!("code {}", status.code));
    Outcome::Committed {
        code,
        endorse: t1 - t0,
        order: t2 - t1,
        commit: t2.elapsed(),
    }
}

/// A Gateway call with [`CALL_TIMEOUT`]; the gRPC code's name on failure.
async fn call<T>(
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(status)) => Err(format!("{:?}", status.code())),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

/// Opens every account (spread over the gateways, `parallel` at a time); each must commit
/// VALID.
async fn open_accounts(
    gateways: &[Gateway],
    channel: &str,
    names: &Arc<Vec<String>>,
    parallel: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for k in 0..parallel.min(names.len()) {
        let mut gw = gateways[k % gateways.len()].clone();
        let (names, next, channel) = (names.clone(), next.clone(), channel.to_string());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(name) = names.get(i) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let args = vec![
                    Bytes::from(name.clone()),
                    Bytes::from(OPENING_BALANCE.to_string()),
                ];
                match transact(&mut gw, &channel, "open", args).await {
                    Outcome::Committed { code, .. } if code == "VALID" => {}
                    Outcome::Committed { code, .. } => {
                        bail!("opening account {name} committed as {code}")
                    }
                    Outcome::Failed(why) => bail!("opening account {name}: {why}"),
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("an account-opening task failed")??;
    }
    Ok(())
}

/// The sum of the accounts' balances, read through `gw` (Gateway `Evaluate`).
async fn balances(gw: &Gateway, channel: &str, names: &[String]) -> anyhow::Result<u64> {
    let mut client = gw.client.clone();
    let mut sum = 0u64;
    for name in names {
        let proposal = Proposal::new(
            &gw.identity,
            channel,
            tx::invocation(E2E_CHAINCODE, "balance", vec![Bytes::from(name.clone())]),
        );
        let request = signed_proposal(&gw.identity, &proposal, ordo_proto::now_ms());
        let answer = call(client.evaluate(request))
            .await
            .map_err(|code| anyhow!("reading the balance of {name}: {code}"))?;
        let result = answer.result.unwrap_or_default();
        let text = std::str::from_utf8(&result.payload)
            .with_context(|| format!("the balance of {name} is not text"))?;
        let balance: u64 = text
            .trim()
            .parse()
            .with_context(|| format!("the balance of {name} is {text:?}"))?;
        sum = sum
            .checked_add(balance)
            .context("the balances overflow a u64")?;
    }
    Ok(sum)
}
