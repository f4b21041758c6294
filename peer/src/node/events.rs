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

use std::sync::Arc;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
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

/// The Events handler.
pub struct PeerEvents {
    channels: Arc<PeerChannels>,
    shutdown: CancellationToken,
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
        Self { channels, shutdown }
    }

    /// Events.ChaincodeEvents.
    pub fn chaincode_events(
        &self,
        request: &Envelope,
    ) -> Result<ReceiverStream<Result<ChaincodeEventsResponse, Status>>, Status> {
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
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
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
        Ok(ReceiverStream::new(rx))
    }

    /// Events.BlockEvents.
    pub fn block_events(
        &self,
        request: &Envelope,
    ) -> Result<ReceiverStream<Result<BlockEventsResponse, Status>>, Status> {
        let (channel, data) = reader_request(&self.channels, request)?;
        let req = BlockEventsRequest::decode(data)
            .map_err(|e| Status::invalid_argument(format!("block events request: {e}")))?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
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
        Ok(ReceiverStream::new(rx))
    }
}

/// Sends `render(number, block)` for every committed block from `start` on, waiting for
/// new ones, until the client goes away, the peer shuts down or the ledger fails.
async fn follow<T>(
    channel: &PeerChannel,
    start: u64,
    tx: &mpsc::Sender<Result<T, Status>>,
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
                    let _ = tx.send(Err(Status::unavailable("the peer is shutting down"))).await;
                    return;
                }
            }
            continue;
        }
        let block = match ledger.block(next) {
            Ok(Some(b)) => b,
            Ok(None) => {
                let _ = tx
                    .send(Err(Status::internal(format!("block {next} missing"))))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                return;
            }
        };
        if let Some(item) = render(next, &block) {
            if tx.send(Ok(item)).await.is_err() {
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
