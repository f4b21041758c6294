//! The Cluster service and its client: how the consenters of a raft channel talk.
//!
//! - **Step** (client stream): raft messages from one consenter. The first request proves
//!   which consenter opened the stream ([`ordo_proto::cluster_auth`]); every message on it
//!   is handed to the channel's raft chain as coming from that consenter, and the chain
//!   drops messages that claim another sender.
//! - **Submit** (unary): an envelope a follower received, forwarded to the leader; each
//!   request carries its own proof, bound to the SHA-256 of the envelope.
//!
//! [`GrpcTransport`] is the sending side: per remote consenter one task that keeps a Step
//! stream open, reconnecting with backoff, fed by a bounded queue — when the queue is
//! full the message is dropped and counted (raft retransmits; a slow peer must not stall
//! the raft loop).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use ordo_consensus::chain::BoxFuture;
use ordo_consensus::raft::transport::MAX_PULL_BLOCKS;
use ordo_consensus::raft::{raft_id, ClusterNetwork, RaftTransport};
use ordo_consensus::{ChainError, ClusterMember, OrderRequest};
use ordo_node::PeerInfo;
use ordo_proto::block;
use ordo_proto::cluster_auth::{self, Purpose};
use ordo_proto::identity::Identity;
use ordo_proto::pb::cluster::cluster_client::ClusterClient;
use ordo_proto::pb::cluster::cluster_server::Cluster;
use ordo_proto::pb::cluster::{StepRequest, StepResponse, SubmitRequest, SubmitResponse};
use ordo_proto::pb::common::{Block, Consenter};
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_sdk::orderer::{broadcast_client, position, seek_request};
use ordo_sdk::transport::{ConnectOptions, Transport};

use crate::registry::{ChannelHandle, Registry};
use crate::status::chain_error_code;

/// Raft messages queued per remote consenter before new ones are dropped.
const SEND_QUEUE: usize = 1_024;
/// How long a forwarded envelope may wait for the leader's answer.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest cluster message (a raft append carries whole blocks).
pub const MAX_CLUSTER_MESSAGE: usize = 64 << 20;

mod service;
pub use service::ClusterService;

/// One remote consenter as the sender sees it.
struct Link {
    name: String,
    endpoint: String,
    queue: mpsc::Sender<Vec<u8>>,
    /// The connection in use; replaced by [`Link::redial`].
    conn: RwLock<Connection>,
    /// What the link was made from, to dial it again.
    consenter: Consenter,
    dialer: ClusterDialer,
    /// Dialling needs the runtime; `redial` may be called from the raft thread.
    runtime: tokio::runtime::Handle,
    /// Ends this link's stream task (the consenter left, or the channel stopped).
    stop: CancellationToken,
}

/// One gRPC connection to a consenter: the Cluster client and, over the same
/// connection, Deliver (block pulls).
#[derive(Clone)]
struct Connection {
    client: ClusterClient<Channel>,
    channel: Channel,
}

impl Connection {
    fn open(c: &Consenter, dialer: &ClusterDialer) -> Result<Self, ChainError> {
        let channel = connect(c, dialer)?;
        let client = ClusterClient::new(channel.clone())
            .max_decoding_message_size(MAX_CLUSTER_MESSAGE)
            .max_encoding_message_size(MAX_CLUSTER_MESSAGE);
        Ok(Self { client, channel })
    }
}

impl Link {
    fn conn(&self) -> Connection {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the connection with a new one, so the next request makes a new TLS
    /// handshake. A renewed TLS certificate is presented only on new handshakes: after
    /// this node's pinned certificate changed, or when the consenter refused the one
    /// this connection presented (PERMISSION_DENIED: the config pins a newer one).
    fn redial(&self, why: &str) {
        let _runtime = self.runtime.enter();
        match Connection::open(&self.consenter, &self.dialer) {
            Ok(conn) => {
                info!(consenter = %self.name, endpoint = %self.endpoint, why, "redialling consenter");
                *self.conn.write().unwrap_or_else(|p| p.into_inner()) = conn;
            }
            Err(e) => warn!(consenter = %self.name, error = %e, "redialling consenter failed"),
        }
    }
}

/// Counters of the cluster client (for metrics).
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Raft messages dropped because a consenter's queue was full.
    pub dropped: AtomicU64,
    /// Step streams (re)opened.
    pub connects: AtomicU64,
}

/// The orderer's network between consenters, as the raft consenter sees it: one
/// [`GrpcTransport`] per channel, dialled with the node's identity and TLS.
pub struct OrdererNetwork {
    /// The node's identity (signs Step and Submit authentication).
    pub identity: Identity,
    /// How connections are dialled.
    pub dialer: ClusterDialer,
}

impl ClusterNetwork for OrdererNetwork {
    fn transport(
        &self,
        channel: &str,
        consenters: &[Consenter],
        self_id: u64,
        closed: CancellationToken,
    ) -> Result<Arc<dyn RaftTransport>, ChainError> {
        let t: Arc<dyn RaftTransport> = GrpcTransport::new(
            channel,
            self.identity.clone(),
            consenters,
            self_id,
            closed,
            self.dialer.clone(),
        )?;
        Ok(t)
    }
}

/// The raft transport of one channel over the Cluster service.
pub struct GrpcTransport {
    channel: String,
    identity: Identity,
    self_id: u64,
    links: RwLock<HashMap<u64, Arc<Link>>>,
    stats: Arc<ClusterStats>,
    stop: CancellationToken,
    /// The runtime the links' tasks run on: `reconfigure` is called from the raft thread.
    runtime: tokio::runtime::Handle,
    /// How links are dialled.
    dialer: ClusterDialer,
    /// The TLS certificate the channel config pins for this node: when a config changes
    /// it, every link is redialled so the others see the new one.
    own_pin: std::sync::Mutex<Bytes>,
}

/// How this node dials other consenters: the node's transport (its TLS client
/// certificate and trust store, or plaintext) and the local address connections leave from
/// (`[node] cluster_source_addr`).
#[derive(Debug, Clone, Default)]
pub struct ClusterDialer {
    /// Plaintext or TLS.
    pub transport: Transport,
    /// Local address of the connections.
    pub source_addr: Option<IpAddr>,
}

/// A lazily connecting gRPC channel to a consenter's endpoint.
pub(crate) fn connect(c: &Consenter, dialer: &ClusterDialer) -> Result<Channel, ChainError> {
    let options = ConnectOptions {
        source_addr: dialer.source_addr,
    };
    ordo_sdk::transport::connect_lazy(&c.endpoint, &dialer.transport, options).map_err(|e| {
        ChainError::Unsupported(format!(
            "consenter {} has a bad endpoint {:?}: {e}",
            c.id, c.endpoint
        ))
    })
}

impl GrpcTransport {
    /// Connects (lazily) to every consenter of `channel` but `self_id`; the stream tasks
    /// run until `stop` is cancelled. Must be called within a Tokio runtime.
    pub fn new(
        channel: &str,
        identity: Identity,
        consenters: &[Consenter],
        self_id: u64,
        stop: CancellationToken,
        dialer: ClusterDialer,
    ) -> Result<Arc<Self>, ChainError> {
        let transport = Arc::new(Self {
            channel: channel.to_string(),
            identity,
            self_id,
            links: RwLock::new(HashMap::new()),
            stats: Arc::new(ClusterStats::default()),
            stop,
            runtime: tokio::runtime::Handle::current(),
            dialer,
            own_pin: std::sync::Mutex::new(own_pin(consenters, self_id)),
        });
        for c in consenters {
            let id = raft_id(&c.id);
            if id != self_id {
                let link = transport.link(c)?;
                transport.write_links().insert(id, link);
            }
        }
        Ok(transport)
    }

    fn link(&self, c: &Consenter) -> Result<Arc<Link>, ChainError> {
        // The connection and the stream task need the runtime, whichever thread asks.
        let _runtime = self.runtime.enter();
        let conn = Connection::open(c, &self.dialer)?;
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let link = Arc::new(Link {
            name: c.id.clone(),
            endpoint: c.endpoint.clone(),
            queue: tx,
            conn: RwLock::new(conn),
            consenter: c.clone(),
            dialer: self.dialer.clone(),
            runtime: self.runtime.clone(),
            stop: self.stop.child_token(),
        });
        tokio::spawn(stream_task(
            self.channel.clone(),
            link.clone(),
            self.identity.clone(),
            rx,
            self.stats.clone(),
        ));
        Ok(link)
    }

    fn write_links(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Arc<Link>>> {
        self.links.write().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: u64) -> Option<Arc<Link>> {
        self.links
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }
}

/// Fetches blocks `start..=end` of `channel` from the orderer at `channel_conn` with
/// Deliver (fail if not ready: what the remote has, at least one block). Used by a raft
/// node catching up after a snapshot and by a node joining a running channel. The caller
/// verifies the blocks.
pub async fn pull_blocks(
    conn: Channel,
    identity: &Identity,
    channel: &str,
    start: u64,
    end: u64,
) -> Result<Vec<Block>, String> {
    let end = end.min(start.saturating_add(MAX_PULL_BLOCKS - 1));
    let request = seek_request(
        identity,
        channel,
        position(Some(start)),
        Some(position(Some(end))),
        SeekBehavior::FailIfNotReady,
    );
    let mut client = broadcast_client(conn);
    let mut stream = client
        .deliver(request)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let mut blocks = Vec::new();
    loop {
        // A stream that ends with a refusal after some blocks still gave those blocks.
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => break,
            Err(s) if blocks.is_empty() => {
                return Err(format!(
                    "deliver ended with {:?}: {}",
                    s.code(),
                    s.message()
                ))
            }
            Err(_) => break,
        };
        let Some(b) = resp.block else {
            return Err("a deliver response without a block".into());
        };
        if block::number(&b) != start + blocks.len() as u64 {
            return Err(format!(
                "sent block {} where {} was expected",
                block::number(&b),
                start + blocks.len() as u64
            ));
        }
        blocks.push(b);
        if blocks.len() as u64 > end - start {
            break;
        }
    }
    if blocks.is_empty() {
        return Err(format!("no block {start}"));
    }
    Ok(blocks)
}

impl RaftTransport for GrpcTransport {
    fn metrics(&self) -> Vec<ordo_consensus::chain::MetricSample> {
        use ordo_consensus::chain::MetricSample;
        vec![
            MetricSample {
                name: "cluster_messages_dropped",
                value: self.stats.dropped.load(Ordering::Relaxed) as f64,
            },
            MetricSample {
                name: "cluster_connects",
                value: self.stats.connects.load(Ordering::Relaxed) as f64,
            },
        ]
    }

    fn send(&self, to: u64, message: Vec<u8>) {
        let Some(link) = self.get(to) else {
            return;
        };
        if link.queue.try_send(message).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn submit(
        &self,
        to: u64,
        request: OrderRequest,
        is_config: bool,
    ) -> BoxFuture<'_, Result<u64, ChainError>> {
        Box::pin(async move {
            let link = self.get(to).ok_or_else(|| ChainError::NotReady {
                reason: format!("leader {to:x} is not a known consenter"),
            })?;
            let digest = Sha256::digest(&request.envelope);
            let auth = cluster_auth::sign(
                &self.identity,
                Purpose::Submit,
                &self.channel,
                &digest,
                ordo_proto::now_ms(),
            );
            let mut client = link.conn().client;
            let call = client.submit(SubmitRequest {
                channel: self.channel.clone(),
                envelope: request.envelope,
                tx_id: request.tx_id,
                config_seq: request.config_seq,
                is_config,
                auth: Some(auth),
            });
            let answer = tokio::time::timeout(SUBMIT_TIMEOUT, call)
                .await
                .map_err(|_| ChainError::NotReady {
                    reason: format!("leader {} did not answer in time", link.name),
                })?;
            // The leader's chain refusals arrive as the codes of `chain_error_code`; any
            // other failure (no connection, a refused certificate) leaves the leader
            // unreachable for now.
            match answer {
                Ok(answer) => Ok(answer.into_inner().term),
                Err(s) => Err(match s.code() {
                    tonic::Code::InvalidArgument => ChainError::Revalidation(s.message().into()),
                    tonic::Code::Unimplemented => ChainError::Unsupported(s.message().into()),
                    tonic::Code::Internal => {
                        ChainError::Storage(format!("leader {}: {}", link.name, s.message()))
                    }
                    code => {
                        if code == tonic::Code::PermissionDenied {
                            link.redial("the leader refused this connection's certificate");
                        }
                        ChainError::NotReady {
                            reason: format!("leader {}: {}", link.name, s.message()),
                        }
                    }
                }),
            }
        })
    }

    fn pull_blocks(
        &self,
        from: u64,
        start: u64,
        end: u64,
    ) -> BoxFuture<'_, Result<Vec<Block>, ChainError>> {
        Box::pin(async move {
            let link = self.get(from).ok_or_else(|| ChainError::NotReady {
                reason: format!("node {from:x} is not a known consenter"),
            })?;
            pull_blocks(
                link.conn().channel,
                &self.identity,
                &self.channel,
                start,
                end,
            )
            .await
            .map_err(|e| ChainError::NotReady {
                reason: format!("pulling blocks from {}: {e}", link.name),
            })
        })
    }

    fn reconfigure(&self, consenters: &[Consenter]) {
        let pin = own_pin(consenters, self.self_id);
        let rekeyed = {
            let mut own = self.own_pin.lock().unwrap_or_else(|p| p.into_inner());
            // A node removed from the consenters has no pin left: nothing to present.
            let changed = !pin.is_empty() && *own != pin;
            *own = pin;
            changed
        };
        let mut links = self.write_links();
        if rekeyed {
            for link in links.values() {
                link.redial("the channel config pins a new TLS certificate for this node");
            }
        }
        let wanted: HashMap<u64, &Consenter> = consenters
            .iter()
            .map(|c| (raft_id(&c.id), c))
            .filter(|(id, _)| *id != self.self_id)
            .collect();
        links.retain(|id, link| {
            let keep = wanted.get(id).is_some_and(|c| c.endpoint == link.endpoint);
            if !keep {
                link.stop.cancel();
            }
            keep
        });
        for (id, c) in wanted {
            if links.contains_key(&id) {
                continue;
            }
            match self.link(c) {
                Ok(link) => {
                    info!(channel = %self.channel, consenter = %c.id, endpoint = %c.endpoint, "consenter link added");
                    links.insert(id, link);
                }
                Err(e) => warn!(channel = %self.channel, error = %e, "consenter unreachable"),
            }
        }
    }
}

/// The TLS certificate `consenters` pin for this node (`self_id`); empty when none.
fn own_pin(consenters: &[Consenter], self_id: u64) -> Bytes {
    consenters
        .iter()
        .find(|c| raft_id(&c.id) == self_id)
        .map(|c| c.tls_cert.clone())
        .unwrap_or_default()
}

/// Keeps a Step stream to one consenter open while there is something to send; when the
/// consenter refuses this connection's certificate, the link is redialled.
async fn stream_task(
    channel: String,
    link: Arc<Link>,
    identity: Identity,
    mut queue: mpsc::Receiver<Vec<u8>>,
    stats: Arc<ClusterStats>,
) {
    let peer = link.name.clone();
    let stop = link.stop.clone();
    let mut backoff = Duration::from_millis(100);
    // A message that arrived while no stream was open; sent first on the next one.
    let mut carry: Option<Vec<u8>> = None;
    loop {
        let first = match carry.take() {
            Some(m) => m,
            None => tokio::select! {
                _ = stop.cancelled() => return,
                m = queue.recv() => match m { Some(m) => m, None => return },
            },
        };
        let (tx, rx) = mpsc::channel::<StepRequest>(256);
        let auth = cluster_auth::sign(
            &identity,
            Purpose::Step,
            &channel,
            &[],
            ordo_proto::now_ms(),
        );
        let _ = tx.try_send(StepRequest {
            channel: channel.clone(),
            message: first.into(),
            auth: Some(auth),
        });
        let opened = tokio::time::Instant::now();
        let mut c = link.conn().client;
        let call = c.step(ReceiverStream::new(rx));
        tokio::pin!(call);
        stats.connects.fetch_add(1, Ordering::Relaxed);
        let ended = loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = &mut call => break r.err(),
                m = queue.recv() => {
                    let Some(m) = m else { return };
                    let req = StepRequest { channel: channel.clone(), message: m.into(), auth: None };
                    match tx.try_send(req) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(req)) => {
                            carry = Some(req.message.to_vec());
                            break None;
                        }
                    }
                }
            }
        };
        match ended {
            Some(status) => {
                warn!(%channel, %peer, error = %status.message(), "raft stream to consenter failed; reconnecting");
                if status.code() == tonic::Code::PermissionDenied {
                    link.redial("the consenter refused this connection's certificate");
                }
            }
            None => info!(%channel, %peer, "raft stream to consenter ended; reconnecting"),
        }
        // A stream that stayed up a while starts the backoff over; one that fails at
        // once (peer down) backs off up to 2 s.
        if opened.elapsed() > Duration::from_secs(2) {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
