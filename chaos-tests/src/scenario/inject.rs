//! The faults of each scenario, injected while the clients run.

use super::*;

/// The scenario's faults, for about `time`; returns what the scenario itself saw break
/// (properties particular to it, e.g. no progress without a majority).
pub(super) async fn inject(
    scenario: Scenario,
    n: &mut Nemesis<'_>,
    rng: &mut StdRng,
    time: Duration,
) -> Vec<Violation> {
    let mut found = Vec::new();
    let end = tokio::time::Instant::now() + time;
    let orderers = n.net.orderers.len();
    let pause = |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.gen_range(lo..hi));
    match scenario {
        Scenario::KillLoop => {
            while tokio::time::Instant::now() < end {
                let victim = match n.net.spec.backend {
                    Backend::Raft => n.net.raft_leader().await.unwrap_or(0),
                    _ => rng.gen_range(0..orderers),
                };
                n.kill(NodeRef::Orderer(victim));
                tokio::time::sleep(pause(rng, 200, 1200)).await;
                n.start(NodeRef::Orderer(victim));
                tokio::time::sleep(pause(rng, 1000, 2500)).await;
            }
        }
        Scenario::RollingRestart => {
            for i in 0..orderers {
                n.stop(NodeRef::Orderer(i));
                tokio::time::sleep(pause(rng, 200, 800)).await;
                n.start(NodeRef::Orderer(i));
                tokio::time::sleep(pause(rng, 1500, 2500)).await;
            }
        }
        Scenario::MinorityPartition => {
            while tokio::time::Instant::now() < end {
                let lone = rng.gen_range(0..orderers);
                let rest: BTreeSet<usize> = (0..orderers).filter(|o| *o != lone).collect();
                n.partition(&[BTreeSet::from([lone]), rest]);
                tokio::time::sleep(pause(rng, 1500, 3000)).await;
                n.heal_links();
                tokio::time::sleep(pause(rng, 500, 1500)).await;
            }
        }
        Scenario::MajorityPartition => {
            let singles: Vec<BTreeSet<usize>> =
                (0..orderers).map(|o| BTreeSet::from([o])).collect();
            n.partition(&singles);
            // Blocks already committed may still be written in the first moments; after
            // that, without a majority, no orderer may add a block.
            let settle = Duration::from_millis(1500).min(time / 2);
            tokio::time::sleep(settle).await;
            let before = heights(n.net).await;
            tokio::time::sleep(time.saturating_sub(settle)).await;
            let after = heights(n.net).await;
            for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                if let (Some(b), Some(a)) = (b, a) {
                    if a > b {
                        found.push(Violation::new(
                            "no-majority-no-progress",
                            format!("orderer{i} went from height {b} to {a} with every link cut"),
                        ));
                    }
                }
            }
        }
        Scenario::FlappingLinks => {
            while tokio::time::Instant::now() < end {
                let a = rng.gen_range(0..orderers);
                let b = (a + rng.gen_range(1..orderers)) % orderers;
                if rng.gen_bool(0.5) {
                    n.cut_one_way(a, b);
                } else {
                    n.partition(&[
                        BTreeSet::from([a]),
                        (0..orderers).filter(|o| *o != a).collect(),
                    ]);
                }
                tokio::time::sleep(pause(rng, 100, 600)).await;
                n.heal_links();
                tokio::time::sleep(pause(rng, 100, 400)).await;
            }
        }
        Scenario::AsymmetricCut => {
            while tokio::time::Instant::now() < end {
                let leader = n.net.raft_leader().await.unwrap_or(0);
                for f in (0..orderers).filter(|o| *o != leader) {
                    n.cut_one_way(leader, f);
                }
                tokio::time::sleep(pause(rng, 1500, 3000)).await;
                n.heal_links();
                tokio::time::sleep(pause(rng, 500, 1500)).await;
            }
        }
        Scenario::SlowAndResetLinks => {
            while tokio::time::Instant::now() < end {
                n.delay(pause(rng, 5, 60));
                tokio::time::sleep(pause(rng, 500, 1500)).await;
                n.reset_links();
                tokio::time::sleep(pause(rng, 300, 1000)).await;
            }
        }
        Scenario::PauseLeader => {
            while tokio::time::Instant::now() < end {
                let victim = match n.net.spec.backend {
                    Backend::Raft => n.net.raft_leader().await.unwrap_or(0),
                    _ => rng.gen_range(0..orderers),
                };
                n.pause(NodeRef::Orderer(victim));
                // Raft: well past the election timeout (10 ticks of 50 ms, up to twice).
                tokio::time::sleep(pause(rng, 1500, 3000)).await;
                n.resume(NodeRef::Orderer(victim));
                tokio::time::sleep(pause(rng, 1000, 2000)).await;
            }
        }
        Scenario::KillDuringSnapshot => {
            while tokio::time::Instant::now() < end {
                let leader = n.net.raft_leader().await.unwrap_or(0);
                let follower = (leader + rng.gen_range(1..orderers)) % orderers;
                n.kill(NodeRef::Orderer(follower));
                // Down long enough for the others to snapshot past its log.
                tokio::time::sleep(pause(rng, 1500, 3000)).await;
                n.start(NodeRef::Orderer(follower));
                tokio::time::sleep(pause(rng, 200, 1500)).await;
            }
        }
        Scenario::DiskFull => {
            let victim = match n.net.spec.backend {
                Backend::Raft => {
                    let leader = n.net.raft_leader().await.unwrap_or(0);
                    (leader + 1) % orderers
                }
                _ => rng.gen_range(0..orderers),
            };
            n.fill_disk(victim);
            // RocksDB writes into the space it preallocated for its log, so a running
            // node may not notice for a while; a crash and restart on a full disk needs
            // new files at once (it fails to start, and starts again once freed).
            tokio::time::sleep(pause(rng, 500, 1500)).await;
            n.kill(NodeRef::Orderer(victim));
            n.start(NodeRef::Orderer(victim));
            tokio::time::sleep(time).await;
            let running = n.net.orderers[victim].proc.is_running();
            n.note_fact(format!(
                "orderer{victim} running on the full disk: {running}"
            ));
            n.free_disks();
        }
        Scenario::PeerKilledMidCommit => {
            let peers = n.net.peers.len();
            while tokio::time::Instant::now() < end && peers > 0 {
                let p = rng.gen_range(0..peers);
                n.kill(NodeRef::Peer(p));
                tokio::time::sleep(pause(rng, 200, 1000)).await;
                n.start(NodeRef::Peer(p));
                tokio::time::sleep(pause(rng, 500, 1500)).await;
            }
        }
        Scenario::TamperedBlock => {
            // Peer 0 is left with the lying orderer only; it lies for as long as it is
            // asked.
            n.cut_peers_from_orderers();
            // Their open streams break; new connections to the proxies hang.
            n.reset_links();
            tokio::time::sleep(time).await;
            let tampered = n.net.liar.as_ref().map_or(0, |l| l.tampered());
            n.note_lies(tampered);
        }
        Scenario::KafkaBrokersDown => {
            while tokio::time::Instant::now() < end {
                n.brokers_down();
                tokio::time::sleep(pause(rng, 500, 2500)).await;
                n.brokers_up();
                tokio::time::sleep(pause(rng, 1000, 2500)).await;
            }
        }
        Scenario::RotateCertificates => {
            found.extend(crate::rotate::inject(n, rng, time).await);
        }
        Scenario::KillWhileSnapshotting => {
            found.extend(super::snapshots::kill_while_snapshotting(n, rng, end).await);
        }
        Scenario::KillWhileJoiningFromSnapshot => {
            found.extend(super::snapshots::kill_while_joining(n, rng, end).await);
        }
        Scenario::KillWhilePruning => {
            found.extend(super::pruning::kill_while_pruning(n, rng, end).await);
        }
        Scenario::KafkaLeaderMoved => {
            while tokio::time::Instant::now() < end {
                n.move_partition_leader(rng.gen_range(1..=3));
                if rng.gen_bool(0.5) {
                    n.produce_errors(rng.gen_range(1..5));
                }
                tokio::time::sleep(pause(rng, 300, 1200)).await;
            }
        }
    }
    found
}
