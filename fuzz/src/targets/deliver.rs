//! The orderer's Deliver path through the real [`DeliverHandler`] of the in-process
//! orderer: the request envelope (header type, channel, freshness, the Readers policy,
//! the signature), the SeekInfo (start, stop, behaviour, their combinations and bounds),
//! the per-reader stream cap, then the blocks streamed from the ledger.
//!
//! Input: a mode byte, then bytes. Top bit set: the bytes are the request envelope as
//! received. Otherwise they are a payload signed by the fixture member the mode's bits
//! 3–5 pick, restamped as bits 0–2 say ([`fixture::Restamp`]).
//!
//! Invariants: every answer is a block or a refusal; a refusal ends the stream (nothing
//! follows it) and is a documented gRPC code with a reason
//! ([`fixture::assert_documented_refusal`]); blocks come in consecutive numbers.
//! A stream still open (waiting for a block that does not exist yet) after a few answers
//! is dropped by the harness, as a client may.

use std::time::Duration;

use prost::Message;
use tokio_stream::StreamExt;

use ordo_proto::envelope::create_signed_with_nonce;
use ordo_proto::pb::common::{Block, HeaderType};
use ordo_proto::pb::orderer::{SeekBehavior, SeekInfo};
use ordo_sdk::orderer::{oldest, position};

use crate::fixture::{self, members, runtime, CHANNEL, NOW_MS};
use crate::nodes::orderer;

/// Answers read per stream at most.
const MAX_ANSWERS: usize = 8;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((mode, rest)) = fixture::split(data) else {
        return;
    };
    let Some(request) = fixture::request(mode, rest) else {
        return;
    };
    // Started outside the runtime (its start blocks on it).
    let orderer = orderer();
    let answers = runtime().block_on(async {
        let mut stream = orderer.deliver.handle(request);
        let mut answers = Vec::new();
        while answers.len() < MAX_ANSWERS {
            match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                Ok(Some(item)) => answers.push(item),
                Ok(None) | Err(_) => break,
            }
        }
        answers
    });
    let mut last_block: Option<u64> = None;
    let mut ended = false;
    for answer in answers {
        assert!(!ended, "an answer after the refusal that ended the stream");
        match answer {
            Err(refusal) => {
                fixture::assert_documented_refusal(&refusal);
                ended = true;
            }
            Ok(answer) => {
                let block = Block::decode(answer.block).expect("the ledger's blocks decode");
                let n = ordo_proto::block::number(&block);
                if let Some(prev) = last_block {
                    assert_eq!(n, prev + 1, "blocks out of order");
                }
                last_block = Some(n);
            }
        }
    }
}

/// Requests by the client from the oldest block, of block 0 alone, and to a block that
/// does not exist yet; one by a stranger.
pub fn seeds() -> Vec<Vec<u8>> {
    let m = members();
    // Fixed nonces: the same seed bytes on every run.
    let nonce = std::cell::Cell::new(0u8);
    let payload = |who, start, stop, behavior: SeekBehavior| {
        let seek = SeekInfo {
            start: Some(start),
            stop,
            behavior: behavior as i32,
        };
        nonce.set(nonce.get() + 1);
        create_signed_with_nonce(
            who,
            CHANNEL,
            HeaderType::DeliverSeekInfo,
            seek.encode_to_vec().into(),
            NOW_MS,
            &[nonce.get(); 24],
        )
        .0
        .payload
        .to_vec()
    };
    vec![
        [
            &[0b111u8][..],
            &payload(
                &m.client,
                oldest(),
                Some(position(Some(0))),
                SeekBehavior::FailIfNotReady,
            ),
        ]
        .concat(),
        [
            &[0b111u8][..],
            &payload(&m.client, oldest(), None, SeekBehavior::BlockUntilReady),
        ]
        .concat(),
        [
            &[0b111u8][..],
            &payload(
                &m.client,
                position(Some(5)),
                Some(position(Some(9))),
                SeekBehavior::FailIfNotReady,
            ),
        ]
        .concat(),
        [
            &[(4u8 << 3) | 0b111][..],
            &payload(&m.stranger, oldest(), None, SeekBehavior::FailIfNotReady),
        ]
        .concat(),
    ]
}
