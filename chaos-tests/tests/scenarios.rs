//! The scenario catalogue over real processes: each scenario on each backend it applies
//! to, a short run each (CI; `ORDO_CHAOS_SEED_OFFSET=N` shifts every seed);
//! `cargo test -p ordo-chaos --test scenarios -- --ignored` runs the long sweep with
//! several seeds (`ORDO_CHAOS_SEEDS`, default 3).
//!
//! Runs are serialised (one network at a time): two clusters on two cores would turn
//! every timeout into a coin toss. A failing run prints its report and leaves the history
//! and the nodes' logs under `target/chaos/`.

use ordo_chaos::net::Backend;
use ordo_chaos::scenario::{self, RunConfig, Scenario};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn check(scenario: Scenario, backend: Backend, cfg: RunConfig) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let report = scenario::run(scenario, backend, &cfg)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{scenario:?} on {}: the network failed: {e}",
                backend.name()
            )
        });
    println!("{}\n  {}", report.line(), report.fault_log.join("\n  "));
    assert!(
        report.faults > 0,
        "the nemesis did nothing: {}",
        report.line()
    );
    assert!(
        report.acked > 0,
        "nothing was acknowledged: {}",
        report.line()
    );
    assert!(
        report.violations.is_empty(),
        "{}\n{}\nhistory: {:?}",
        report.line(),
        report
            .violations
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        report.history_file
    );
}

/// `ORDO_CHAOS_SEED_OFFSET`: added to every short run's seed, so the same catalogue runs
/// other nemesis schedules (which node, when, how long); 0 when unset. A value that is not
/// a number is refused rather than silently ignored.
fn seed_offset() -> u64 {
    match std::env::var("ORDO_CHAOS_SEED_OFFSET") {
        Err(_) => 0,
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("ORDO_CHAOS_SEED_OFFSET={v:?} is not a number")),
    }
}

macro_rules! short {
    ($name:ident, $scenario:ident, $backend:ident, $seed:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            check(
                Scenario::$scenario,
                Backend::$backend,
                RunConfig::short($seed + seed_offset()),
            )
            .await;
        }
    };
}

short!(solo_kill_loop, KillLoop, Solo, 1);
short!(solo_rolling_restart, RollingRestart, Solo, 2);
short!(solo_pause, PauseLeader, Solo, 3);
short!(solo_disk_full, DiskFull, Solo, 4);
short!(solo_peer_killed_mid_commit, PeerKilledMidCommit, Solo, 5);
short!(solo_tampered_block, TamperedBlock, Solo, 6);
short!(solo_rotate_certificates, RotateCertificates, Solo, 7);
short!(solo_kill_while_snapshotting, KillWhileSnapshotting, Solo, 8);
short!(
    solo_kill_while_joining_from_snapshot,
    KillWhileJoiningFromSnapshot,
    Solo,
    9
);
short!(solo_kill_while_pruning, KillWhilePruning, Solo, 10);

short!(raft_leader_kill_loop, KillLoop, Raft, 11);
short!(raft_rolling_restart, RollingRestart, Raft, 12);
short!(raft_minority_partition, MinorityPartition, Raft, 13);
short!(raft_majority_partition, MajorityPartition, Raft, 14);
short!(raft_flapping_links, FlappingLinks, Raft, 15);
short!(raft_asymmetric_cut, AsymmetricCut, Raft, 16);
short!(raft_slow_and_reset_links, SlowAndResetLinks, Raft, 17);
short!(raft_pause_leader, PauseLeader, Raft, 18);
short!(raft_kill_during_snapshot, KillDuringSnapshot, Raft, 19);
short!(raft_disk_full_follower, DiskFull, Raft, 20);
short!(raft_peer_killed_mid_commit, PeerKilledMidCommit, Raft, 21);
short!(raft_tampered_block, TamperedBlock, Raft, 22);
short!(raft_rotate_certificates, RotateCertificates, Raft, 23);
short!(
    raft_kill_while_snapshotting,
    KillWhileSnapshotting,
    Raft,
    24
);
short!(
    raft_kill_while_joining_from_snapshot,
    KillWhileJoiningFromSnapshot,
    Raft,
    25
);
short!(raft_kill_while_pruning, KillWhilePruning, Raft, 26);

short!(kafka_orderer_kill_loop, KillLoop, Kafka, 31);
short!(kafka_rolling_restart, RollingRestart, Kafka, 32);
short!(kafka_pause_orderer, PauseLeader, Kafka, 33);
short!(kafka_brokers_down, KafkaBrokersDown, Kafka, 34);
short!(kafka_leader_moved, KafkaLeaderMoved, Kafka, 35);
short!(kafka_disk_full, DiskFull, Kafka, 36);
short!(kafka_peer_killed_mid_commit, PeerKilledMidCommit, Kafka, 37);
short!(kafka_tampered_block, TamperedBlock, Kafka, 38);
short!(kafka_rotate_certificates, RotateCertificates, Kafka, 39);

/// The long sweep: every scenario on every backend it applies to, several seeds each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long sweep (minutes per scenario); run with --ignored"]
async fn long_sweep() {
    let seeds: u64 = std::env::var("ORDO_CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for backend in [Backend::Solo, Backend::Raft, Backend::Kafka] {
        for scenario in Scenario::ALL {
            if scenario.applies_to(backend) {
                for seed in 0..seeds {
                    check(scenario, backend, RunConfig::long(1000 + seed)).await;
                }
            }
        }
    }
}
