//! The Events service: chaincode events and committed blocks (whole or filtered) as
//! streams, from a given block on, following new blocks as they commit.
//!
//! Only transactions committed as VALID carry events; the validation code of every
//! transaction is in its block's metadata, so a filtered block answers "what happened to
//! my transaction" without the transaction's bytes. A chaincode event stream resumes
//! after a checkpoint (block, tx id) with nothing repeated and nothing skipped.
//!
//! A stream opens for a reader of the channel whose request is stamped within the
//! freshness window of the peer's clock ([`reader_request`]; PERMISSION_DENIED otherwise),
//! so a captured request cannot be replayed later.
//!
//! **Bounds.** A reader that never reads holds at most [`STREAM_BUFFER_BYTES`] of
//! buffered answers (one larger block alone), not 16 whole blocks; and one identity holds
//! at most [`MAX_STREAMS_PER_IDENTITY`] streams on this peer (RESOURCE_EXHAUSTED beyond),
//! whose answers together hold at most [`ordo_node::stream_budget::DEFAULT_CLIENT_BYTES`];
//! all event streams of the peer together hold at most
//! [`ordo_node::stream_budget::DEFAULT_NODE_BYTES`] (`ordo_node::stream_budget` says how,
//! and what it costs).
//! A chaincode the channel does not define is NOT_FOUND, not a stream that stays silent.

use std::sync::Arc;

use ordo_node::stream_budget::{self, BudgetSender, BudgetStream, StreamLimiter, StreamSlot};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use ordo_proto::envelope;
use ordo_proto::pb::common::{Block, Envelope};
use ordo_proto::pb::gateway::{
    block_events_response, BlockEventsRequest, BlockEventsResponse, ChaincodeEvent,
    ChaincodeEventsRequest, ChaincodeEventsResponse, FilteredBlock, FilteredTransaction,
};
use ordo_proto::pb::peer::{EndorserTransaction, ProposalResponsePayload, TxValidationCode};

use super::admin::reader_request;
use super::channels::{PeerChannel, PeerChannels};

/// Responses buffered per stream before the sender waits for the client.
const STREAM_BUFFER: usize = 16;

/// Bytes of responses buffered per stream before the sender waits for the client (a
/// block larger than this is sent alone).
pub const STREAM_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Event streams one identity may hold open on this peer at once; beyond,
/// RESOURCE_EXHAUSTED.
pub const MAX_STREAMS_PER_IDENTITY: usize = 64;

/// The sending side of one event stream.
type Sender<T> = BudgetSender<Result<T, Status>>;

/// The Events handler.
pub struct PeerEvents {
    channels: Arc<PeerChannels>,
    shutdown: CancellationToken,
    /// Open streams per requesting certificate (its SHA-256).
    open: StreamLimiter,
}

/// One transaction of a committed block, as events see it.
struct TxOutcome {
    tx_id: String,
    code: u8,
    event: Option<ChaincodeEvent>,
}

impl PeerEvents {
    /// A handler over the peer's channels; streams end when `shutdown` is cancelled.
    pub fn new(channels: Arc<PeerChannels>, shutdown: CancellationToken) -> Self {
        Self {
            channels,
            shutdown,
            open: StreamLimiter::new(MAX_STREAMS_PER_IDENTITY),
        }
    }

    /// Counts a new stream of the request's creator, or refuses it past the cap.
    fn admit(&self, request: &Envelope) -> Result<StreamSlot, Status> {
        let creator = envelope::unpack(request)
            .map_err(|e| Status::invalid_argument(format!("request: {e}")))?
            .header
            .creator;
        self.open
            .admit(ordo_proto::hash::sha256(&creator))
            .ok_or_else(|| {
                Status::resource_exhausted(format!(
                    "this identity holds {MAX_STREAMS_PER_IDENTITY} event streams on this peer already; close one first"
                ))
            })
    }

    /// Events.ChaincodeEvents.
    pub fn chaincode_events(
        &self,
        request: &Envelope,
    ) -> Result<BudgetStream<Result<ChaincodeEventsResponse, Status>>, Status> {
        let (channel, data) = reader_request(&self.channels, request)?;
        let req = ChaincodeEventsRequest::decode(data)
            .map_err(|e| Status::invalid_argument(format!("chaincode events request: {e}")))?;
        if req.chaincode.is_empty() {
            return Err(Status::invalid_argument("no chaincode named"));
        }
        // A stream for a chaincode the channel does not define would stay silent forever.
        if !channel
            .status()
            .config
            .chaincodes
            .iter()
            .any(|c| c.name == req.chaincode)
        {
            return Err(Status::not_found(format!(
                "chaincode {:?} is not defined on channel {:?}",
                req.chaincode,
                channel.id()
            )));
        }
        let counted = self.admit(request)?;
        let (mut tx, rx) = stream_budget::channel(STREAM_BUFFER_BYTES, STREAM_BUFFER);
        tx.share(&counted);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _counted = counted;
            let mut skipping = !req.after_tx_id.is_empty();
            follow(
                &channel,
                req.start_block,
                &tx,
                &shutdown,
                |number, block| {
                    let mut events = Vec::new();
                    for t in outcomes(block) {
                        if skipping && number == req.start_block {
                            if t.tx_id == req.after_tx_id {
                                skipping = false;
                            }
                            continue;
                        }
                        if let Some(e) = t.event.filter(|e| e.chaincode == req.chaincode) {
                            events.push(e);
                        }
                    }
                    (!events.is_empty()).then_some(ChaincodeEventsResponse {
                        block_number: number,
                        events,
                    })
                },
            )
            .await;
        });
        Ok(rx)
    }

    /// Events.BlockEvents.
    pub fn block_events(
        &self,
        request: &Envelope,
    ) -> Result<BudgetStream<Result<BlockEventsResponse, Status>>, Status> {
        let (channel, data) = reader_request(&self.channels, request)?;
        let req = BlockEventsRequest::decode(data)
            .map_err(|e| Status::invalid_argument(format!("block events request: {e}")))?;
        let counted = self.admit(request)?;
        let (mut tx, rx) = stream_budget::channel(STREAM_BUFFER_BYTES, STREAM_BUFFER);
        tx.share(&counted);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _counted = counted;
            follow(
                &channel,
                req.start_block,
                &tx,
                &shutdown,
                |number, block| {
                    let kind = if req.filtered {
                        block_events_response::Kind::Filtered(FilteredBlock {
                            number,
                            transactions: outcomes(block)
                                .into_iter()
                                .map(|t| FilteredTransaction {
                                    code_name: TxValidationCode::try_from(i32::from(t.code))
                                        .map(|c| c.as_str_name().to_string())
                                        .unwrap_or_default(),
                                    code: u32::from(t.code),
                                    tx_id: t.tx_id,
                                    event: t.event,
                                })
                                .collect(),
                        })
                    } else {
                        block_events_response::Kind::Block(block.clone())
                    };
                    Some(BlockEventsResponse { kind: Some(kind) })
                },
            )
            .await;
        });
        Ok(rx)
    }
}

/// Sends `render(number, block)` for every committed block from `start` on, waiting for
/// new ones, until the client goes away, the peer shuts down or the ledger fails.
async fn follow<T: Message>(
    channel: &PeerChannel,
    start: u64,
    tx: &Sender<T>,
    shutdown: &CancellationToken,
    mut render: impl FnMut(u64, &Block) -> Option<T>,
) {
    let ledger = channel.ledger();
    let mut next = start;
    loop {
        if next >= ledger.height() {
            tokio::select! {
                _ = ledger.wait_for_height(next + 1) => {}
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => {
                    let _ = tx
                        .send(Err(Status::unavailable("the peer is shutting down")), 0)
                        .await;
                    return;
                }
            }
            continue;
        }
        let block = match ledger.block(next) {
            Ok(Some(b)) => b,
            Ok(None) => {
                let _ = tx
                    .send(Err(Status::internal(format!("block {next} missing"))), 0)
                    .await;
                return;
            }
            Err(e @ ordo_ledger::LedgerError::Pruned { .. }) => {
                let _ = tx.send(Err(Status::not_found(e.to_string())), 0).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(Status::internal(e.to_string())), 0).await;
                return;
            }
        };
        if let Some(item) = render(next, &block) {
            let bytes = item.encoded_len();
            if tx.send(Ok(item), bytes).await.is_err() {
                return;
            }
        }
        next += 1;
    }
}

/// Every transaction of a committed block with its code and, when VALID, its event.
fn outcomes(block: &Block) -> Vec<TxOutcome> {
    let codes = block
        .metadata
        .as_ref()
        .map(|m| m.transaction_validation_codes.clone())
        .unwrap_or_default();
    block
        .data
        .iter()
        .flat_map(|d| d.data.iter())
        .enumerate()
        .map(|(i, bytes)| {
            let code = codes
                .get(i)
                .copied()
                .unwrap_or(TxValidationCode::NotValidated as u8);
            let unpacked = envelope::decode(bytes)
                .ok()
                .and_then(|e| envelope::unpack(&e).ok());
            let tx_id = unpacked
                .as_ref()
                .map(|u| u.header.tx_id.clone())
                .unwrap_or_default();
            let event = (code == TxValidationCode::Valid as u8)
                .then(|| unpacked.as_ref().and_then(|u| event_of(&u.data, &tx_id)))
                .flatten();
            TxOutcome { tx_id, code, event }
        })
        .collect()
}

fn event_of(data: &[u8], tx_id: &str) -> Option<ChaincodeEvent> {
    let tx = EndorserTransaction::decode(data).ok()?;
    let prp = ProposalResponsePayload::decode(tx.response_payload).ok()?;
    let e = prp.event?;
    Some(ChaincodeEvent {
        tx_id: tx_id.to_string(),
        chaincode: prp.chaincode,
        name: e.name,
        payload: e.payload,
    })
}
