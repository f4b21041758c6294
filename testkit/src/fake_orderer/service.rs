//! The fake orderer's AtomicBroadcast service.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use ordo_proto::pb::common::{Block, Envelope, Status as OrdoStatus};
use ordo_proto::pb::orderer::atomic_broadcast_server::AtomicBroadcast;
use ordo_proto::pb::orderer::{BroadcastResponse, DeliverResponse};

use super::{cutter, tamper, Counters, DeliverFault, Faults, Source};

type DeliverSender = mpsc::Sender<Result<DeliverResponse, Status>>;

/// How many cut blocks a slow Deliver stream may fall behind before it misses some.
const CUT_BLOCKS_BUFFERED: usize = 100_000;

/// The service: where blocks come from, the faults, the counters.
pub(super) struct Fake {
    source: Source,
    faults: Faults,
    counters: Arc<Counters>,
    /// The self-ordering fake's cutter input and output.
    to_cutter: mpsc::UnboundedSender<Bytes>,
    cut: broadcast::Sender<Block>,
    /// Senders of silent streams, held so that the streams stay open.
    held: Mutex<Vec<DeliverSender>>,
}

/// Every n-th of something (0: never).
fn every(n: u64, k: u64) -> bool {
    n != 0 && k % n == 0
}

impl Fake {
    /// A service; a self-ordering one starts its cutter (so this needs a runtime).
    pub(super) fn new(source: Source, faults: Faults, counters: Arc<Counters>) -> Self {
        let (to_cutter, cut_rx) = mpsc::unbounded_channel();
        let (cut, _) = broadcast::channel(CUT_BLOCKS_BUFFERED);
        if matches!(source, Source::Cutter) {
            tokio::spawn(cutter::cut(cut_rx, cut.clone()));
        }
        Self {
            source,
            faults,
            counters,
            to_cutter,
            cut,
            held: Mutex::new(Vec::new()),
        }
    }
}

/// Applies the deliver fault to one response; counts what it tampers with.
fn pass(mut resp: DeliverResponse, fault: DeliverFault, counters: &Counters) -> DeliverResponse {
    if let (DeliverFault::Tamper(which, how), Some(b)) = (fault, resp.block.as_mut()) {
        if which.includes(ordo_proto::block::number(b)) {
            counters.tampered.fetch_add(1, Ordering::Relaxed);
            tamper::tamper(b, how);
        }
    }
    resp
}

fn block_response(block: Block) -> DeliverResponse {
    DeliverResponse { block: Some(block) }
}

#[tonic::async_trait]
impl AtomicBroadcast for Fake {
    type BroadcastStream = ReceiverStream<Result<BroadcastResponse, Status>>;
    type DeliverStream = ReceiverStream<Result<DeliverResponse, Status>>;

    async fn broadcast(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::BroadcastStream>, Status> {
        if !matches!(self.source, Source::Cutter) {
            return Err(Status::unimplemented(
                "this fake orderer only relays blocks",
            ));
        }
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let (faults, counters) = (self.faults, self.counters.clone());
        let to_cutter = self.to_cutter.clone();
        tokio::spawn(async move {
            while let Ok(Some(env)) = inbound.message().await {
                let tx_id = ordo_proto::envelope::unpack(&env)
                    .map(|u| u.header.tx_id)
                    .unwrap_or_default();
                let k = counters.received.fetch_add(1, Ordering::SeqCst) + 1;
                let status = if every(faults.reject_every, k) {
                    OrdoStatus::Forbidden
                } else {
                    let j = counters.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    if !every(faults.lose_every, j) {
                        let encoded = Bytes::from(env.encode_to_vec());
                        if every(faults.duplicate_every, j) {
                            let _ = to_cutter.send(encoded.clone());
                        }
                        let _ = to_cutter.send(encoded);
                    }
                    OrdoStatus::Success
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

    async fn deliver(
        &self,
        request: Request<Envelope>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        let fault = self.faults.deliver;
        match fault {
            DeliverFault::Silent => {
                match self.held.lock() {
                    Ok(mut held) => held.push(tx),
                    Err(poisoned) => poisoned.into_inner().push(tx),
                }
                return Ok(Response::new(ReceiverStream::new(rx)));
            }
            DeliverFault::Refuse => {
                let end = ordo_proto::status::refusal(OrdoStatus::NotFound, "channel not found");
                let _ = tx.send(Err(end)).await;
                return Ok(Response::new(ReceiverStream::new(rx)));
            }
            DeliverFault::Honest | DeliverFault::Tamper(..) => {}
        }
        let counters = self.counters.clone();
        match &self.source {
            Source::Relay {
                upstream,
                transport,
            } => {
                let conn = ordo_sdk::orderer::connect(upstream, transport)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let mut upstream = ordo_sdk::orderer::broadcast_client(conn)
                    .deliver(request.into_inner())
                    .await?
                    .into_inner();
                tokio::spawn(async move {
                    loop {
                        match upstream.message().await {
                            Ok(Some(resp)) => {
                                if tx.send(Ok(pass(resp, fault, &counters))).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => return,
                            // The upstream's error ends the client's stream too.
                            Err(status) => {
                                let _ = tx.send(Err(status)).await;
                                return;
                            }
                        }
                    }
                });
            }
            Source::Cutter => {
                let mut blocks = self.cut.subscribe();
                tokio::spawn(async move {
                    // The "newest" block at the start: a genesis holding nothing of ours.
                    if tx.send(Ok(block_response(Block::default()))).await.is_err() {
                        return;
                    }
                    while let Ok(block) = blocks.recv().await {
                        let resp = pass(block_response(block), fault, &counters);
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
