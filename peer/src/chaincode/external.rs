//! Chaincode as a service, the peer's side: a chaincode server (anything built on
//! `ordo_sdk::chaincode::shim`) runs the invocation and asks for state over the stream;
//! the peer answers from its simulation. Anything that goes wrong — the server is down,
//! dies mid-invocation, answers out of protocol or too slowly — ends the invocation with
//! a 500 naming the server, and since writes live only in the simulation, nothing of it
//! is kept.
//!
//! # Transport
//!
//! The peer reaches chaincode servers through its [`ClientPool`], so over the peer's own
//! transport: when the peer runs TLS (`[tls] enabled`), it dials over mutual TLS,
//! presenting its node TLS certificate and verifying the server's certificate (chain and
//! host name) against the node's trust — its `ca_files` plus the TLS roots of every org of
//! the channels it serves — exactly as it verifies orderers and other peers. A TLS peer
//! never falls back to plaintext. The pool keeps one HTTP/2 connection per server, shared
//! by every invocation (each is one stream on it), instead of a TCP and TLS handshake per
//! call; a connection that failed or hung is dropped from the pool so the next invocation
//! dials anew.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use ordo_node::ClientPool;
use ordo_proto::pb::chaincode::chaincode_client::ChaincodeClient;
use ordo_proto::pb::chaincode::{
    chaincode_message, peer_message, HistoryEntry, Invocation, KeyValue, PeerMessage, StateResult,
};
use ordo_sdk::chaincode::shim::{unreachable_response, MAX_MESSAGE_BYTES};
use ordo_sdk::chaincode::{Chaincode, Context, Response};

/// A chaincode served by a chaincode server at `addr`.
pub struct ExternalChaincode {
    addr: String,
    channel_id: String,
    runtime: Handle,
    timeout: Duration,
    pool: Arc<ClientPool>,
}

/// Why an invocation on a chaincode server failed, before the chaincode answered.
#[derive(Debug)]
enum Failure {
    /// The link failed (connection refused, TLS handshake refused, connection lost): the
    /// pooled connection is not worth keeping.
    Link(String),
    /// The server broke the protocol or refused the call.
    Protocol(String),
}

impl Failure {
    fn from_status(status: &tonic::Status) -> Self {
        let why = describe(status);
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                Failure::Link(why)
            }
            _ => Failure::Protocol(why),
        }
    }

    fn message(self) -> String {
        match self {
            Failure::Link(m) | Failure::Protocol(m) => m,
        }
    }
}

/// A status's message with the causes behind it that it does not already say (a broken
/// connection says only `transport error`; why — reset, TLS alert — is in its source
/// chain).
fn describe(status: &tonic::Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let s = e.to_string();
        // tonic's own wrapper says nothing the message or the next cause does not.
        if !text.contains(&s) && s != "transport error" {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&s);
        }
        source = e.source();
    }
    if text.is_empty() {
        text = format!("{:?}", status.code());
    }
    text
}

impl ExternalChaincode {
    /// The server at `addr`, for invocations on `channel_id`, driven on `runtime`, each
    /// allowed `timeout` in all, reached through `pool` (the peer's transport: mutual TLS
    /// when the peer runs TLS).
    pub fn new(
        addr: &str,
        channel_id: &str,
        runtime: Handle,
        timeout: Duration,
        pool: Arc<ClientPool>,
    ) -> Self {
        Self {
            addr: addr.to_string(),
            channel_id: channel_id.to_string(),
            runtime,
            timeout,
            pool,
        }
    }

    async fn run(
        &self,
        ctx: &mut dyn Context,
        function: &str,
        args: &[Bytes],
    ) -> Result<Response, Failure> {
        let conn = self
            .pool
            .get(&self.addr)
            .map_err(|e| Failure::Link(format!("cannot connect: {e}")))?;
        let mut client = ChaincodeClient::new(conn)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel(16);
        let send = |kind| PeerMessage { kind: Some(kind) };
        tx.send(send(peer_message::Kind::Invoke(Invocation {
            tx_id: ctx.tx_id().to_string(),
            channel_id: self.channel_id.clone(),
            function: function.to_string(),
            args: args.to_vec(),
            transient: ctx.transient().clone(),
        })))
        .await
        .map_err(|_| Failure::Protocol("the invocation stream closed".into()))?;
        let mut inbound = client
            .invoke(ReceiverStream::new(rx))
            .await
            .map_err(|e| Failure::from_status(&e))?
            .into_inner();
        loop {
            let msg = inbound
                .message()
                .await
                .map_err(|e| Failure::from_status(&e))?
                .ok_or_else(|| {
                    Failure::Link("the server closed the stream before completing".into())
                })?;
            let kind = msg
                .kind
                .ok_or_else(|| Failure::Protocol("a message without content".into()))?;
            let result = match handle_message(ctx, kind) {
                ShimStep::Completed(response) => return Ok(response),
                ShimStep::Reply(result) => result,
            };
            tx.send(send(peer_message::Kind::Result(result)))
                .await
                .map_err(|_| Failure::Protocol("the invocation stream closed".into()))?;
        }
    }
}

/// What the peer makes of one message from a chaincode server.
#[derive(Debug)]
pub enum ShimStep {
    /// The invocation completed with the chaincode's response.
    Completed(Response),
    /// A state request, answered from the simulation (errors included, as the answer's
    /// `error`): the peer sends it back and waits for the next message.
    Reply(StateResult),
}

/// Handles one message of a chaincode server's invocation stream against the simulation
/// `ctx`. Every field comes from the server, so nothing here may panic or go past the
/// simulation's limits (the simulation enforces them); it is a function of its inputs so
/// that the `shim` fuzz target drives it with arbitrary messages.
pub fn handle_message(ctx: &mut dyn Context, kind: chaincode_message::Kind) -> ShimStep {
    let reply = match kind {
        chaincode_message::Kind::Completed(c) => {
            let r = c.response.unwrap_or_default();
            return ShimStep::Completed(Response {
                status: r.status,
                message: r.message,
                payload: r.payload,
            });
        }
        chaincode_message::Kind::Get(g) => answer(ctx.get(&g.key).map(|v| StateResult {
            found: v.is_some(),
            value: v.unwrap_or_default(),
            ..Default::default()
        })),
        chaincode_message::Kind::Put(p) => {
            answer(ctx.put(&p.key, p.value).map(|()| StateResult::default()))
        }
        chaincode_message::Kind::Del(d) => {
            answer(ctx.delete(&d.key).map(|()| StateResult::default()))
        }
        chaincode_message::Kind::Range(r) => {
            let page = if r.limit == 0 {
                ctx.range(&r.start, &r.end).map(|items| (items, None))
            } else {
                ctx.range_page(&r.start, &r.end, r.limit as usize)
            };
            answer(page.map(|(items, next)| {
                StateResult {
                    items: items
                        .into_iter()
                        .map(|(key, value)| KeyValue { key, value })
                        .collect(),
                    next_start: next.unwrap_or_default(),
                    ..Default::default()
                }
            }))
        }
        chaincode_message::Kind::History(h) => answer(ctx.history(&h.key).map(|items| {
            StateResult {
                history: items
                    .into_iter()
                    .map(|i| HistoryEntry {
                        block: i.block,
                        tx: i.tx,
                        is_delete: i.value.is_none(),
                        value: i.value.unwrap_or_default(),
                    })
                    .collect(),
                ..Default::default()
            }
        })),
        chaincode_message::Kind::Event(e) => {
            ctx.set_event(&e.name, e.payload);
            StateResult::default()
        }
    };
    ShimStep::Reply(reply)
}

fn answer(r: Result<StateResult, ordo_sdk::chaincode::StateError>) -> StateResult {
    r.unwrap_or_else(|e| StateResult {
        error: e.to_string(),
        ..Default::default()
    })
}

impl Chaincode for ExternalChaincode {
    /// Runs on the simulation's blocking thread, driving the stream on the runtime.
    fn invoke(&self, ctx: &mut dyn Context, function: &str, args: &[Bytes]) -> Response {
        let outcome = self.runtime.block_on(async {
            tokio::time::timeout(self.timeout, self.run(ctx, function, args)).await
        });
        match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(Failure::Link(why))) => {
                self.pool.evict(&self.addr);
                unreachable_response(&self.addr, &why)
            }
            Ok(Err(failure)) => unreachable_response(&self.addr, &failure.message()),
            Err(_) => {
                // A hung server: the next invocation gets a fresh connection.
                self.pool.evict(&self.addr);
                unreachable_response(&self.addr, &format!("no answer within {:?}", self.timeout))
            }
        }
    }
}
