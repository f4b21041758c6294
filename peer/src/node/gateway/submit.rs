//! Gateway.Submit's way to the orderers: one long-lived Broadcast stream per orderer,
//! shared by every Submit (pipelined), instead of a stream per transaction.
//!
//! Broadcast answers once per envelope, in order (`ordo_orderer::broadcast`), so a lane
//! keeps the reply slots of the envelopes it sent in a queue and hands each answer to the
//! oldest. Many transactions in flight on one stream also let the orderer check their
//! signatures in one batch. At most [`LANE_IN_FLIGHT`] envelopes are unanswered on a lane;
//! later submits wait in its queue (their Submit's own timeout still runs), so a slow
//! orderer is never handed an unbounded backlog.
//!
//! Each answer must name the transaction at the head of the queue; one that does not
//! means the stream is out of step, and the lane ends.
//!
//! A lane ends when its stream fails or ends: every transaction still waiting on it is
//! told to try the next orderer, and the next Submit opens a new stream. An answer
//! nobody waits for any more (its Submit timed out) is dropped in its turn.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Status;

use ordo_proto::pb::common::{Envelope, Status as Code};
use ordo_proto::pb::orderer::BroadcastResponse;

/// Unanswered envelopes one lane may have on its stream.
pub const LANE_IN_FLIGHT: usize = 4_096;

/// Why an orderer did not take a transaction.
pub(super) enum Refused {
    /// The transaction itself was refused: every orderer would say the same.
    Final(Status),
    /// This orderer could not take it now: try the next.
    TryNext(String),
}

/// A transaction waiting for its lane, and where its answer goes.
struct Slot {
    envelope: Envelope,
    waiter: Waiter,
}

/// Who waits for an answer: the answer must name this tx id (or none, when the orderer
/// could not read the envelope).
struct Waiter {
    tx_id: String,
    reply: oneshot::Sender<Result<BroadcastResponse, String>>,
}

/// The lanes of one gateway, by orderer address.
pub(super) struct OrdererLanes {
    pool: Arc<ordo_node::ClientPool>,
    lanes: Mutex<HashMap<String, mpsc::Sender<Slot>>>,
}

impl OrdererLanes {
    /// Lanes over the pool's kept connections (opened on first use).
    pub(super) fn new(pool: Arc<ordo_node::ClientPool>) -> Self {
        Self {
            pool,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Sends one envelope (whose tx id is `tx_id`) to `addr` and waits for its answer.
    pub(super) async fn broadcast(
        &self,
        addr: &str,
        envelope: &Envelope,
        tx_id: &str,
    ) -> Result<(), Refused> {
        let lane = self.lane(addr)?;
        let (reply, answer) = oneshot::channel();
        lane.send(Slot {
            envelope: envelope.clone(),
            waiter: Waiter {
                tx_id: tx_id.to_string(),
                reply,
            },
        })
        .await
        .map_err(|_| Refused::TryNext("the stream to this orderer closed".into()))?;
        let resp = answer
            .await
            .map_err(|_| Refused::TryNext("the stream to this orderer closed".into()))?
            .map_err(Refused::TryNext)?;
        judge(addr, resp)
    }

    /// The open lane to `addr`, or a new one.
    fn lane(&self, addr: &str) -> Result<mpsc::Sender<Slot>, Refused> {
        let mut lanes = self
            .lanes
            .lock()
            .map_err(|_| Refused::TryNext("the gateway's orderer lanes are unusable".into()))?;
        if let Some(lane) = lanes.get(addr).filter(|l| !l.is_closed()) {
            return Ok(lane.clone());
        }
        let channel = self
            .pool
            .get(addr)
            .map_err(|e| Refused::TryNext(format!("cannot connect: {e}")))?;
        let (lane, slots) = mpsc::channel(LANE_IN_FLIGHT);
        tokio::spawn(run_lane(channel, slots));
        lanes.insert(addr.to_string(), lane.clone());
        Ok(lane)
    }
}

/// Maps the orderer's answer to the gateway's: taken, refused for good (with the code the
/// one status table gives the orderer's status, `ordo_proto::status::grpc_code`), or try
/// the next orderer.
fn judge(addr: &str, resp: BroadcastResponse) -> Result<(), Refused> {
    match Code::try_from(resp.status) {
        Ok(Code::Success) => Ok(()),
        Ok(
            code @ (Code::BadRequest
            | Code::RequestEntityTooLarge
            | Code::Forbidden
            | Code::NotFound
            | Code::Conflict),
        ) => Err(Refused::Final(ordo_proto::status::refusal(
            code,
            format!("orderer {addr}: {}", resp.info),
        ))),
        _ => Err(Refused::TryNext(resp.info)),
    }
}

/// One lane: opens the stream, sends what Submits queue, hands answers back in order,
/// and on any failure tells everyone waiting and ends.
async fn run_lane(channel: Channel, mut slots: mpsc::Receiver<Slot>) {
    let (outbound, stream_in) = mpsc::channel::<Envelope>(LANE_IN_FLIGHT);
    let mut client = ordo_sdk::orderer::broadcast_client(channel);
    let mut answers = match client.broadcast(ReceiverStream::new(stream_in)).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            close(&mut slots, VecDeque::new(), e.message());
            return;
        }
    };
    let mut waiting: VecDeque<Waiter> = VecDeque::new();
    let why = loop {
        tokio::select! {
            slot = slots.recv(), if waiting.len() < LANE_IN_FLIGHT => {
                let Some(slot) = slot else {
                    // Every sender is gone: the gateway shut down.
                    break "the gateway is shutting down".to_string();
                };
                // Never blocks: the outbound queue holds at most what is waiting.
                if outbound.try_send(slot.envelope).is_err() {
                    let _ = slot.waiter.reply.send(Err("the stream to this orderer closed".into()));
                    break "the stream to this orderer closed".to_string();
                }
                waiting.push_back(slot.waiter);
            }
            answer = answers.next() => match answer {
                Some(Ok(resp)) => match waiting.pop_front() {
                    Some(w) if resp.tx_id.is_empty() || resp.tx_id == w.tx_id => {
                        let _ = w.reply.send(Ok(resp));
                    }
                    Some(w) => {
                        let why = format!(
                            "the orderer answered for transaction {} when {} was next",
                            resp.tx_id, w.tx_id
                        );
                        let _ = w.reply.send(Err(why.clone()));
                        break why;
                    }
                    None => break "the orderer answered an envelope it was not sent".to_string(),
                },
                Some(Err(status)) => break status.message().to_string(),
                None => break "the orderer ended the stream".to_string(),
            },
        }
    };
    close(&mut slots, waiting, &why);
}

/// Ends a lane: answers everyone waiting on it and everyone queued for it with `why`.
fn close(slots: &mut mpsc::Receiver<Slot>, waiting: VecDeque<Waiter>, why: &str) {
    slots.close();
    for w in waiting {
        let _ = w.reply.send(Err(why.to_string()));
    }
    while let Ok(slot) = slots.try_recv() {
        let _ = slot.waiter.reply.send(Err(why.to_string()));
    }
}

#[cfg(test)]
mod tests;
