//! Chaincode as a service, the peer's side: a chaincode server (anything built on
//! `ordo_sdk::chaincode::shim`) runs the invocation and asks for state over the stream;
//! the peer answers from its simulation. Anything that goes wrong — the server is down,
//! dies mid-invocation, answers out of protocol or too slowly — ends the invocation with
//! a 500 naming the server, and since writes live only in the simulation, nothing of it
//! is kept.

use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

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
}

impl ExternalChaincode {
    /// The server at `addr`, for invocations on `channel_id`, driven on `runtime`, each
    /// allowed `timeout` in all.
    pub fn new(addr: &str, channel_id: &str, runtime: Handle, timeout: Duration) -> Self {
        Self {
            addr: addr.to_string(),
            channel_id: channel_id.to_string(),
            runtime,
            timeout,
        }
    }

    async fn run(
        &self,
        ctx: &mut dyn Context,
        function: &str,
        args: &[Bytes],
    ) -> Result<Response, String> {
        // Chaincode servers run beside the peer (a sidecar or the same host); the shim
        // serves plaintext only so far, so this link does not use the peer's TLS.
        let conn = ordo_sdk::orderer::connect(&self.addr, &ordo_sdk::transport::Transport::Plain)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
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
        })))
        .await
        .map_err(|_| "the invocation stream closed".to_string())?;
        let mut inbound = client
            .invoke(ReceiverStream::new(rx))
            .await
            .map_err(|e| e.message().to_string())?
            .into_inner();
        loop {
            let msg = inbound
                .message()
                .await
                .map_err(|e| e.message().to_string())?
                .ok_or("the server closed the stream before completing")?;
            let kind = msg.kind.ok_or("a message without content")?;
            let result = match kind {
                chaincode_message::Kind::Completed(c) => {
                    let r = c.response.unwrap_or_default();
                    return Ok(Response {
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
                    answer(ctx.range(&r.start, &r.end).map(|items| {
                        StateResult {
                            items: items
                                .into_iter()
                                .map(|(key, value)| KeyValue { key, value })
                                .collect(),
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
            tx.send(send(peer_message::Kind::Result(result)))
                .await
                .map_err(|_| "the invocation stream closed".to_string())?;
        }
    }
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
            Ok(Err(why)) => unreachable_response(&self.addr, &why),
            Err(_) => {
                unreachable_response(&self.addr, &format!("no answer within {:?}", self.timeout))
            }
        }
    }
}
