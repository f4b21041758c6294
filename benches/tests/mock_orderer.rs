//! `run_orderer_bench` end to end against the test kit's self-ordering fake orderer, which
//! cuts blocks of whatever it accepts and can reject, lose and duplicate envelopes on a
//! fixed schedule, so every count in the report has an exact expected value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ordo_bench::{run_orderer_bench, OrdererBenchOptions, OrdererBenchReport};
use ordo_proto::pb::common::Role;
use ordo_sdk::network::{ChannelEntry, IdentityFiles, Network, NodeEntry, NETWORK_FILE_VERSION};
use ordo_testkit::fake_orderer::{DeliverFault, FakeOrderer, Faults, Source};
use ordo_testkit::TestOrg;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("ordo-bench-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A one-orderer, one-channel network whose BankA client identity is on disk in `dir`.
fn network(dir: &Scratch, grpc_addr: &str) -> Network {
    let identity = TestOrg::new("BankA").member(Role::Client, "client");
    let files = IdentityFiles {
        key: dir.0.join("client.key"),
        cert: dir.0.join("client.cert"),
        tls: None,
    };
    identity
        .save(&files.key, &files.cert)
        .expect("save identity");
    let members: BTreeMap<String, IdentityFiles> =
        [("client".to_string(), files)].into_iter().collect();
    Network {
        version: NETWORK_FILE_VERSION,
        dir: dir.0.clone(),
        crypto_dir: dir.0.clone(),
        channels: vec![ChannelEntry {
            name: "bench".into(),
            consensus: "solo".into(),
            ack_mode: "enqueued".into(),
            genesis_block: dir.0.join("bench.block"),
        }],
        nodes: vec![NodeEntry {
            name: "orderer0".into(),
            role: "orderer".into(),
            org: "BankA".into(),
            grpc_addr: grpc_addr.into(),
            ops_addr: "127.0.0.1:1".into(),
            pid: None,
            command: vec![],
            config: dir.0.join("orderer0.toml"),
            data_dir: dir.0.join("orderer0"),
            log_file: dir.0.join("orderer0.log"),
        }],
        identities: [("BankA".to_string(), members)].into_iter().collect(),
    }
}

fn options(
    network: Network,
    txs: u64,
    clients: usize,
    drain_timeout: Duration,
) -> OrdererBenchOptions {
    OrdererBenchOptions {
        network,
        channel: None,
        orderer: None,
        txs,
        payload_bytes: 256,
        clients,
        progress: false,
        drain_timeout,
    }
}

async fn bench(
    faults: Faults,
    txs: u64,
    clients: usize,
    drain: Duration,
) -> anyhow::Result<OrdererBenchReport> {
    let dir = Scratch::new("mock");
    let fake = FakeOrderer::start(Source::Cutter, faults, None).await?;
    run_orderer_bench(options(
        network(&dir, &fake.endpoint()),
        txs,
        clients,
        drain,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_orderer_delivers_everything() {
    let r = bench(Faults::default(), 3_000, 3, Duration::from_secs(10))
        .await
        .expect("bench");
    assert_eq!(
        (r.txs_sent, r.txs_accepted, r.txs_rejected),
        (3_000, 3_000, 0)
    );
    assert_eq!(
        (r.txs_delivered, r.txs_lost, r.txs_duplicated),
        (3_000, 0, 0)
    );
    assert!(r.rejections.is_empty());
    assert!(
        r.blocks_delivered >= 6,
        "at most 500 per block: {}",
        r.blocks_delivered
    );
    assert!(
        r.duration_s > 0.0 && r.tx_per_s > 0.0 && r.accepted_per_s > 0.0,
        "{r:?}"
    );
    assert!(
        r.latency_ms_p50 > 0.0 && r.latency_ms_p50 <= r.latency_ms_p99,
        "{r:?}"
    );
    assert!(
        r.latency_ms_p99 <= r.latency_ms_max && r.latency_ms_max <= r.duration_s * 1e3,
        "{r:?}"
    );
    assert_eq!(
        (
            r.channel.as_str(),
            r.consensus.as_str(),
            r.ack_mode.as_str()
        ),
        ("bench", "solo", "enqueued")
    );
    assert_eq!((r.clients, r.payload_bytes), (3, 256));
    // Throughput over time counts every delivery once, and the latency curve ends at max.
    let counted = r.throughput.tx_per_s.iter().sum::<f64>() * r.throughput.interval_s;
    assert!((counted - 3_000.0).abs() < 1e-6, "{counted}: {r:?}");
    assert_eq!(
        r.latency_ms_percentiles.value.last(),
        Some(&r.latency_ms_max),
        "{r:?}"
    );
    assert!(
        r.signing
            .starts_with("all envelopes signed before the clock started"),
        "{}",
        r.signing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_rejections_losses_and_duplicates() {
    let faults = Faults {
        reject_every: 10,
        lose_every: 7,
        duplicate_every: 11,
        deliver: DeliverFault::Honest,
    };
    let r = bench(faults, 1_000, 4, Duration::from_secs(1))
        .await
        .expect("bench");
    // 100 of 1,000 rejected; of the 900 accepted, 128 (multiples of 7) never ordered, and
    // 70 (multiples of 11 but not of 7) ordered twice.
    assert_eq!(
        (r.txs_sent, r.txs_accepted, r.txs_rejected),
        (1_000, 900, 100)
    );
    assert_eq!(
        r.rejections,
        [("FORBIDDEN".to_string(), 100)].into_iter().collect()
    );
    assert_eq!(
        (r.txs_delivered, r.txs_lost, r.txs_duplicated),
        (772, 128, 70)
    );
    assert!(
        r.human()
            .contains("128 accepted envelopes were never delivered"),
        "{}",
        r.human()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_clients_than_envelopes() {
    let r = bench(Faults::default(), 3, 8, Duration::from_secs(10))
        .await
        .expect("bench");
    assert_eq!((r.clients, r.txs_sent, r.txs_delivered), (3, 3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_orderer_is_an_error_naming_its_address() {
    // A port that was free a moment ago.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let dir = Scratch::new("unreachable");
    let err = run_orderer_bench(options(network(&dir, &addr), 10, 1, Duration::from_secs(1)))
        .await
        .expect_err("nothing listens there");
    assert!(format!("{err:#}").contains(&addr), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_deliver_is_an_error_with_its_status() {
    let faults = Faults::deliver(DeliverFault::Refuse);
    let err = bench(faults, 10, 1, Duration::from_secs(1))
        .await
        .expect_err("deliver refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("NOT_FOUND") && text.contains("channel not found"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channel_and_node_are_errors() {
    let dir = Scratch::new("names");
    let net = network(&dir, "127.0.0.1:1");
    let mut opts = options(net.clone(), 10, 1, Duration::from_secs(1));
    opts.channel = Some("nope".into());
    let err = run_orderer_bench(opts).await.expect_err("no such channel");
    assert!(format!("{err:#}").contains("nope"), "{err:#}");
    let mut opts = options(net, 10, 1, Duration::from_secs(1));
    opts.orderer = Some("orderer9".into());
    let err = run_orderer_bench(opts).await.expect_err("no such node");
    assert!(format!("{err:#}").contains("orderer9"), "{err:#}");
}
