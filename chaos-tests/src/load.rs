//! Load clients: each keeps a Broadcast stream open to one orderer with a few envelopes
//! in flight and records every submit and answer. A client never resubmits an envelope:
//! after a broken stream its in-flight envelopes are recorded as unknown and it moves to
//! the next orderer with new ones, so a tx id twice in a chain is the service's doing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Envelope, HeaderType, Status as Code};
use ordo_sdk::tx::{self, Proposal, RwSetBuilder};

use crate::history::{AckOutcome, Event, History};
use crate::net::CHANNEL;

/// How long a client waits for one answer before it gives up on the stream.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before reconnecting after a broken stream.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// What the clients send.
#[derive(Debug, Clone)]
pub enum Payload {
    /// MESSAGE envelopes with `bytes` of data (orderer-only scenarios).
    Message {
        /// Data bytes per envelope.
        bytes: usize,
    },
    /// `bank` endorser transactions writing one of `keys` keys, endorsed by the given
    /// peers (peer scenarios: the state changes, so peers' commit hashes mean something).
    BankWrite {
        /// Number of distinct keys written.
        keys: u64,
        /// The endorsers (their policy is met by one).
        endorsers: Vec<Identity>,
    },
}

/// The load's settings.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Concurrent clients.
    pub clients: usize,
    /// Envelopes each client keeps in flight.
    pub window: usize,
    /// What they send.
    pub payload: Payload,
    /// How they connect (mutual TLS on every test network). Each reconnect makes a new
    /// handshake, so a renewed client certificate reloaded into the transport's key pair is
    /// presented from the next broken stream on.
    pub transport: ordo_sdk::transport::Transport,
}

/// Counters shared by the clients.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Envelopes sent.
    pub submitted: AtomicU64,
    /// SUCCESS answers.
    pub acked: AtomicU64,
}

/// Running clients; [`Load::stop`] ends them and waits.
pub struct Load {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Shared counters.
    pub stats: Arc<LoadStats>,
}

impl Load {
    /// Starts `spec.clients` clients spreading over `orderers` (client `c` starts at
    /// orderer `c % n` and moves on after every broken stream).
    pub fn start(
        spec: LoadSpec,
        orderers: Vec<String>,
        identity: Identity,
        history: History,
    ) -> Self {
        let stop = CancellationToken::new();
        let stats = Arc::new(LoadStats::default());
        let tasks = (0..spec.clients)
            .map(|c| {
                let client = Client {
                    id: c,
                    spec: spec.clone(),
                    orderers: orderers.clone(),
                    identity: identity.clone(),
                    history: history.clone(),
                    stats: stats.clone(),
                    stop: stop.clone(),
                    seq: 0,
                };
                tokio::spawn(client.run())
            })
            .collect();
        Self { stop, tasks, stats }
    }

    /// Stops sending; waits (bounded by the answer timeout) for what is in flight.
    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

struct Client {
    id: usize,
    spec: LoadSpec,
    orderers: Vec<String>,
    identity: Identity,
    history: History,
    stats: Arc<LoadStats>,
    stop: CancellationToken,
    seq: u64,
}

impl Client {
    async fn run(mut self) {
        let mut target = self.id % self.orderers.len().max(1);
        while !self.stop.is_cancelled() {
            let addr = self.orderers[target].clone();
            self.session(&addr).await;
            target = (target + 1) % self.orderers.len().max(1);
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
                _ = self.stop.cancelled() => {}
            }
        }
    }

    /// One Broadcast stream: send while there is room, record answers in order; on any
    /// failure the envelopes in flight are unknown.
    async fn session(&mut self, addr: &str) {
        let node = node_name(&self.orderers, addr);
        let conn = tokio::select! {
            c = tokio::time::timeout(Duration::from_secs(3), ordo_sdk::orderer::connect(addr, &self.spec.transport)) => c,
            _ = self.stop.cancelled() => return,
        };
        let Ok(Ok(conn)) = conn else { return };
        let mut client = ordo_sdk::orderer::broadcast_client(conn);
        let (tx, rx) = mpsc::channel::<Envelope>(self.spec.window.max(1));
        let opened = tokio::time::timeout(
            Duration::from_secs(3),
            client.broadcast(ReceiverStream::new(rx)),
        )
        .await;
        let Ok(Ok(response)) = opened else { return };
        let mut answers = response.into_inner();
        let mut inflight: VecDeque<String> = VecDeque::new();
        let mut failure = String::from("stream ended");
        loop {
            while inflight.len() < self.spec.window && !self.stop.is_cancelled() {
                let (env, tx_id) = self.next_envelope();
                self.history.record(Event::Submit {
                    tx: tx_id.clone(),
                    node: node.clone(),
                });
                self.stats.submitted.fetch_add(1, Ordering::Relaxed);
                inflight.push_back(tx_id);
                if tx.send(env).await.is_err() {
                    failure = "request stream closed".into();
                    break;
                }
            }
            if inflight.is_empty() {
                break; // stopped, nothing outstanding
            }
            let next = tokio::time::timeout(ANSWER_TIMEOUT, answers.next()).await;
            let resp = match next {
                Ok(Some(Ok(r))) => r,
                Ok(Some(Err(status))) => {
                    failure = format!("stream error: {}", status.message());
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    failure = format!("no answer within {ANSWER_TIMEOUT:?}");
                    break;
                }
            };
            let Some(tx_id) = inflight.pop_front() else {
                break;
            };
            let outcome = if resp.status == Code::Success as i32 {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
                AckOutcome::Success {
                    block: resp.block_number,
                }
            } else {
                AckOutcome::Refused {
                    status: Code::try_from(resp.status)
                        .map(|c| c.as_str_name().to_string())
                        .unwrap_or_else(|_| resp.status.to_string()),
                    info: resp.info,
                }
            };
            self.history.record(Event::Ack {
                tx: tx_id,
                node: node.clone(),
                outcome,
            });
        }
        for tx_id in inflight {
            self.history.record(Event::Ack {
                tx: tx_id,
                node: node.clone(),
                outcome: AckOutcome::Unknown {
                    reason: failure.clone(),
                },
            });
        }
    }

    fn next_envelope(&mut self) -> (Envelope, String) {
        self.seq += 1;
        let tag = format!("client {} envelope {}", self.id, self.seq);
        match &self.spec.payload {
            Payload::Message { bytes } => {
                let mut data = tag.into_bytes();
                data.resize((*bytes).max(data.len()), 0);
                ordo_proto::envelope::create_signed(
                    &self.identity,
                    CHANNEL,
                    HeaderType::Message,
                    Bytes::from(data),
                    ordo_proto::now_ms(),
                )
            }
            Payload::BankWrite { keys, endorsers } => {
                let key = format!("k{}", (self.seq * 7 + self.id as u64) % (*keys).max(1));
                bank_write(&self.identity, endorsers, &key, &tag)
            }
        }
    }
}

/// A `bank` transaction that writes `key = value` without reading, endorsed by every
/// identity in `endorsers`.
pub fn bank_write(
    creator: &Identity,
    endorsers: &[Identity],
    key: &str,
    value: &str,
) -> (Envelope, String) {
    let p = Proposal::new(
        creator,
        CHANNEL,
        tx::invocation("bank", "set", vec![Bytes::copy_from_slice(key.as_bytes())]),
    );
    let mut rw = RwSetBuilder::new();
    rw.write("bank", key, Bytes::copy_from_slice(value.as_bytes()));
    let tx_id = p.tx_id().to_string();
    match tx::endorse_known(creator, &p, "1", rw.build(), endorsers) {
        Ok(env) => (env, tx_id),
        // The creator built the proposal itself, so assembling cannot mismatch; an empty
        // envelope would be refused and recorded as such.
        Err(_) => (Envelope::default(), tx_id),
    }
}

fn node_name(orderers: &[String], addr: &str) -> String {
    orderers
        .iter()
        .position(|a| a == addr)
        .map(|i| format!("orderer{i}"))
        .unwrap_or_else(|| addr.to_string())
}
