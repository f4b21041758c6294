//! The chaincode shim stream, the peer's side: every message a chaincode server sends
//! during an invocation (state reads, writes, deletes, ranges and pages, history, events,
//! completion) handled by the real [`handle_message`] against a real simulation (limits
//! on reads, writes, bytes, ranges, payload and time included) over a committed state.
//!
//! Input: up to 256 length-prefixed `ChaincodeMessage`s, answered in order until one
//! completes the invocation; undecodable ones end it (the peer's stream would fail).
//!
//! Invariants: a failed invocation keeps nothing (an error response comes with an empty
//! read/write set); a successful one writes only within its own namespace and within the
//! simulation's limits.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use prost::Message;

use ordo_peer::chaincode::external::{handle_message, ShimStep};
use ordo_peer::chaincode::{simulate, Limits};
use ordo_proto::pb::chaincode::{
    chaincode_message, ChaincodeMessage, Completed, DelState, GetHistory, GetRange, GetState,
    PutState, SetEvent,
};
use ordo_proto::pb::peer::{ChaincodeResponse, Version};
use ordo_sdk::chaincode::{Chaincode, Context, Response};

use crate::fixture;

/// Messages per invocation at most.
const MAX_MESSAGES: usize = 256;

/// A chaincode server that sends the given messages, whatever the peer answers.
struct Scripted {
    messages: Mutex<Vec<ChaincodeMessage>>,
}

impl Chaincode for Scripted {
    fn invoke(&self, ctx: &mut dyn Context, _function: &str, _args: &[Bytes]) -> Response {
        let messages =
            std::mem::take(&mut *self.messages.lock().unwrap_or_else(|e| e.into_inner()));
        for m in messages {
            let Some(kind) = m.kind else {
                return Response::error(500, "a message without content");
            };
            if let ShimStep::Completed(response) = handle_message(ctx, kind) {
                return response;
            }
        }
        Response::error(500, "the server closed the stream before completing")
    }
}

type State = BTreeMap<(String, String), (Version, Bytes)>;

fn committed() -> State {
    let mut s = State::new();
    for (i, key) in ["a", "b", "c", "k"].iter().enumerate() {
        s.insert(
            ("cc".into(), key.to_string()),
            (
                Version {
                    block: 1,
                    tx: i as u32,
                },
                Bytes::from(format!("value {key}")),
            ),
        );
    }
    s.insert(
        ("other".into(), "a".into()),
        (Version { block: 1, tx: 9 }, Bytes::from_static(b"x")),
    );
    s
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut messages = Vec::new();
    for piece in fixture::pieces(data, MAX_MESSAGES) {
        match ChaincodeMessage::decode(piece) {
            Ok(m) => messages.push(m),
            Err(_) => break,
        }
    }
    let server = Scripted {
        messages: Mutex::new(messages),
    };
    let limits = Limits::default();
    let outcome = simulate(
        &server,
        &committed(),
        "cc",
        "tx",
        "invoke",
        &[],
        &Default::default(),
        limits,
    );
    if !outcome.is_ok() {
        assert!(
            outcome.rwset.writes.is_empty() && outcome.rwset.reads.is_empty(),
            "a failure kept its writes"
        );
        assert!(outcome.event.is_none(), "a failure kept its event");
        return;
    }
    assert_eq!(outcome.rwset.namespace, "cc", "wrote outside its namespace");
    assert!(
        outcome.rwset.writes.len() <= limits.max_writes,
        "past the write limit"
    );
    let written: usize = outcome.rwset.writes.iter().map(|w| w.value.len()).sum();
    assert!(
        written <= limits.max_write_bytes,
        "past the write-bytes limit"
    );
    assert!(outcome.response.payload.len() <= limits.max_payload_bytes);
    let _: &ChaincodeResponse = &outcome.response;
}

/// A read-modify-write with a range, a page, a history read, a delete, an event and the
/// completion; and a failed invocation that had written.
pub fn seeds() -> Vec<Vec<u8>> {
    let msg = |kind| ChaincodeMessage { kind: Some(kind) }.encode_to_vec();
    let done = |status| {
        msg(chaincode_message::Kind::Completed(Completed {
            response: Some(ChaincodeResponse {
                status,
                message: String::new(),
                payload: Bytes::from_static(b"ok"),
            }),
        }))
    };
    let common = vec![
        msg(chaincode_message::Kind::Get(GetState { key: "a".into() })),
        msg(chaincode_message::Kind::Put(PutState {
            key: "a".into(),
            value: Bytes::from_static(b"1"),
        })),
        msg(chaincode_message::Kind::Range(GetRange {
            start: "a".into(),
            end: "z".into(),
            limit: 0,
        })),
        msg(chaincode_message::Kind::Range(GetRange {
            start: "a".into(),
            end: "".into(),
            limit: 2,
        })),
        msg(chaincode_message::Kind::History(GetHistory {
            key: "k".into(),
        })),
        msg(chaincode_message::Kind::Del(DelState { key: "b".into() })),
        msg(chaincode_message::Kind::Event(SetEvent {
            name: "e".into(),
            payload: Bytes::from_static(b"p"),
        })),
    ];
    let ok: Vec<Vec<u8>> = common.iter().cloned().chain([done(200)]).collect();
    let failed: Vec<Vec<u8>> = common.into_iter().chain([done(500)]).collect();
    vec![fixture::join_pieces(ok), fixture::join_pieces(failed)]
}
