//! Broadcast: clients stream envelopes in; one response per envelope comes back, in order.
//!
//! Each stream runs three tasks, so that reading, checking and answering overlap:
//! the *reader* pulls envelopes off the wire into a bounded queue; the *processor* takes
//! whatever is queued (up to [`MAX_VERIFY_BATCH`]), runs the filters, verifies all their
//! signatures in one batch and hands the good ones to the chain, in order; the *responder*
//! answers in order — once the chain's acceptance is final (at once for solo and raft,
//! after the broker's delivery report for Kafka) in `enqueued` mode, once the block is
//! durable in `committed` mode. The queues bound how much one stream may have in flight.
//!
//! Filters, in order: node size limit, decode, channel exists, channel size limit, header
//! sanity, creator certificate, signature, header type, Writers (or Admins) policy,
//! duplicate tx id (seen recently); then `Chain::order` / `Chain::configure`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::Response;
use tracing::debug;

use ordo_consensus::chain::Pending;
use ordo_consensus::configtx;
use ordo_consensus::filters::{self, Candidate, FilterError};
use ordo_consensus::support::{CommitOutcome, NotWritten};
use ordo_consensus::OrderRequest;
use ordo_proto::envelope;
use ordo_proto::pb::common::{AckMode, Envelope, HeaderType, Status as Code};
use ordo_proto::pb::orderer::BroadcastResponse;
use prost::Message;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::inflight::HeldBytes;
use crate::metrics::Metrics;
use crate::registry::{ChannelHandle, Registry};
use crate::status::chain_error_code;

/// An envelope as it arrived: decoded, and its bytes when they are exactly its canonical
/// encoding — then the block takes those bytes as they are instead of an encoding made
/// again (a copy and an allocation per envelope).
#[derive(Debug)]
pub struct ReceivedEnvelope {
    /// The decoded envelope (its payload shares the received buffer).
    pub envelope: Envelope,
    /// The received bytes, when re-encoding `envelope` would give the same bytes.
    pub canonical_bytes: Option<Bytes>,
    /// Its room in the node's Broadcast buffers, given back when its checks begin (see
    /// [`crate::inflight`]); `None` for an envelope that came another way.
    pub held: Option<HeldBytes>,
}

impl ReceivedEnvelope {
    /// Decodes received bytes; keeps them when they are the canonical encoding. Unknown or
    /// repeated fields, explicit defaults and over-long varints all change the length;
    /// the one non-canonical form of the same length is the two fields in reverse order
    /// (signature first), which the fuzz target `envelope` found: canonical bytes start
    /// with the payload's tag unless the payload is empty.
    pub fn decode(raw: Bytes) -> Result<Self, prost::DecodeError> {
        /// Field 1 (payload), length-delimited.
        const PAYLOAD_TAG: u8 = 0x0a;
        let envelope = Envelope::decode(raw.clone())?;
        let canonical = envelope.encoded_len() == raw.len()
            && (envelope.payload.is_empty() || raw.first() == Some(&PAYLOAD_TAG));
        Ok(Self {
            envelope,
            canonical_bytes: canonical.then_some(raw),
            held: None,
        })
    }

    /// The same envelope, holding `held` until its checks begin.
    pub fn holding(self, held: HeldBytes) -> Self {
        Self {
            held: Some(held),
            ..self
        }
    }

    /// The encoded size.
    fn size(&self) -> usize {
        self.canonical_bytes
            .as_ref()
            .map_or_else(|| self.envelope.encoded_len(), Bytes::len)
    }
}

impl From<Envelope> for ReceivedEnvelope {
    fn from(envelope: Envelope) -> Self {
        Self {
            envelope,
            canonical_bytes: None,
            held: None,
        }
    }
}

/// Most envelopes whose signatures are verified in one batch.
pub const MAX_VERIFY_BATCH: usize = 512;

/// An envelope that passed the checks before the signature: its channel, the candidate and
/// its received bytes (when canonical).
struct Prechecked {
    channel: Arc<ChannelHandle>,
    candidate: Candidate,
    canonical_bytes: Option<Bytes>,
}

/// An envelope the precheck refused, with its channel when that was known by then (the
/// metrics' label).
struct Refused {
    response: BroadcastResponse,
    channel: Option<Arc<ChannelHandle>>,
}

/// What the responder gets for one envelope: the slot, the envelope's channel once its
/// header named one served here, and when the reader took it off the stream.
struct Answer {
    slot: Slot,
    channel: Option<Arc<ChannelHandle>>,
    received: Instant,
}

/// What the responder answers for one envelope.
enum Slot {
    Ready(BroadcastResponse),
    /// Taken by the chain; the answer waits for the chain's final acceptance (if it is
    /// not final yet) and, in `committed` mode, for the block.
    Taken {
        tx_id: String,
        /// The tx id the chain orders (a config update's CONFIG envelope has its own).
        order_tx_id: String,
        channel: Arc<ChannelHandle>,
        acceptance: Pending,
        commit: Option<oneshot::Receiver<CommitOutcome>>,
    },
}

fn response(code: Code, info: impl Into<String>, tx_id: &str) -> BroadcastResponse {
    BroadcastResponse {
        status: code as i32,
        info: info.into(),
        tx_id: tx_id.to_string(),
        block_number: None,
    }
}

/// Shared state of the Broadcast handler.
#[derive(Clone)]
pub struct BroadcastHandler {
    /// The channels.
    pub registry: Arc<Registry>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Node-level envelope size limit.
    pub max_envelope_bytes: usize,
    /// Envelopes in flight per stream.
    pub inflight: usize,
    /// Cancelled on node shutdown.
    pub shutdown: CancellationToken,
}

impl BroadcastHandler {
    /// Starts the tasks of one Broadcast stream and returns its response stream.
    pub fn handle<S>(
        &self,
        mut inbound: S,
    ) -> Response<ReceiverStream<Result<BroadcastResponse, tonic::Status>>>
    where
        S: Stream<Item = Result<ReceivedEnvelope, tonic::Status>> + Send + Unpin + 'static,
    {
        let half = (self.inflight / 2).max(1);
        let (in_tx, in_rx) = mpsc::channel::<(ReceivedEnvelope, Instant)>(half);
        let (slot_tx, slot_rx) = mpsc::channel::<Answer>(half);
        let (out_tx, out_rx) = mpsc::channel(256);
        // How the stream ends when the client sent something unreadable: after the answers
        // to every envelope before it, with that status (never a silent OK).
        let ending: Arc<std::sync::Mutex<Option<tonic::Status>>> = Arc::default();
        let shutdown = self.shutdown.clone();
        let reader_ending = ending.clone();
        tokio::spawn(async move {
            // One registration with the node-wide token for the stream's life, not one per
            // envelope (its waiter list is a lock every stream shares).
            let stopping = shutdown.cancelled();
            tokio::pin!(stopping);
            loop {
                let next = tokio::select! {
                    biased;
                    n = inbound.next() => n,
                    _ = &mut stopping => None,
                };
                match next {
                    Some(Ok(env)) => {
                        if in_tx.send((env, Instant::now())).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(status)) => {
                        debug!(%status, "broadcast stream ended with an error");
                        let status = if status.code() == tonic::Code::Internal {
                            tonic::Status::invalid_argument(status.message().to_string())
                        } else {
                            status
                        };
                        let ending = tonic::Status::new(
                            status.code(),
                            format!(
                                "{}; the envelopes before it were answered, nothing after it was read",
                                status.message()
                            ),
                        );
                        if let Ok(mut slot) = reader_ending.lock() {
                            *slot = Some(ending);
                        }
                        break;
                    }
                    None => break,
                }
            }
        });
        let this = self.clone();
        this.metrics.broadcast_streams.inc();
        tokio::spawn(async move {
            this.process(in_rx, slot_tx).await;
        });
        let metrics = self.metrics.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            respond(slot_rx, &out_tx, &metrics, shutdown).await;
            let ended_badly = ending.lock().ok().and_then(|mut e| e.take());
            if let Some(status) = ended_badly {
                let _ = out_tx.send(Err(status)).await;
            }
            metrics.broadcast_streams.dec();
        });
        Response::new(ReceiverStream::new(out_rx))
    }

    async fn process(
        &self,
        mut in_rx: mpsc::Receiver<(ReceivedEnvelope, Instant)>,
        slot_tx: mpsc::Sender<Answer>,
    ) {
        loop {
            let first = tokio::select! {
                biased;
                e = in_rx.recv() => e,
                _ = self.shutdown.cancelled() => None,
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_VERIFY_BATCH {
                match in_rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let now_secs = ordo_proto::now_ms() / 1000;
            let checked: Vec<(Result<Prechecked, Refused>, Instant)> = batch
                .into_iter()
                .map(|(env, received)| (self.precheck(env, now_secs), received))
                .collect();
            let candidates: Vec<&Candidate> = checked
                .iter()
                .filter_map(|(r, _)| r.as_ref().ok().map(|p| &p.candidate))
                .collect();
            self.metrics
                .verify_batch_size
                .observe(candidates.len() as f64);
            let mut sig_ok = filters::verify_signatures(&candidates).into_iter();
            for (item, received) in checked {
                let (slot, channel) = match item {
                    Err(refused) => (Slot::Ready(refused.response), refused.channel),
                    Ok(p) => {
                        let channel = Some(p.channel.clone());
                        if sig_ok.next().unwrap_or(false) {
                            (self.admit(p, now_secs).await, channel)
                        } else {
                            let refused = response(
                                Code::Forbidden,
                                FilterError::BadSignature.to_string(),
                                p.candidate.tx_id(),
                            );
                            (Slot::Ready(refused), channel)
                        }
                    }
                };
                let answer = Answer {
                    slot,
                    channel,
                    received,
                };
                if slot_tx.send(answer).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Size, decode, channel, header and creator checks.
    fn precheck(&self, received: ReceivedEnvelope, now_secs: u64) -> Result<Prechecked, Refused> {
        let unknown_channel = |response| Refused {
            response,
            channel: None,
        };
        let size = received.size();
        if size > self.max_envelope_bytes {
            return Err(unknown_channel(response(
                Code::RequestEntityTooLarge,
                format!(
                    "envelope of {size} bytes exceeds the node's limit of {} bytes",
                    self.max_envelope_bytes
                ),
                "",
            )));
        }
        // The envelope's checks begin: its bytes now belong to the batch being verified
        // (bounded by the batch size), and its room in the buffers goes back.
        let ReceivedEnvelope {
            envelope: env,
            canonical_bytes,
            held: _,
        } = received;
        let unpacked = envelope::unpack(&env)
            .map_err(|e| unknown_channel(response(Code::BadRequest, e.to_string(), "")))?;
        let tx_id = unpacked.header.tx_id.clone();
        let channel = &unpacked.header.channel_id;
        let ch = self.registry.get(channel).ok_or_else(|| {
            unknown_channel(response(
                Code::NotFound,
                format!("channel {channel:?} not found"),
                &tx_id,
            ))
        })?;
        let state = ch.support.state();
        let candidate =
            filters::precheck_unpacked(&state, env, unpacked, now_secs).map_err(|e| Refused {
                response: response(e.status(), e.to_string(), &tx_id),
                channel: Some(ch.clone()),
            })?;
        Ok(Prechecked {
            channel: ch,
            candidate,
            canonical_bytes,
        })
    }

    /// Type, policy and duplicate checks, then hands the envelope to the chain.
    async fn admit(&self, checked: Prechecked, now_secs: u64) -> Slot {
        let Prechecked {
            channel: ch,
            candidate: cand,
            canonical_bytes,
        } = checked;
        let ch = &ch;
        let tx_id = cand.tx_id().to_string();
        let state = ch.support.state();
        let (order_env, order_tx_id, is_config) = match cand.header_type() {
            HeaderType::ConfigUpdate => {
                match configtx::process_config_update(&ch.support, &cand, now_secs) {
                    Ok((env, config_tx_id)) => (env, config_tx_id, true),
                    Err(e) => return Slot::Ready(response(e.status(), e.to_string(), &tx_id)),
                }
            }
            _ => {
                if let Err(e) = filters::authorize_normal(&state, &cand) {
                    return Slot::Ready(response(e.status(), e.to_string(), &tx_id));
                }
                let bytes = canonical_bytes.unwrap_or_else(|| cand.encoded());
                (bytes, tx_id.clone(), false)
            }
        };
        if !self.remember(ch, &tx_id) {
            return Slot::Ready(response(
                Code::Conflict,
                format!("duplicate tx id {tx_id}"),
                &tx_id,
            ));
        }
        if let Err(e) = ch.chain.wait_ready().await {
            self.forget(ch, &tx_id);
            return Slot::Ready(response(chain_error_code(&e), e.to_string(), &tx_id));
        }
        let committed =
            state.ack_mode == AckMode::Committed && !crate::faults::ack_before_durable();
        let waiter = if committed {
            match ch.support.register_commit_waiter(&order_tx_id) {
                Ok(w) => Some(w),
                Err(e) => {
                    // Refused before the chain saw it: nothing is taken, the client retries.
                    self.forget(ch, &tx_id);
                    return Slot::Ready(response(Code::ServiceUnavailable, e.to_string(), &tx_id));
                }
            }
        } else {
            None
        };
        let req = OrderRequest {
            envelope: order_env,
            tx_id: order_tx_id.clone(),
            config_seq: state.sequence(),
        };
        let result = if is_config {
            ch.chain.configure(req).await.map(|()| None)
        } else {
            ch.chain.order_pipelined(req).await
        };
        match (result, waiter) {
            (Err(e), _) => {
                ch.support.cancel_commit_waiter(&order_tx_id);
                self.forget(ch, &tx_id);
                Slot::Ready(response(chain_error_code(&e), e.to_string(), &tx_id))
            }
            (Ok(None), None) => Slot::Ready(response(Code::Success, "", &tx_id)),
            (Ok(acceptance), commit) => Slot::Taken {
                tx_id,
                order_tx_id,
                channel: ch.clone(),
                acceptance,
                commit,
            },
        }
    }

    /// Records a tx id as accepted; `false` when it was seen recently (in the window,
    /// which a restart refills from the ledger's last blocks). Older duplicates are the
    /// validating peers' to catch (DUPLICATE_TXID), as in Fabric; a per-envelope ledger
    /// lookup here cost ~4% of the orderer's CPU.
    fn remember(&self, ch: &ChannelHandle, tx_id: &str) -> bool {
        ch.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tx_id)
    }

    fn forget(&self, ch: &ChannelHandle, tx_id: &str) {
        forget(ch, tx_id);
    }
}

/// Forgets an accepted tx id whose envelope was not ordered after all, so that the
/// client's retry is not refused as a duplicate.
fn forget(ch: &ChannelHandle, tx_id: &str) {
    ch.recent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(tx_id);
}

/// The answer for an envelope the chain took: waits for the final acceptance, then (in
/// `committed` mode) for its block or the registry's TimedOut.
async fn taken_response(
    tx_id: String,
    order_tx_id: &str,
    channel: &ChannelHandle,
    acceptance: Pending,
    commit: Option<oneshot::Receiver<CommitOutcome>>,
    shutdown: &CancellationToken,
) -> BroadcastResponse {
    if let Some(acceptance) = acceptance {
        // Biased: a settled answer is taken without registering with the shutdown token.
        let accepted = tokio::select! {
            biased;
            a = acceptance => a,
            _ = shutdown.cancelled() => Err(ordo_consensus::ChainError::ShuttingDown),
        };
        if let Err(e) = accepted {
            channel.support.cancel_commit_waiter(order_tx_id);
            forget(channel, &tx_id);
            return response(chain_error_code(&e), e.to_string(), &tx_id);
        }
    }
    let Some(rx) = commit else {
        return response(Code::Success, "", &tx_id);
    };
    // The registry answers a waiter past its deadline (TimedOut): when it is next used,
    // and in a quiet channel from the node's periodic sweep (`sweep_commit_waiters`). No
    // timer per envelope: at tens of thousands of envelopes a second, their registration
    // in tokio's timer wheel cost more than the sweep.
    let outcome = tokio::select! {
        biased;
        o = rx => o.ok(),
        _ = shutdown.cancelled() => None,
    };
    match outcome {
        Some(Ok(block)) => BroadcastResponse {
            status: Code::Success as i32,
            info: String::new(),
            tx_id,
            block_number: Some(block),
        },
        Some(Err(timed_out @ NotWritten::TimedOut { .. })) => {
            response(Code::ServiceUnavailable, timed_out.to_string(), &tx_id)
        }
        Some(Err(NotWritten::Dropped(reason))) => response(
            Code::ServiceUnavailable,
            format!("not ordered: {reason}"),
            &tx_id,
        ),
        None => response(
            Code::ServiceUnavailable,
            "the node stopped before the envelope's block was written; resubmit",
            &tx_id,
        ),
    }
}

/// The metrics of the last (channel, status) a stream answered with, so that a stream
/// answering SUCCESS on one channel again and again does not build label sets and look
/// up the families per response.
struct ResponseMetrics<'a> {
    metrics: &'a Metrics,
    last: Option<(String, &'static str, Counter, Histogram)>,
}

impl ResponseMetrics<'_> {
    /// Counts a response and observes its latency; `channel` is empty when the envelope's
    /// channel is not known or not served here.
    fn record(&mut self, channel: &str, status: &'static str, seconds: f64) {
        let hit = matches!(&self.last, Some((c, s, _, _)) if c == channel && *s == status);
        if !hit {
            let counter = self
                .metrics
                .broadcast_responses
                .get_or_create(&Metrics::channel_status(channel, status))
                .clone();
            let latency = self
                .metrics
                .broadcast_latency_seconds
                .get_or_create(&Metrics::channel(channel))
                .clone();
            self.last = Some((channel.to_string(), status, counter, latency));
        }
        if let Some((_, _, counter, latency)) = &self.last {
            counter.inc();
            latency.observe(seconds);
        }
    }
}

async fn respond(
    mut slot_rx: mpsc::Receiver<Answer>,
    out_tx: &mpsc::Sender<Result<BroadcastResponse, tonic::Status>>,
    metrics: &Metrics,
    shutdown: CancellationToken,
) {
    let mut recorder = ResponseMetrics {
        metrics,
        last: None,
    };
    while let Some(answer) = slot_rx.recv().await {
        let resp = match answer.slot {
            Slot::Ready(r) => r,
            Slot::Taken {
                tx_id,
                order_tx_id,
                channel,
                acceptance,
                commit,
            } => taken_response(tx_id, &order_tx_id, &channel, acceptance, commit, &shutdown).await,
        };
        let status = Code::try_from(resp.status)
            .map(|c| c.as_str_name())
            .unwrap_or("UNKNOWN");
        recorder.record(
            answer.channel.as_ref().map_or("", |c| c.id()),
            status,
            answer.received.elapsed().as_secs_f64(),
        );
        if out_tx.send(Ok(resp)).await.is_err() {
            return;
        }
    }
}

/// Every `interval`, answers every channel's committed-mode waiters past their deadline,
/// until `shutdown`: one timer for the node instead of one per waiting envelope. A waiter
/// is answered at most `interval` after its deadline.
pub fn sweep_commit_waiters(
    registry: Arc<Registry>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            for ch in registry.list() {
                ch.support.expire_commit_waiters();
            }
        }
    })
}
