//! One Broadcast stream: a feeder task hands envelopes to the stream while this task reads
//! the answers, one per envelope, in order.
//!
//! A semaphore of [`crate::BROADCAST_WINDOW`] permits bounds the unanswered envelopes: the
//! feeder takes a permit per envelope, the reader returns one per response. The feeder owns
//! the submit times and the reader the outcomes, so nothing is locked per envelope.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ordo_proto::pb::common::{Envelope, Status};
use ordo_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo_proto::pb::orderer::BroadcastResponse;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::progress::Counters;
use crate::txid::payload_tx_id;

/// What one stream sends, and where.
pub(crate) struct StreamPlan {
    /// Index of this stream's first envelope in the whole run.
    pub first_index: usize,
    /// This stream's envelopes, in send order.
    pub envelopes: Arc<[Envelope]>,
    /// A client on this stream's own connection.
    pub client: AtomicBroadcastClient<Channel>,
    /// The orderer's address, for error messages.
    pub addr: String,
    /// Most unanswered envelopes at any time.
    pub window: usize,
    /// Longest wait for any one response (or for the stream to open) before giving up.
    pub response_timeout: Duration,
}

/// What one stream did.
#[derive(Debug)]
pub(crate) struct StreamOutcome {
    /// Index of this stream's first envelope in the whole run.
    pub first_index: usize,
    /// When each envelope was handed to the stream, in order.
    pub submitted_at: Vec<Instant>,
    /// Whether each envelope was answered SUCCESS, in order.
    pub accepted: Vec<bool>,
    /// Non-SUCCESS answers by status name.
    pub rejections: BTreeMap<String, u64>,
    /// When the last SUCCESS arrived.
    pub last_ack: Option<Instant>,
}

/// The sums over every stream of a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BroadcastTotals {
    /// Envelopes handed to a stream.
    pub sent: u64,
    /// Envelopes answered SUCCESS.
    pub accepted: u64,
    /// Envelopes answered otherwise.
    pub rejected: u64,
    /// Rejections by status name.
    pub rejections: BTreeMap<String, u64>,
    /// The first submit of any stream: the start of the clock.
    pub first_submit: Option<Instant>,
    /// The last SUCCESS of any stream.
    pub last_ack: Option<Instant>,
}

impl BroadcastTotals {
    /// Sums `streams`.
    pub fn of(streams: &[StreamOutcome]) -> Self {
        let mut rejections: BTreeMap<String, u64> = BTreeMap::new();
        let (mut sent, mut accepted) = (0u64, 0u64);
        for s in streams {
            sent += s.submitted_at.len() as u64;
            accepted += s.accepted.iter().filter(|a| **a).count() as u64;
            for (name, n) in &s.rejections {
                *rejections.entry(name.clone()).or_default() += n;
            }
        }
        Self {
            sent,
            accepted,
            rejected: rejections.values().sum(),
            rejections,
            first_submit: streams
                .iter()
                .filter_map(|s| s.submitted_at.first())
                .min()
                .copied(),
            last_ack: streams.iter().filter_map(|s| s.last_ack).max(),
        }
    }
}

/// Sends every envelope of `plan` and collects the answers.
pub(crate) async fn run_stream(
    plan: StreamPlan,
    counters: Arc<Counters>,
) -> anyhow::Result<StreamOutcome> {
    let StreamPlan {
        first_index,
        envelopes,
        mut client,
        addr,
        window,
        response_timeout,
    } = plan;
    let window_sem = Arc::new(Semaphore::new(window));
    // As deep as the window, so that a send never waits for channel capacity: the window
    // is the only limit, and the submit time is not inflated by our own back-pressure.
    let (tx, rx) = mpsc::channel(window.max(1));
    let feeder = tokio::spawn(feed(
        envelopes.clone(),
        tx,
        window_sem.clone(),
        counters.clone(),
    ));
    // Abort the feeder (which may be waiting for a permit that will never come) on error.
    let outcome = async {
        let opened =
            tokio::time::timeout(response_timeout, client.broadcast(ReceiverStream::new(rx)))
                .await
                .map_err(|_| {
                    anyhow!(
                        "opening a Broadcast stream to {addr}: no answer in {response_timeout:?}"
                    )
                })?
                .with_context(|| format!("opening a Broadcast stream to {addr}"))?;
        let mut responses = opened.into_inner();
        read_responses(
            &mut responses,
            &envelopes,
            &window_sem,
            &counters,
            response_timeout,
            &addr,
        )
        .await
    }
    .await;
    let (accepted, rejections, last_ack) = match outcome {
        Ok(o) => o,
        Err(e) => {
            feeder.abort();
            return Err(e);
        }
    };
    let submitted_at = feeder.await.context("Broadcast feeder task failed")?;
    Ok(StreamOutcome {
        first_index,
        submitted_at,
        accepted,
        rejections,
        last_ack,
    })
}

/// Hands the envelopes to the stream, one window permit each; returns the submit times.
async fn feed(
    envelopes: Arc<[Envelope]>,
    tx: mpsc::Sender<Envelope>,
    window: Arc<Semaphore>,
    counters: Arc<Counters>,
) -> Vec<Instant> {
    let mut submitted_at = Vec::with_capacity(envelopes.len());
    for env in envelopes.iter() {
        match window.acquire().await {
            // Returned by the reader when the answer arrives.
            Ok(permit) => permit.forget(),
            Err(_) => break, // closed: the reader gave up
        }
        submitted_at.push(Instant::now());
        // Cloning an envelope clones two `Bytes` handles, not the data.
        if tx.send(env.clone()).await.is_err() {
            submitted_at.pop(); // the stream is gone; this one was never handed over
            break;
        }
        Counters::add(&counters.sent, 1);
    }
    submitted_at
}

type Answers = (Vec<bool>, BTreeMap<String, u64>, Option<Instant>);

/// Reads exactly one answer per envelope.
async fn read_responses(
    responses: &mut Streaming<BroadcastResponse>,
    envelopes: &[Envelope],
    window: &Semaphore,
    counters: &Counters,
    response_timeout: Duration,
    addr: &str,
) -> anyhow::Result<Answers> {
    let n = envelopes.len();
    let mut accepted = Vec::with_capacity(n);
    let mut rejections: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_ack = None;
    for (i, env) in envelopes.iter().enumerate() {
        let resp = tokio::time::timeout(response_timeout, responses.message())
            .await
            .map_err(|_| {
                anyhow!("Broadcast stream to {addr}: no response for {response_timeout:?} ({i} of {n} answered)")
            })?
            .with_context(|| format!("Broadcast stream to {addr} failed after {i} of {n} responses"))?
            .ok_or_else(|| anyhow!("Broadcast stream to {addr} ended after {i} of {n} responses"))?;
        window.add_permits(1);
        check_answers(&resp, env, i, addr)?;
        if resp.status == Status::Success as i32 {
            accepted.push(true);
            last_ack = Some(Instant::now());
            Counters::add(&counters.accepted, 1);
        } else {
            accepted.push(false);
            count_rejection(&mut rejections, &resp, addr);
            Counters::add(&counters.rejected, 1);
        }
    }
    Ok((accepted, rejections, last_ack))
}

/// Answers come in order; one naming another tx id means the orderer broke that promise,
/// and every number after it would be wrong.
fn check_answers(
    resp: &BroadcastResponse,
    env: &Envelope,
    i: usize,
    addr: &str,
) -> anyhow::Result<()> {
    if resp.tx_id.is_empty() {
        return Ok(());
    }
    let expected = payload_tx_id(&env.payload).unwrap_or_default();
    if resp.tx_id.as_bytes() != expected.as_ref() {
        bail!(
            "Broadcast stream to {addr}: response {i} is for tx {} but envelope {i} is tx {}",
            resp.tx_id,
            String::from_utf8_lossy(&expected)
        );
    }
    Ok(())
}

/// The name of a status code, e.g. `SERVICE_UNAVAILABLE`, or `STATUS_<code>` if unknown.
pub(crate) fn status_name(code: i32) -> String {
    match Status::try_from(code) {
        Ok(s) => s.as_str_name().to_string(),
        Err(_) => format!("STATUS_{code}"),
    }
}

fn count_rejection(rejections: &mut BTreeMap<String, u64>, resp: &BroadcastResponse, addr: &str) {
    let name = match Status::try_from(resp.status) {
        Ok(s) => std::borrow::Cow::Borrowed(s.as_str_name()),
        Err(_) => std::borrow::Cow::Owned(status_name(resp.status)),
    };
    // No allocation for a status already seen.
    if let Some(count) = rejections.get_mut(name.as_ref()) {
        *count += 1;
    } else {
        tracing::warn!(orderer = addr, status = %name, info = %resp.info, "first rejection with this status");
        rejections.insert(name.into_owned(), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names() {
        assert_eq!(status_name(200), "SUCCESS");
        assert_eq!(status_name(503), "SERVICE_UNAVAILABLE");
        assert_eq!(status_name(299), "STATUS_299");
    }

    #[test]
    fn rejections_are_counted_by_name() {
        let mut r = BTreeMap::new();
        let resp = |status: i32| BroadcastResponse {
            status,
            ..Default::default()
        };
        count_rejection(&mut r, &resp(403), "a");
        count_rejection(&mut r, &resp(503), "a");
        count_rejection(&mut r, &resp(403), "a");
        count_rejection(&mut r, &resp(7), "a");
        let expected: BTreeMap<String, u64> = [
            ("FORBIDDEN".to_string(), 2),
            ("SERVICE_UNAVAILABLE".to_string(), 1),
            ("STATUS_7".to_string(), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(r, expected);
    }
}
