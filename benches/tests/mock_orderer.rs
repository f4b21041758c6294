//! `run_orderer_bench` end to end against an in-process mock orderer that cuts blocks of
//! whatever it accepts and can reject, lose and duplicate envelopes on a fixed schedule,
//! so every count in the report has an exact expected value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ordo_bench::{run_orderer_bench, OrdererBenchOptions, OrdererBenchReport};
use ordo_proto::envelope::unpack;
use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::common::{Block, BlockData, Envelope, Role, Status};
use ordo_proto::pb::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};
use ordo_proto::pb::orderer::{deliver_response, BroadcastResponse, DeliverResponse};
use ordo_sdk::network::{ChannelEntry, IdentityFiles, Network, NodeEntry, NETWORK_FILE_VERSION};
use prost::Message;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Streaming};

/// Every n-th of something (0: never).
fn every(n: u64, k: u64) -> bool {
    n != 0 && k % n == 0
}

#[derive(Clone, Copy, Default)]
struct Faults {
    /// Answer FORBIDDEN to every n-th envelope received.
    reject_every: u64,
    /// Accept but never order every n-th accepted envelope.
    drop_every: u64,
    /// Order every n-th accepted (and not dropped) envelope twice.
    duplicate_every: u64,
    /// Answer Deliver with NOT_FOUND.
    refuse_deliver: bool,
}

struct Mock {
    faults: Faults,
    received: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    to_cutter: mpsc::UnboundedSender<Bytes>,
    blocks: broadcast::Sender<Block>,
}

type Resp<T> = Result<T, tonic::Status>;

#[tonic::async_trait]
impl AtomicBroadcast for Mock {
    type BroadcastStream = ReceiverStream<Resp<BroadcastResponse>>;
    type DeliverStream = ReceiverStream<Resp<DeliverResponse>>;

    async fn broadcast(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Resp<Response<Self::BroadcastStream>> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let (faults, received, accepted) =
            (self.faults, self.received.clone(), self.accepted.clone());
        let to_cutter = self.to_cutter.clone();
        tokio::spawn(async move {
            while let Ok(Some(env)) = inbound.message().await {
                let tx_id = unpack(&env).map(|u| u.header.tx_id).unwrap_or_default();
                let k = received.fetch_add(1, Ordering::SeqCst) + 1;
                let status = if every(faults.reject_every, k) {
                    Status::Forbidden
                } else {
                    let j = accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    if !every(faults.drop_every, j) {
                        let encoded = Bytes::from(env.encode_to_vec());
                        if every(faults.duplicate_every, j) {
                            let _ = to_cutter.send(encoded.clone());
                        }
                        let _ = to_cutter.send(encoded);
                    }
                    Status::Success
                };
                let resp = BroadcastResponse {
                    status: status as i32,
                    info: String::new(),
                    tx_id,
                    block_number: None,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn deliver(&self, _request: Request<Envelope>) -> Resp<Response<Self::DeliverStream>> {
        let (tx, rx) = mpsc::channel(64);
        let mut blocks = self.blocks.subscribe();
        let refuse = self.faults.refuse_deliver;
        tokio::spawn(async move {
            if refuse {
                let end = DeliverResponse {
                    r#type: Some(deliver_response::Type::Status(Status::NotFound as i32)),
                    info: "channel not found".into(),
                };
                let _ = tx.send(Ok(end)).await;
                return;
            }
            // The "newest" block at the start: the genesis block, holding nothing of ours.
            let genesis = DeliverResponse {
                r#type: Some(deliver_response::Type::Block(Block::default())),
                info: String::new(),
            };
            if tx.send(Ok(genesis)).await.is_err() {
                return;
            }
            while let Ok(block) = blocks.recv().await {
                let msg = DeliverResponse {
                    r#type: Some(deliver_response::Type::Block(block)),
                    info: String::new(),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Cuts blocks of up to 500 envelopes, or whatever arrived within 5 ms.
async fn cutter(mut rx: mpsc::UnboundedReceiver<Bytes>, blocks: broadcast::Sender<Block>) {
    let mut pending = Vec::new();
    loop {
        let idle = match tokio::time::timeout(Duration::from_millis(5), rx.recv()).await {
            Ok(Some(env)) => {
                pending.push(env);
                false
            }
            Ok(None) => return,
            Err(_) => true,
        };
        if pending.len() >= 500 || (idle && !pending.is_empty()) {
            let data = std::mem::take(&mut pending);
            let _ = blocks.send(Block {
                header: None,
                data: Some(BlockData { data }),
                metadata: None,
            });
        }
    }
}

/// Starts a mock orderer on a free local port; returns its address.
async fn start_mock(faults: Faults) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (to_cutter, cut_rx) = mpsc::unbounded_channel();
    let (blocks, _) = broadcast::channel(100_000);
    tokio::spawn(cutter(cut_rx, blocks.clone()));
    let mock = Mock {
        faults,
        received: Default::default(),
        accepted: Default::default(),
        to_cutter,
        blocks,
    };
    let svc = AtomicBroadcastServer::new(mock).max_decoding_message_size(64 << 20);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

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
    let ca = ordo_proto::crypto::generate_signing_key();
    let key = ordo_proto::crypto::generate_signing_key();
    let identity = Identity::enroll(&ca, key, &Enrollment::new("BankA", Role::Client, "client"));
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
    let addr = start_mock(faults).await;
    run_orderer_bench(options(network(&dir, &addr), txs, clients, drain)).await
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
        drop_every: 7,
        duplicate_every: 11,
        refuse_deliver: false,
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
    let faults = Faults {
        refuse_deliver: true,
        ..Faults::default()
    };
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
