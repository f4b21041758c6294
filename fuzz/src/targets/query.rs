//! Query requests (`ordo.query.Query/Query`) through the in-process peer's real handler:
//! the request envelope (channel, freshness, the Readers policy, the signature) and every
//! query kind with its arguments and limits (state, ranges and pages, history and its
//! cursor, transactions, blocks, height) against a real ledger.
//!
//! Input: a mode byte, then bytes. Top bit set: the bytes are the request envelope as
//! received. Otherwise they are a payload signed by the fixture member bits 3–5 pick,
//! restamped as bits 0–2 say ([`fixture::Restamp`]).
//!
//! Invariants: a refusal is a documented gRPC code with a reason
//! ([`fixture::assert_documented_refusal`]); pages never exceed the documented maximum of
//! 10,000 items.

use bytes::Bytes;
use prost::Message;

use ordo_proto::envelope::create_signed_with_nonce;
use ordo_proto::pb::common::HeaderType;
use ordo_proto::pb::query::{
    query_request, GetBlock, GetHeight, GetHistory, GetState, GetStateRange, GetTransaction,
    HistoryCursor, QueryRequest,
};

use crate::fixture::{self, members, CHANNEL, NOW_MS};
use crate::nodes::peer;

/// The most items one answer may hold (PROTOCOL.md, "Limits on streams").
const MAX_PAGE: usize = 10_000;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((mode, rest)) = fixture::split(data) else {
        return;
    };
    let Some(request) = fixture::request(mode, rest) else {
        return;
    };
    let response = match peer().query.execute(&request) {
        Ok(response) => response,
        Err(refusal) => return fixture::assert_documented_refusal(&refusal),
    };
    assert!(
        response.values.len() <= MAX_PAGE,
        "a page of {}",
        response.values.len()
    );
    assert!(
        response.history.len() <= MAX_PAGE,
        "a history page of {}",
        response.history.len()
    );
}

/// Every query kind, by org A's client.
pub fn seeds() -> Vec<Vec<u8>> {
    let queries = [
        query_request::Query::State(GetState {
            namespace: "bank".into(),
            key: "alice".into(),
        }),
        query_request::Query::Range(GetStateRange {
            namespace: "bank".into(),
            start: "a".into(),
            end: "z".into(),
            limit: 10,
        }),
        query_request::Query::History(GetHistory {
            namespace: "bank".into(),
            key: "alice".into(),
            limit: 5,
            from: Some(HistoryCursor { block: 0, tx: 0 }),
        }),
        query_request::Query::Transaction(GetTransaction {
            tx_id: "00".repeat(32),
        }),
        query_request::Query::Block(GetBlock { number: 0 }),
        query_request::Query::Height(GetHeight {}),
    ];
    queries
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            let data = QueryRequest { query: Some(q) }.encode_to_vec();
            let (env, _) = create_signed_with_nonce(
                &members().client,
                CHANNEL,
                HeaderType::Message,
                Bytes::from(data),
                NOW_MS,
                &[i as u8; 24],
            );
            [&[0b001u8][..], &env.payload].concat()
        })
        .collect()
}
