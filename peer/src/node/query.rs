//! The peer's Query service: committed state, key history, transaction status and
//! blocks, for any member the channel's Readers policy admits, by a signed MESSAGE
//! request stamped within [`DEFAULT_FRESHNESS_WINDOW_MS`] of the peer's clock (both
//! FORBIDDEN otherwise; see [`authorize_reader`]).
//!
//! Refusals are named here by their `ordo.common.Status`; the client gets the call's gRPC
//! status, coded by [`ordo_proto::status::grpc_code`] (BAD_REQUEST is INVALID_ARGUMENT,
//! FORBIDDEN is PERMISSION_DENIED, ...).

use std::sync::Arc;

use prost::Message;

use ordo_proto::envelope;
use ordo_proto::pb::common::{Envelope, HeaderType, Status as Code};
use ordo_proto::pb::peer::TxValidationCode;
use ordo_proto::pb::query::{
    query_request, HistoryCursor, HistoryEntry, QueryRequest, QueryResponse, TransactionStatus,
    VersionedValue,
};
use ordo_proto::replay::DEFAULT_FRESHNESS_WINDOW_MS;

use super::admin::authorize_reader;
use super::channels::PeerChannels;

/// Most values a range query returns; `next_start` says where to continue.
pub const MAX_RANGE_RESULTS: u32 = 10_000;

/// Most entries a history query returns; `next_history` says where to continue.
pub const MAX_HISTORY_RESULTS: u32 = 10_000;

/// A requested page size: 0 or anything above `max` is `max`.
fn page_size(requested: u32, max: u32) -> usize {
    (if requested == 0 {
        max
    } else {
        requested.min(max)
    }) as usize
}

/// The Query handler.
pub struct PeerQuery {
    channels: Arc<PeerChannels>,
}

impl PeerQuery {
    /// A handler over the peer's channels.
    pub fn new(channels: Arc<PeerChannels>) -> Self {
        Self { channels }
    }

    /// Answers one signed query, or refuses it with the gRPC status the client gets.
    pub fn execute(&self, request: &Envelope) -> Result<QueryResponse, tonic::Status> {
        self.run(request)
            .map_err(|(code, info)| ordo_proto::status::refusal(code, info))
    }

    fn run(&self, request: &Envelope) -> Result<QueryResponse, (Code, String)> {
        let unpacked = envelope::unpack(request).map_err(|e| (Code::BadRequest, e.to_string()))?;
        if unpacked.header_type != HeaderType::Message {
            return Err((
                Code::BadRequest,
                format!(
                    "header type {} is not MESSAGE",
                    unpacked.header_type.as_str_name()
                ),
            ));
        }
        let channel = &unpacked.header.channel_id;
        let ch = self
            .channels
            .get(channel)
            .ok_or_else(|| (Code::NotFound, format!("channel {channel:?} not found")))?;
        authorize_reader(
            &ch,
            request,
            &unpacked.header,
            ordo_proto::now_ms(),
            DEFAULT_FRESHNESS_WINDOW_MS,
        )?;
        let q = QueryRequest::decode(unpacked.data.as_ref())
            .map_err(|e| (Code::BadRequest, format!("query: {e}")))?;
        let ledger = ch.ledger();
        // A block below the lowest held (joined from a snapshot) is NOT_FOUND, and the
        // answer names the lowest block held.
        let storage = |e: ordo_ledger::LedgerError| match e {
            ordo_ledger::LedgerError::Pruned { .. } => (Code::NotFound, e.to_string()),
            e => (Code::InternalServerError, e.to_string()),
        };
        let mut resp = QueryResponse::default();
        match q
            .query
            .ok_or((Code::BadRequest, "empty query".to_string()))?
        {
            query_request::Query::State(s) => {
                if let Some(v) = ledger.state(&s.namespace, &s.key).map_err(storage)? {
                    resp.values.push(VersionedValue {
                        key: s.key,
                        value: v.value,
                        block: v.version.block,
                        tx: v.version.tx,
                    });
                } else {
                    return Err((
                        Code::NotFound,
                        format!("no key {:?} in {:?}", s.key, s.namespace),
                    ));
                }
            }
            query_request::Query::Range(r) => {
                let limit = page_size(r.limit, MAX_RANGE_RESULTS);
                let mut page = ledger
                    .state_range(&r.namespace, &r.start, &r.end, limit + 1)
                    .map_err(storage)?;
                if page.len() > limit {
                    resp.next_start = page.pop().map(|(key, _)| key).unwrap_or_default();
                }
                for (key, v) in page {
                    resp.values.push(VersionedValue {
                        key,
                        value: v.value,
                        block: v.version.block,
                        tx: v.version.tx,
                    });
                }
            }
            query_request::Query::History(h) => {
                let from = h.from.map(|c| ordo_ledger::Version {
                    block: c.block,
                    tx: c.tx,
                });
                let (entries, next) = ledger
                    .history_page(
                        &h.namespace,
                        &h.key,
                        from,
                        page_size(h.limit, MAX_HISTORY_RESULTS),
                    )
                    .map_err(storage)?;
                resp.history_from = ledger.first_block();
                resp.next_history = next.map(|v| HistoryCursor {
                    block: v.block,
                    tx: v.tx,
                });
                for e in entries {
                    resp.history.push(HistoryEntry {
                        block: e.version.block,
                        tx: e.version.tx,
                        is_delete: e.value.is_none(),
                        value: e.value.unwrap_or_default(),
                    });
                }
            }
            query_request::Query::Transaction(t) => {
                let loc = ledger
                    .tx_location(&t.tx_id)
                    .map_err(storage)?
                    .ok_or_else(|| (Code::NotFound, format!("tx {} not committed", t.tx_id)))?;
                let code = loc.code.unwrap_or(TxValidationCode::NotValidated as u8);
                resp.transaction = Some(TransactionStatus {
                    tx_id: t.tx_id,
                    block: loc.block,
                    index: loc.index,
                    code: u32::from(code),
                    code_name: TxValidationCode::try_from(i32::from(code))
                        .map(|c| c.as_str_name().to_string())
                        .unwrap_or_default(),
                });
            }
            query_request::Query::Height(_) => resp.height = ledger.height(),
            query_request::Query::Block(b) => {
                resp.block = Some(ledger.block(b.number).map_err(storage)?.ok_or_else(|| {
                    (Code::NotFound, format!("block {} not committed", b.number))
                })?);
            }
        }
        Ok(resp)
    }
}
