//! The Deliver side: one stream following new blocks, and the [`DeliverTracker`] that
//! turns them into delivery times.
//!
//! The tracker is plain synchronous state owned by the deliver task (no locks); the async
//! part only moves blocks into it and decides when to stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::Block;
use ordo_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo_proto::pb::orderer::{DeliverResponse, SeekBehavior};
use ordo_sdk::orderer::{position, seek_request};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::progress::Counters;
use crate::txid::envelope_tx_id;

/// Delivery bookkeeping for the envelopes of one run.
pub(crate) struct DeliverTracker {
    /// Tx id → envelope index.
    index: HashMap<String, usize>,
    /// First delivery time per envelope.
    delivered_at: Vec<Option<Instant>>,
    /// Envelopes of ours delivered at least once.
    delivered: u64,
    /// Deliveries beyond the first.
    duplicates: u64,
    /// Blocks received (after the starting block).
    blocks: u64,
    /// When the last new envelope of ours was delivered.
    last_delivery: Option<Instant>,
    /// Each block that delivered envelopes of ours for the first time.
    ours_per_block: Vec<OursInBlock>,
    /// Which envelopes were accepted; known once every Broadcast answer is in.
    accepted: Option<Vec<bool>>,
    /// Accepted envelopes not delivered yet (meaningful once `accepted` is known).
    outstanding: u64,
}

/// What the Deliver side saw.
#[derive(Debug)]
pub(crate) struct DeliverOutcome {
    /// First delivery time per envelope.
    pub delivered_at: Vec<Option<Instant>>,
    /// Envelopes of ours delivered at least once.
    pub delivered: u64,
    /// Deliveries beyond the first.
    pub duplicates: u64,
    /// Blocks received.
    pub blocks: u64,
    /// When the last new envelope of ours was delivered.
    pub last_delivery: Option<Instant>,
    /// Each block that delivered envelopes of ours for the first time, in delivery order:
    /// where the run's transactions ended up.
    pub ours_per_block: Vec<OursInBlock>,
    /// Accepted envelopes never delivered.
    pub lost: u64,
}

/// A block that delivered envelopes of ours for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OursInBlock {
    /// Block number.
    pub number: u64,
    /// Envelopes of ours it delivered for the first time.
    pub txs: u64,
    /// When it was delivered: the `delivered_at` of those envelopes. Delivery times never
    /// decrease from one block to the next, so this also maps an envelope to its block.
    pub at: Instant,
}

impl DeliverTracker {
    /// Tracks the envelopes of `index` (values must be `0..index.len()`).
    pub fn new(index: HashMap<String, usize>) -> Self {
        let n = index.len();
        assert!(index.values().all(|&i| i < n), "tx index out of range");
        Self {
            index,
            delivered_at: vec![None; n],
            delivered: 0,
            duplicates: 0,
            blocks: 0,
            last_delivery: None,
            ours_per_block: Vec::new(),
            accepted: None,
            outstanding: 0,
        }
    }

    /// Records a block delivered at `now`; returns how many of our envelopes it delivered
    /// for the first time.
    pub fn record_block(&mut self, block: &Block, now: Instant) -> u64 {
        self.blocks += 1;
        let mut new = 0;
        for entry in block.data.iter().flat_map(|d| d.data.iter()) {
            let Some(id) = envelope_tx_id(entry) else {
                continue;
            };
            let Some(&i) = std::str::from_utf8(&id)
                .ok()
                .and_then(|s| self.index.get(s))
            else {
                continue; // not ours
            };
            if self.delivered_at[i].is_some() {
                self.duplicates += 1;
                continue;
            }
            self.delivered_at[i] = Some(now);
            new += 1;
            if let Some(accepted) = &self.accepted {
                if accepted[i] {
                    self.outstanding -= 1;
                }
            }
        }
        if new > 0 {
            self.delivered += new;
            self.last_delivery = Some(now);
            self.ours_per_block.push(OursInBlock {
                number: ordo_proto::block::number(block),
                txs: new,
                at: now,
            });
        }
        new
    }

    /// Learns which envelopes were accepted (one flag per envelope).
    pub fn set_accepted(&mut self, accepted: Vec<bool>) {
        assert_eq!(
            accepted.len(),
            self.delivered_at.len(),
            "one accepted flag per envelope"
        );
        self.outstanding = accepted
            .iter()
            .zip(&self.delivered_at)
            .filter(|(a, d)| **a && d.is_none())
            .count() as u64;
        self.accepted = Some(accepted);
    }

    /// Every accepted envelope has been delivered.
    pub fn is_complete(&self) -> bool {
        self.accepted.is_some() && self.outstanding == 0
    }

    /// The final tally.
    pub fn finish(self) -> DeliverOutcome {
        DeliverOutcome {
            lost: if self.accepted.is_some() {
                self.outstanding
            } else {
                0
            },
            delivered_at: self.delivered_at,
            delivered: self.delivered,
            duplicates: self.duplicates,
            blocks: self.blocks,
            last_delivery: self.last_delivery,
            ours_per_block: self.ours_per_block,
        }
    }
}

/// Opens a Deliver stream following `channel` from its newest block, and waits for that
/// block: from then on, every block ordered is guaranteed to come through this stream.
/// Returns the stream and the newest block's number.
pub(crate) async fn open(
    mut client: AtomicBroadcastClient<Channel>,
    identity: &Identity,
    channel: &str,
    addr: &str,
    timeout: Duration,
) -> anyhow::Result<(Streaming<DeliverResponse>, u64)> {
    let request = seek_request(
        identity,
        channel,
        position(None),
        None,
        SeekBehavior::BlockUntilReady,
    );
    let mut stream = tokio::time::timeout(timeout, client.deliver(request))
        .await
        .map_err(|_| anyhow!("Deliver from {addr}: no answer in {timeout:?}"))?
        .map_err(|s| refused(&s, addr, channel))?
        .into_inner();
    let first = tokio::time::timeout(timeout, stream.message())
        .await
        .map_err(|_| {
            anyhow!(
                "Deliver from {addr} on channel {channel:?}: no newest block within {timeout:?}"
            )
        })?
        .map_err(|s| refused(&s, addr, channel))?;
    match first.and_then(|m| m.block) {
        Some(newest) => Ok((stream, ordo_proto::block::number(&newest))),
        None => Err(unexpected_end(addr, channel)),
    }
}

/// The orderer ended the stream with a refusal (its gRPC status).
fn refused(s: &tonic::Status, addr: &str, channel: &str) -> anyhow::Error {
    anyhow!(
        "Deliver from {addr} on channel {channel:?} ended: {} {}",
        ordo_proto::status::code_name(s.code()),
        s.message()
    )
}

/// The stream closed (OK) or sent no block where one was due.
fn unexpected_end(addr: &str, channel: &str) -> anyhow::Error {
    anyhow!("Deliver stream from {addr} on channel {channel:?} ended before the blocks it was asked for")
}

/// Where a Deliver stream comes from and how long to drain it.
pub(crate) struct FollowSettings {
    /// The orderer's address, for messages.
    pub addr: String,
    /// The channel, for messages.
    pub channel: String,
    /// After the accepted flags arrive: give up after this long without a new delivery.
    pub drain_timeout: Duration,
}

/// Follows the stream into `tracker` until every accepted envelope has been delivered, or
/// until `drain_timeout` passes without a new delivery of ours once the accepted flags
/// have arrived on `accepted_rx`. `on_block(number, new)` is called for every block that
/// delivered `new` > 0 envelopes of ours for the first time (for live progress).
pub(crate) async fn follow(
    mut stream: Streaming<DeliverResponse>,
    mut tracker: DeliverTracker,
    mut accepted_rx: oneshot::Receiver<Vec<bool>>,
    settings: FollowSettings,
    counters: Arc<Counters>,
    mut on_block: impl FnMut(u64, u64) + Send,
) -> anyhow::Result<DeliverOutcome> {
    let FollowSettings {
        addr,
        channel,
        drain_timeout,
    } = settings;
    // `Some` once draining: give up at this instant unless something new arrives.
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let sleep_to =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            accepted = &mut accepted_rx, if deadline.is_none() => {
                let accepted = accepted.map_err(|_| anyhow!("internal: the Broadcast side vanished"))?;
                tracker.set_accepted(accepted);
                if tracker.is_complete() {
                    break;
                }
                deadline = Some(tokio::time::Instant::now() + drain_timeout);
            }
            _ = tokio::time::sleep_until(sleep_to), if deadline.is_some() => {
                tracing::warn!(orderer = %addr, "no new delivery for {drain_timeout:?}; giving up on the rest");
                break;
            }
            msg = stream.message() => {
                let msg = msg.map_err(|s| refused(&s, &addr, &channel))?;
                let Some(block) = msg.and_then(|m| m.block) else {
                    return Err(unexpected_end(&addr, &channel));
                };
                let new = tracker.record_block(&block, Instant::now());
                if new > 0 {
                    on_block(ordo_proto::block::number(&block), new);
                    Counters::add(&counters.delivered, new);
                    if deadline.is_some() {
                        deadline = Some(tokio::time::Instant::now() + drain_timeout);
                    }
                }
                if tracker.is_complete() {
                    break;
                }
            }
        }
    }
    Ok(tracker.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txid::tests::test_identity;
    use bytes::Bytes;
    use ordo_proto::envelope::create_signed;
    use ordo_proto::pb::common::{BlockData, BlockHeader, HeaderType};
    use prost::Message;

    fn block(number: u64, envs: &[&Bytes]) -> Block {
        Block {
            header: Some(BlockHeader {
                number,
                ..Default::default()
            }),
            data: Some(BlockData {
                data: envs.iter().map(|b| (*b).clone()).collect(),
            }),
            metadata: None,
        }
    }

    #[test]
    fn tracks_deliveries_duplicates_and_completion() {
        let id = test_identity();
        let mut encoded = Vec::new();
        let mut index = HashMap::new();
        for i in 0..4 {
            let (env, tx_id) = create_signed(&id, "ch", HeaderType::Message, Bytes::new(), 1);
            encoded.push(Bytes::from(env.encode_to_vec()));
            index.insert(tx_id, i);
        }
        let (foreign, _) = create_signed(&id, "ch", HeaderType::Message, Bytes::new(), 1);
        let foreign = Bytes::from(foreign.encode_to_vec());
        let junk = Bytes::from_static(b"\xff\xff");

        let mut t = DeliverTracker::new(index);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        assert_eq!(
            t.record_block(&block(3, &[&encoded[0], &foreign, &junk]), t0),
            1
        );
        assert_eq!(t.record_block(&Block::default(), t0), 0);
        assert!(!t.is_complete(), "accepted flags not known yet");
        // Envelope 3 was rejected; 0, 1, 2 accepted; 0 already delivered.
        t.set_accepted(vec![true, true, true, false]);
        assert_eq!(t.outstanding, 2);
        assert_eq!(
            t.record_block(&block(5, &[&encoded[1], &encoded[0], &encoded[3]]), t1),
            2
        );
        assert!(!t.is_complete());
        assert_eq!(
            t.record_block(&block(6, &[&encoded[2], &encoded[2]]), t1),
            1
        );
        assert!(t.is_complete());
        let out = t.finish();
        assert_eq!(out.delivered, 4);
        assert_eq!(out.duplicates, 2);
        assert_eq!(out.blocks, 4);
        assert_eq!(out.lost, 0);
        assert_eq!(out.last_delivery, Some(t1));
        let ours: Vec<(u64, u64, Instant)> = out
            .ours_per_block
            .iter()
            .map(|b| (b.number, b.txs, b.at))
            .collect();
        assert_eq!(ours, vec![(3, 1, t0), (5, 2, t1), (6, 1, t1)]);
        assert_eq!(
            out.delivered_at,
            vec![Some(t0), Some(t1), Some(t1), Some(t1)]
        );
    }

    #[test]
    fn undelivered_accepted_envelopes_are_lost() {
        let index: HashMap<String, usize> = [
            ("a".to_string(), 0),
            ("b".to_string(), 1),
            ("c".to_string(), 2),
        ]
        .into();
        let mut t = DeliverTracker::new(index);
        t.set_accepted(vec![true, false, true]);
        assert!(!t.is_complete());
        let out = t.finish();
        assert_eq!(out.lost, 2);
        assert_eq!(out.delivered, 0);
        assert_eq!(out.last_delivery, None);
    }
}
