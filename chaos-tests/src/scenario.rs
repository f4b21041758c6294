//! The scenario catalogue and the runner: build a network, put load on it, let the
//! nemesis work for a while, heal, wait for progress and convergence, read every chain,
//! check the history.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::check::{self, Expectations, Violation};
use crate::history::{Event, History};
use crate::load::{Load, LoadSpec, Payload};
use crate::nemesis::Nemesis;
use crate::net::{Backend, Net, NetError, NetSpec, NodeRef};
use crate::observe;

mod inject;
pub(crate) mod pruning;
mod snapshots;
use inject::inject;

/// A fault pattern. Which backends it applies to is [`Scenario::applies_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Scenario {
    /// Kill -9 an orderer (raft: the leader) and restart it, again and again.
    KillLoop,
    /// Stop and restart each orderer in turn.
    RollingRestart,
    /// Raft: cut one follower off, then heal.
    MinorityPartition,
    /// Raft: cut every orderer from every other: no majority anywhere, no progress, no
    /// fork; then heal and resume.
    MajorityPartition,
    /// Raft: links between random pairs cut and healed every few hundred milliseconds.
    FlappingLinks,
    /// Raft: the leader cannot send to the followers, but hears them.
    AsymmetricCut,
    /// Raft: every link slowed and its connections reset.
    SlowAndResetLinks,
    /// Pause an orderer (raft: the leader, past the election timeout), then resume it.
    PauseLeader,
    /// Raft with a 1 MiB snapshot interval: kill followers while snapshots are taken and
    /// sent.
    KillDuringSnapshot,
    /// Fill an orderer's disk (raft: a follower), then free it.
    DiskFull,
    /// Peers: kill -9 a peer while it commits, again and again; peers must agree.
    PeerKilledMidCommit,
    /// Kafka: every broker down, then up.
    KafkaBrokersDown,
    /// Kafka: the partition leader moves between brokers, produce requests fail.
    KafkaLeaderMoved,
    /// Peers: one peer's first orderer endpoint relays blocks and tampers with every
    /// third; it must refuse them, fall back to an honest orderer, and agree with the
    /// other peer.
    TamperedBlock,
    /// While orderers are killed (raft: or isolated), renew every orderer's TLS
    /// certificate with a new key, SIGHUP it and (raft) pin it with a consenter update, one
    /// node at a time, retrying updates refused for lack of quorum; then a peer's and the
    /// client's certificates ([`crate::rotate`]). Certificates expire, so rotation is
    /// routine; it must not cost an acknowledged transaction or fork a chain.
    RotateCertificates,
    /// Peers: kill -9 a peer while it writes a snapshot of the channel, again and again;
    /// once back it must take one, and peers must agree.
    KillWhileSnapshotting,
    /// Peers: a peer leaves the channel and joins it again from the other peer's
    /// snapshot, and is killed -9 while it joins, again and again; once back it must
    /// join (an interrupted join leaves nothing in the way), and its commit hashes must
    /// agree with the peer that never left.
    KillWhileJoiningFromSnapshot,
    /// Every node (orderers and peers) keeps only its newest blocks and archives the
    /// rest; nodes are killed -9 while an archive segment is written, right after one was
    /// renamed into place (before the ledger's delete), and at random moments. Each node's
    /// archive followed by its ledger must be the whole chain.
    KillWhilePruning,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 18] = [
        Scenario::KillLoop,
        Scenario::RollingRestart,
        Scenario::MinorityPartition,
        Scenario::MajorityPartition,
        Scenario::FlappingLinks,
        Scenario::AsymmetricCut,
        Scenario::SlowAndResetLinks,
        Scenario::PauseLeader,
        Scenario::KillDuringSnapshot,
        Scenario::DiskFull,
        Scenario::PeerKilledMidCommit,
        Scenario::KafkaBrokersDown,
        Scenario::KafkaLeaderMoved,
        Scenario::TamperedBlock,
        Scenario::RotateCertificates,
        Scenario::KillWhileSnapshotting,
        Scenario::KillWhileJoiningFromSnapshot,
        Scenario::KillWhilePruning,
    ];

    /// Whether the scenario means something on `backend`.
    pub fn applies_to(self, backend: Backend) -> bool {
        use Scenario::*;
        match self {
            KillLoop | RollingRestart | PauseLeader | DiskFull | PeerKilledMidCommit
            | TamperedBlock | RotateCertificates => true,
            MinorityPartition | MajorityPartition | FlappingLinks | AsymmetricCut
            | SlowAndResetLinks | KillDuringSnapshot => backend == Backend::Raft,
            KafkaBrokersDown | KafkaLeaderMoved => backend == Backend::Kafka,
            // Peer-side faults: solo, and raft (whose orderers the joining peer reaches
            // through the fault proxies) cover the orderer side they touch.
            KillWhileSnapshotting | KillWhileJoiningFromSnapshot => backend != Backend::Kafka,
            // Solo, and raft with its snapshot ceiling; a Kafka orderer needs only its last
            // block (the resume point), which pruning always keeps.
            KillWhilePruning => backend != Backend::Kafka,
        }
    }

    /// Bytes of data per envelope of the orderer-only load: large where the scenario
    /// needs the raft log to grow past its snapshot interval quickly.
    pub fn payload_bytes(self) -> usize {
        match self {
            Scenario::KillDuringSnapshot => 8 * 1024,
            _ => 200,
        }
    }

    /// The network the scenario needs.
    pub fn net_spec(self, backend: Backend) -> NetSpec {
        let mut spec = NetSpec::new(backend);
        match self {
            Scenario::PeerKilledMidCommit
            | Scenario::RotateCertificates
            | Scenario::KillWhileSnapshotting
            | Scenario::KillWhileJoiningFromSnapshot => spec.peers = 2,
            Scenario::TamperedBlock => {
                spec.peers = 2;
                spec.lying_orderer = true;
            }
            Scenario::KillDuringSnapshot => spec.raft_snapshot_bytes = 1 << 20,
            Scenario::KillWhilePruning => {
                spec.peers = 2;
                // Raft snapshots often, so its ceiling lets pruning follow the window.
                spec.raft_snapshot_bytes = 1 << 20;
                spec.orderer_env = pruning::pruning_env(pruning::ORDERER_RETAIN_BLOCKS);
                spec.peer_env = pruning::pruning_env(pruning::PEER_RETAIN_BLOCKS);
            }
            Scenario::DiskFull => spec.orderer_disk_mb = Some(256),
            _ => {}
        }
        spec
    }
}

/// How long and how hard.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Seeds the nemesis (which node, when, how long).
    pub seed: u64,
    /// How long faults are injected.
    pub fault_time: Duration,
    /// Load clients.
    pub clients: usize,
    /// Envelopes each client keeps in flight.
    pub window: usize,
    /// The first acknowledgement after healing must come within this.
    pub liveness_bound: Duration,
    /// Append the report to `results.jsonl` (the results table); off for runs that
    /// break a promise on purpose.
    pub record: bool,
}

impl RunConfig {
    /// The short run CI does.
    pub fn short(seed: u64) -> Self {
        Self {
            seed,
            fault_time: Duration::from_secs(6),
            clients: 3,
            window: 8,
            liveness_bound: Duration::from_secs(20),
            record: true,
        }
    }

    /// The long sweep (`--ignored`).
    pub fn long(seed: u64) -> Self {
        Self {
            fault_time: Duration::from_secs(40),
            clients: 4,
            ..Self::short(seed)
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// The backend.
    pub backend: Backend,
    /// The nemesis seed.
    pub seed: u64,
    /// Faults injected.
    pub faults: usize,
    /// What they were, in order.
    pub fault_log: Vec<String>,
    /// Transactions submitted.
    pub submitted: u64,
    /// Transactions acknowledged.
    pub acked: u64,
    /// Blocks in the final chain.
    pub blocks: u64,
    /// What the checkers found.
    pub violations: Vec<Violation>,
    /// Where the history was written (when there were violations).
    pub history_file: Option<PathBuf>,
}

impl Report {
    /// One line for logs and the results table.
    pub fn line(&self) -> String {
        format!(
            "{:?} on {}: seed {}, {} faults, {} submitted, {} acked, {} blocks, {} violations",
            self.scenario,
            self.backend.name(),
            self.seed,
            self.faults,
            self.submitted,
            self.acked,
            self.blocks,
            self.violations.len()
        )
    }
}

/// Runs `scenario` on a fresh `backend` network.
pub async fn run(
    scenario: Scenario,
    backend: Backend,
    cfg: &RunConfig,
) -> Result<Report, NetError> {
    run_with(scenario, scenario.net_spec(backend), cfg).await
}

/// Runs `scenario` on a network built from `spec` (tests that change the network, e.g.
/// to switch a test fault on).
pub async fn run_with(
    scenario: Scenario,
    spec: NetSpec,
    cfg: &RunConfig,
) -> Result<Report, NetError> {
    let backend = spec.backend;
    let mut net = Net::start(spec).await?;
    let history = History::new();
    let stop_observers = CancellationToken::new();
    let mut observers = Vec::new();
    for (i, o) in net.orderers.iter().enumerate() {
        observers.push(observe::follow(
            format!("orderer{i}"),
            o.addr.clone(),
            net.client.clone(),
            net.transport.clone(),
            history.clone(),
            stop_observers.clone(),
        ));
    }
    for (i, p) in net.peers.iter().enumerate() {
        let addr = p.addr.clone();
        let admin = p.admin.clone();
        let transport = p.admin_transport.clone();
        observers.push(observe::poll_peer(
            format!("peer{i}"),
            move || peer_state(addr.clone(), admin.clone(), transport.clone()),
            history.clone(),
            stop_observers.clone(),
        ));
    }
    let payload = if net.peers.is_empty() {
        Payload::Message {
            bytes: scenario.payload_bytes(),
        }
    } else {
        Payload::BankWrite {
            keys: 50,
            endorsers: vec![net.endorsers[0].clone()],
        }
    };
    let orderer_addrs: Vec<String> = net.orderers.iter().map(|o| o.addr.clone()).collect();
    let load = Load::start(
        LoadSpec {
            clients: cfg.clients,
            window: cfg.window,
            payload,
            transport: net.transport.clone(),
        },
        orderer_addrs.clone(),
        net.client.clone(),
        history.clone(),
    );
    // Warm up: faults start once the network has ordered something.
    let warm = tokio::time::Instant::now() + Duration::from_secs(20);
    while load.stats.acked.load(Ordering::Relaxed) < 20 && tokio::time::Instant::now() < warm {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (faults, scenario_violations) = {
        let mut nemesis = Nemesis::new(&mut net, history.clone());
        let found = inject(scenario, &mut nemesis, &mut rng, cfg.fault_time).await;
        nemesis.heal();
        (nemesis.faults, found)
    };

    // Progress after healing: the load keeps going until it gets acknowledgements again.
    let healed_acks = load.stats.acked.load(Ordering::Relaxed);
    let live = tokio::time::Instant::now() + cfg.liveness_bound;
    while load.stats.acked.load(Ordering::Relaxed) < healed_acks + 20
        && tokio::time::Instant::now() < live
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both counted once the clients stopped: an envelope sent in between would show as
    // acknowledged but not submitted.
    let stats = load.stats.clone();
    load.stop().await;
    let submitted = stats.submitted.load(Ordering::Relaxed);
    let acked = load_acked(&history);

    converge(&net, Duration::from_secs(30)).await;
    let mut blocks = 0;
    for (i, o) in net.orderers.iter().enumerate() {
        if let Ok(h) = observe::record_final_chain(
            &format!("orderer{i}"),
            &o.addr,
            &net.client,
            &net.transport,
            &history,
            Some(&o.data_dir),
        )
        .await
        {
            blocks = blocks.max(h);
        }
    }
    // Peers: their final state once they reached the orderers' height, and their chain
    // (which must be the orderers', block for block: a tampered block committed shows as
    // a fork).
    for (i, p) in net.peers.iter().enumerate() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            if let Some((h, hash)) =
                peer_state(p.addr.clone(), p.admin.clone(), p.admin_transport.clone()).await
            {
                if h >= blocks {
                    history.record(Event::PeerState {
                        peer: format!("peer{i}"),
                        height: h,
                        commit_hash: hex::encode(hash),
                    });
                    observe::record_peer_chain(
                        &format!("peer{i}"),
                        &p.addr,
                        &p.admin,
                        &p.admin_transport,
                        h,
                        &history,
                        Some(&p.data_dir),
                    )
                    .await;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // A node that died after healing (while converging, or on the final reads) counts too.
    crate::nemesis::reap_exits(&mut net, &history);
    stop_observers.cancel();
    for o in observers {
        let _ = o.await;
    }

    let records = history.snapshot();
    let expect = Expectations {
        committed_acks: net.spec.committed,
        liveness_bound_ms: u64::try_from(cfg.liveness_bound.as_millis()).unwrap_or(u64::MAX),
        full_nodes: (0..net.orderers.len())
            .map(|i| format!("orderer{i}"))
            .collect(),
    };
    let mut violations = check::all(&records, &expect);
    violations.extend(scenario_violations);
    // Every archive a node wrote verifies on its own (the final chains already hold its
    // blocks; one that does not verify was left out of them).
    for (name, data_dir) in net
        .orderers
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("orderer{i}"), &o.data_dir))
        .chain(
            net.peers
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("peer{i}"), &p.data_dir)),
        )
    {
        if let Err(why) = pruning::final_archive(data_dir) {
            violations.push(Violation::new("archive", format!("{name}: {why}")));
        }
    }
    // Peers that never reported a final state at the orderers' height did not catch up.
    for i in 0..net.peers.len() {
        let name = format!("peer{i}");
        let reached = records.iter().any(|r| {
            matches!(&r.event, Event::PeerState { peer, height, .. } if *peer == name && *height >= blocks)
        });
        if !reached {
            violations.push(Violation::new(
                "liveness",
                format!("{name} did not reach height {blocks} after healing"),
            ));
        }
    }
    // The nodes' last log lines, kept for every run (overwritten by the next run of the
    // same scenario, backend and seed).
    let _ = std::fs::create_dir_all(results_dir());
    let _ = std::fs::write(
        results_dir().join(format!("{scenario:?}-{}-{}.logs", backend.name(), cfg.seed)),
        net.logs(300),
    );
    let history_file = if violations.is_empty() {
        None
    } else {
        let path = results_dir().join(format!(
            "history-{scenario:?}-{}-{}.json",
            backend.name(),
            cfg.seed
        ));
        let _ = std::fs::create_dir_all(results_dir());
        let _ = std::fs::write(
            &path,
            serde_json::to_vec_pretty(&records).unwrap_or_default(),
        );
        Some(path)
    };
    let fault_log = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Fault { what } => Some(format!("{} ms: {what}", r.at_ms)),
            _ => None,
        })
        .collect();
    let report = Report {
        scenario,
        backend,
        seed: cfg.seed,
        faults,
        fault_log,
        submitted,
        acked,
        blocks,
        violations,
        history_file,
    };
    if cfg.record {
        append_result(&report);
    }
    Ok(report)
}

/// Acknowledged transactions in the history.
fn load_acked(history: &History) -> u64 {
    history.count(|e| {
        matches!(
            e,
            Event::Ack {
                outcome: crate::history::AckOutcome::Success { .. },
                ..
            }
        )
    }) as u64
}

/// Waits until every orderer reports the same height twice in a row (bounded).
async fn converge(net: &Net, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut last: Option<u64> = None;
    while tokio::time::Instant::now() < deadline {
        let mut heights = Vec::new();
        for i in 0..net.orderers.len() {
            heights.push(net.info(NodeRef::Orderer(i)).await.map(|i| i.height).ok());
        }
        let first = heights.first().copied().flatten();
        let same = first.is_some() && heights.iter().all(|h| *h == first);
        if same && last == first {
            return;
        }
        last = if same { first } else { None };
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn peer_state(
    addr: String,
    admin: ordo_proto::identity::Identity,
    transport: ordo_sdk::transport::Transport,
) -> Option<(u64, Vec<u8>)> {
    let conn = ordo_sdk::orderer::connect(&addr, &transport).await.ok()?;
    let mut client = ordo_sdk::orderer::admin_client(conn);
    let req = ordo_sdk::orderer::admin_request(
        &admin,
        crate::net::CHANNEL,
        ordo_proto::pb::admin::admin_command::Command::Info(
            ordo_proto::pb::admin::GetChannelInfo {
                channel_id: crate::net::CHANNEL.into(),
            },
        ),
    );
    let resp = tokio::time::timeout(Duration::from_secs(3), client.execute(req))
        .await
        .ok()?
        .ok()?
        .into_inner();
    let info = resp.channel?;
    Some((info.height, info.commit_hash.to_vec()))
}

/// The heights the orderers report now (`None` for one that does not answer).
async fn heights(net: &Net) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for i in 0..net.orderers.len() {
        out.push(net.info(NodeRef::Orderer(i)).await.ok().map(|i| i.height));
    }
    out
}

/// Where reports and failing histories go: `ORDO_CHAOS_RESULTS`, else `chaos/` in the
/// cargo target directory the running executable was built in (the ancestor cargo marks
/// with `CACHEDIR.TAG`).
pub fn results_dir() -> PathBuf {
    if let Ok(d) = std::env::var("ORDO_CHAOS_RESULTS") {
        return PathBuf::from(d);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| {
            e.ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").exists())
                .map(|target| target.join("chaos"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("ordo-chaos"))
}

fn append_result(report: &Report) {
    use std::io::Write;
    let dir = results_dir();
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("results.jsonl"))
    {
        let _ = writeln!(f, "{}", serde_json::to_string(report).unwrap_or_default());
    }
}
