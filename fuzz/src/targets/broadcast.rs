//! The orderer's whole Broadcast path, up to and including the chain: a stream of
//! envelopes goes through the real [`BroadcastHandler`] of an in-process orderer with one
//! solo channel (size limit, decode, channel lookup, filters, batched signature checks,
//! Writers policy, config-update processing, duplicate detection, ordering and — the
//! channel acks `committed` — the wait for the block).
//!
//! Input: up to 16 length-prefixed pieces (see [`fixture::pieces`]), one envelope each.
//! A piece's first byte says how the rest becomes an envelope: with the top bit set, the
//! rest is the envelope's bytes as received (bytes that do not decode stand for a message
//! tonic could not decode, and end the stream there); otherwise the rest is a payload
//! that a fixture member signs (restamped as the low bits say, so that the checks behind
//! the signature are reached).
//!
//! Invariants: exactly one answer per envelope before the first undecodable one, in
//! order, each with a known status; a stream with an undecodable message ends with
//! INVALID_ARGUMENT after those answers, never with OK.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio_stream::StreamExt;

use ordo_orderer::broadcast::ReceivedEnvelope;
use ordo_proto::envelope::create_signed_with_nonce;
use ordo_proto::pb::common::{HeaderType, Status};

use crate::fixture::{self, members, runtime, Restamp, CHANNEL, NOW_MS};
use crate::nodes::orderer;

/// Pieces per input at most.
const MAX_ENVELOPES: usize = 16;

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut items = Vec::new();
    for piece in fixture::pieces(data, MAX_ENVELOPES) {
        let Some((mode, rest)) = fixture::split(piece) else {
            continue;
        };
        if mode & 0x80 != 0 {
            match ReceivedEnvelope::decode(Bytes::copy_from_slice(rest)) {
                Ok(env) => items.push(Ok(env)),
                Err(e) => {
                    items.push(Err(tonic::Status::internal(e.to_string())));
                    break;
                }
            }
        } else {
            let env =
                fixture::sign_payload(rest, fixture::signer(mode >> 3), Restamp::from_bits(mode));
            let raw = Bytes::from(env.encode_to_vec());
            items.push(Ok(
                ReceivedEnvelope::decode(raw).expect("an encoded envelope decodes")
            ));
        }
    }
    let sent = items.iter().filter(|i| i.is_ok()).count();
    let broken = items.iter().any(|i| i.is_err());
    // Started outside the runtime (its start blocks on it).
    let orderer = orderer();
    let answers = runtime().block_on(async {
        let stream = tokio_stream::iter(items);
        let mut responses = orderer.broadcast.handle(stream).into_inner();
        let mut answers = Vec::new();
        while let Ok(Some(r)) =
            tokio::time::timeout(Duration::from_secs(20), responses.next()).await
        {
            answers.push(r);
        }
        answers
    });
    let (ok, ending): (Vec<_>, Vec<_>) = answers.into_iter().partition(|a| a.is_ok());
    assert_eq!(ok.len(), sent, "one answer per envelope");
    for a in ok.into_iter().flatten() {
        assert!(
            Status::try_from(a.status).is_ok(),
            "unknown status {}",
            a.status
        );
    }
    if broken {
        assert_eq!(
            ending.len(),
            1,
            "an undecodable message ends the stream with a status"
        );
        if let Some(Err(status)) = ending.first() {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
    } else {
        assert!(ending.is_empty(), "a readable stream ends with OK");
    }
}

/// Pieces: a client's message (signed and restamped: SUCCESS), the same raw (stale), a
/// config update signed by org A's admin, and garbage.
pub fn seeds() -> Vec<Vec<u8>> {
    let m = members();
    let (message, _) = create_signed_with_nonce(
        &m.client,
        CHANNEL,
        HeaderType::Message,
        Bytes::from_static(b"fuzz seed"),
        NOW_MS,
        &[1; 24],
    );
    let update = fixture::config_update(&fixture::next_config(|c| {
        if let Some(o) = c.orderer.as_mut() {
            o.batch_timeout_ms = 30;
        }
    }));
    let (config_update, _) = create_signed_with_nonce(
        &m.admin_a,
        CHANNEL,
        HeaderType::ConfigUpdate,
        update.encode_to_vec().into(),
        NOW_MS,
        &[2; 24],
    );
    let signed = |mode: u8, payload: &[u8]| [&[mode][..], payload].concat();
    vec![
        fixture::join_pieces([signed(0b111, &message.payload)]),
        fixture::join_pieces([
            signed(0b111, &message.payload),
            signed(0x80, &message.encode_to_vec()),
            signed((1 << 3) | 0b111, &config_update.payload),
        ]),
        fixture::join_pieces([signed(0b111, &message.payload), vec![0x80, 0xff, 0xff]]),
    ]
}
