//! Deliver: a signed SeekInfo in, a stream of blocks out, ended by a gRPC status.
//!
//! The checks speak in `ordo.common.Status` values (the metrics' `status` label); the
//! client gets each as a gRPC code ([`ordo_proto::status::grpc_code`]): BAD_REQUEST is
//! INVALID_ARGUMENT, FORBIDDEN is PERMISSION_DENIED, and so on. A stream that delivered its
//! `stop` block ends with OK.
//!
//! Checks, in order: decode and header (BAD_REQUEST), channel (NOT_FOUND), the request's
//! timestamp within [`DEFAULT_FRESHNESS_WINDOW_MS`] of the node's clock (FORBIDDEN: a
//! captured request cannot be replayed later), creator certificate and signature
//! (FORBIDDEN), Readers policy (FORBIDDEN), the seek range (BAD_REQUEST when stop is
//! before start). The timestamp is checked once, when the stream opens; an open stream
//! lives on while the reader's certificate is valid. Then blocks stream from the ledger; past the
//! height the stream waits on the ledger's height watch (BLOCK_UNTIL_READY) or ends with
//! NOT_FOUND (FAIL_IF_NOT_READY). The stream ends with SUCCESS after the stop block, with
//! SERVICE_UNAVAILABLE when the channel is removed or the node stops, and with FORBIDDEN
//! when the reader's certificate expires mid-stream.
//!
//! Blocks go out as the ledger stored them ([`EncodedDeliverResponse`]), never decoded
//! and re-encoded.
//!
//! **Bounds.** A reader that never reads holds at most [`DELIVER_BUFFER_BYTES`] of
//! buffered blocks (one larger block alone); one reader certificate holds at most
//! [`MAX_DELIVER_STREAMS_PER_READER`] Deliver streams on this orderer (TOO_MANY_REQUESTS,
//! i.e. RESOURCE_EXHAUSTED, beyond, checked after every other check), whose blocks
//! together hold at most
//! [`ordo_node::stream_budget::DEFAULT_CLIENT_BYTES`]; all Deliver streams of the node
//! together hold at most [`ordo_node::stream_budget::DEFAULT_NODE_BYTES`] (see
//! `ordo_node::stream_budget` for how, and for the trade-off).

use std::sync::Arc;

use prost::Message;
use tokio_util::sync::CancellationToken;

use ordo_node::stream_budget::{self, BudgetSender, BudgetStream, StreamLimiter};

use ordo_proto::cert::VerifiedCert;
use ordo_proto::envelope;
use ordo_proto::pb::common::{Envelope, HeaderType, Status as Code};
use ordo_proto::pb::orderer::{seek_position, SeekBehavior, SeekInfo, SeekPosition};
use ordo_proto::replay::DEFAULT_FRESHNESS_WINDOW_MS;

use crate::atomic::EncodedDeliverResponse;

use crate::auth::{authorize_reader, Refusal};
use crate::metrics::Metrics;
use crate::registry::{ChannelHandle, Registry};

/// Bytes of blocks buffered per Deliver stream before the sender waits for the reader.
pub const DELIVER_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Deliver streams one reader certificate may hold open on this orderer at once.
pub const MAX_DELIVER_STREAMS_PER_READER: usize = 64;

/// The sending side of one Deliver stream.
type Sender = BudgetSender<Result<EncodedDeliverResponse, tonic::Status>>;

/// A Deliver request that passed every check.
struct Seek {
    channel: Arc<ChannelHandle>,
    reader: VerifiedCert,
    start: u64,
    stop: u64,
    fail_if_not_ready: bool,
}

/// Shared state of the Deliver handler.
#[derive(Clone)]
pub struct DeliverHandler {
    /// The channels.
    pub registry: Arc<Registry>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Cancelled on node shutdown.
    pub shutdown: CancellationToken,
    /// Open streams per reader certificate.
    pub streams: StreamLimiter,
}

/// How a stream ended: SUCCESS after its `stop` block, otherwise why not.
type End = (Code, String);

fn end(code: Code, info: impl Into<String>) -> End {
    (code, info.into())
}

impl DeliverHandler {
    /// Checks the request and starts streaming.
    pub fn handle(
        &self,
        request: Envelope,
    ) -> BudgetStream<Result<EncodedDeliverResponse, tonic::Status>> {
        let (mut tx, rx) = stream_budget::channel(DELIVER_BUFFER_BYTES, 4);
        let this = self.clone();
        tokio::spawn(async move {
            let (code, info) = match this.check(&request) {
                Err(refusal) => refusal,
                Ok(seek) => match this.streams.admit(seek.reader.cert_hash) {
                    None => end(
                        Code::TooManyRequests,
                        format!(
                            "this reader holds {} Deliver streams on this orderer already; close one first",
                            this.streams.max_per_client()
                        ),
                    ),
                    Some(slot) => {
                        tx.share(&slot);
                        this.metrics.deliver_streams.inc();
                        let r = this.stream(seek, &tx).await;
                        this.metrics.deliver_streams.dec();
                        match r {
                            Some(resp) => resp,
                            None => return, // the client went away
                        }
                    }
                },
            };
            this.metrics
                .deliver_ends
                .get_or_create(&vec![(
                    "status".to_string(),
                    code.as_str_name().to_string(),
                )])
                .inc();
            if code != Code::Success {
                let _ = tx
                    .send(Err(ordo_proto::status::refusal(code, info)), 0)
                    .await;
            }
        });
        rx
    }

    fn check(&self, request: &Envelope) -> Result<Seek, Refusal> {
        let unpacked = envelope::unpack(request).map_err(|e| (Code::BadRequest, e.to_string()))?;
        if unpacked.header_type != HeaderType::DeliverSeekInfo {
            return Err((
                Code::BadRequest,
                format!(
                    "header type {} is not DELIVER_SEEK_INFO",
                    unpacked.header_type.as_str_name()
                ),
            ));
        }
        let channel_id = &unpacked.header.channel_id;
        let channel = self
            .registry
            .get(channel_id)
            .ok_or_else(|| (Code::NotFound, format!("channel {channel_id:?} not found")))?;
        let state = channel.support.state();
        let reader = authorize_reader(
            &state,
            request,
            &unpacked.header,
            ordo_proto::now_ms(),
            DEFAULT_FRESHNESS_WINDOW_MS,
        )?;
        let seek = SeekInfo::decode(unpacked.data.as_ref())
            .map_err(|e| (Code::BadRequest, format!("seek info: {e}")))?;
        let height = channel.support.height();
        let newest = height.saturating_sub(1);
        let resolve = |p: &Option<SeekPosition>, what: &str| -> Result<u64, Refusal> {
            match p.as_ref().and_then(|p| p.r#type.as_ref()) {
                // The oldest block held: 0, or where pruning (or a join above it) left
                // the ledger starting.
                Some(seek_position::Type::Oldest(_)) => Ok(channel.support.ledger().first_block()),
                Some(seek_position::Type::Newest(_)) => Ok(newest),
                Some(seek_position::Type::Specified(n)) => Ok(*n),
                None => Err((
                    Code::BadRequest,
                    format!("seek info has no {what} position"),
                )),
            }
        };
        let start = resolve(&seek.start, "start")?;
        let stop = if seek.stop.is_none() {
            u64::MAX
        } else {
            resolve(&seek.stop, "stop")?
        };
        if stop < start {
            return Err((
                Code::BadRequest,
                format!("stop {stop} is before start {start}"),
            ));
        }
        let behavior = SeekBehavior::try_from(seek.behavior).map_err(|_| {
            (
                Code::BadRequest,
                format!("unknown seek behavior {}", seek.behavior),
            )
        })?;
        let fail_if_not_ready = behavior == SeekBehavior::FailIfNotReady;
        if fail_if_not_ready && start >= height {
            return Err((
                Code::NotFound,
                format!("block {start} is not available yet (height {height})"),
            ));
        }
        Ok(Seek {
            channel,
            reader,
            start,
            stop,
            fail_if_not_ready,
        })
    }

    /// Streams blocks; returns how the stream ended, or `None` when the client went away.
    async fn stream(&self, seek: Seek, tx: &Sender) -> Option<End> {
        let ledger = seek.channel.support.ledger().clone();
        let labels = Metrics::channel(seek.channel.id());
        let mut next = seek.start;
        loop {
            if next > seek.stop {
                return Some(end(Code::Success, ""));
            }
            if self.shutdown.is_cancelled() || seek.channel.closed.is_cancelled() {
                return Some(end(
                    Code::ServiceUnavailable,
                    "the channel was removed or the node is stopping",
                ));
            }
            if ledger.height() <= next {
                if seek.fail_if_not_ready {
                    return Some(end(
                        Code::NotFound,
                        format!(
                            "block {next} is not available yet (height {})",
                            ledger.height()
                        ),
                    ));
                }
                tokio::select! {
                    _ = ledger.wait_for_height(next.saturating_add(1)) => {}
                    _ = seek.channel.closed.cancelled() => {}
                    _ = self.shutdown.cancelled() => {}
                    _ = tx.closed() => return None,
                }
                continue;
            }
            if let Err(e) = seek.reader.check_validity(ordo_proto::now_ms() / 1000) {
                return Some(end(Code::Forbidden, format!("reader certificate: {e}")));
            }
            let block = match ledger.block_bytes(next) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    return Some(end(
                        Code::InternalServerError,
                        format!("block {next} missing from the ledger"),
                    ))
                }
                // Pruned (or joined above it): the answer names the lowest block held,
                // where the client can resume or what it must get elsewhere (an archive).
                // The config block in force is the exception: the ledger keeps it with its
                // base, and clients read it to build config updates.
                Err(e @ ordo_ledger::LedgerError::Pruned { .. }) => {
                    match ledger.base_config_block_bytes(next) {
                        Ok(Some(b)) => b,
                        _ => return Some(end(Code::NotFound, e.to_string())),
                    }
                }
                Err(e) => {
                    return Some(end(
                        Code::InternalServerError,
                        format!("reading block {next}: {e}"),
                    ))
                }
            };
            let bytes = block.len();
            let resp = EncodedDeliverResponse { block };
            if tx.send(Ok(resp), bytes).await.is_err() {
                return None;
            }
            self.metrics.deliver_blocks.get_or_create(&labels).inc();
            next += 1;
        }
    }
}
