//! A kafka channel's partition as an orderer consumes it: every record is decoded from
//! the wire format and fed, in offset order, to the pure kafka engine ([`KafkaCore`]),
//! which re-validates envelopes against the fixture configuration (the real
//! `kafka::revalidate::check`) and cuts blocks. Anyone who can write to the topic controls
//! these bytes. Also: the resume point read back from a block's consenter metadata.
//!
//! Input: a resume mode byte, then up to 64 length-prefixed records.
//!
//! Invariants: every block the engine cuts holds at least one envelope, stays within the
//! batch limits (a config block holds its envelope alone), and blocks are numbered
//! consecutively from the resume point. (Envelopes stamped with the sequence in force are
//! not re-validated: an orderer checked them before producing them, as in Fabric's kafka
//! orderer; the topic's ACLs admit orderers only.)

use bytes::Bytes;
use prost::Message;

use ordo_consensus::cutter::BatchLimits;
use ordo_consensus::kafka::core::{Action, KafkaCore, KafkaMessage};
use ordo_consensus::kafka::revalidate;
use ordo_consensus::kafka::wire;
use ordo_proto::envelope::create_signed_with_nonce;
use ordo_proto::pb::common::{Block, HeaderType};

use crate::fixture::{self, members, CHANNEL, NOW_MS};

/// Records per input at most.
const MAX_RECORDS: usize = 64;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((mode, rest)) = fixture::split(data) else {
        return;
    };
    let state = fixture::config_state();
    let limits = state.limits;
    let records = fixture::pieces(rest, MAX_RECORDS);
    // The resume point: from an empty ledger, or from a block the first record encodes.
    let (at, records) = match (mode & 1, records.split_first()) {
        (1, Some((first, tail))) => {
            match Block::decode(*first).map(|b| wire::resume_point(Some(&b))) {
                Ok(Ok(at)) => (at, tail),
                _ => return,
            }
        }
        _ => (
            wire::resume_point(None).expect("an empty ledger has a resume point"),
            &records[..],
        ),
    };
    let mut core = KafkaCore::resume(limits, at);
    let mut next_block = at.next_block;
    let accept = |envelope: &[u8], is_config: bool| revalidate::check(state, envelope, is_config);
    let mut offset = core.start_offset();
    for record in records {
        let Ok(message) = wire::decode(Bytes::copy_from_slice(record)) else {
            continue;
        };
        offset += 1;
        let Ok(actions) = core.on_message(offset, message, state.sequence(), &accept) else {
            // The engine refuses to follow this partition; the driver halts the chain.
            return;
        };
        for action in actions {
            if let Action::Block {
                envelopes, config, ..
            } = action
            {
                check_block(&limits, &envelopes, config);
                next_block += 1;
                assert_eq!(
                    core.building(),
                    next_block,
                    "blocks are numbered consecutively"
                );
            }
        }
    }
}

fn check_block(limits: &BatchLimits, envelopes: &[Bytes], config: bool) {
    assert!(!envelopes.is_empty(), "an empty block");
    if config {
        assert_eq!(envelopes.len(), 1, "a config block holds one envelope");
        return;
    }
    assert!(
        envelopes.len() <= limits.max_message_count as usize,
        "too many envelopes"
    );
    for e in envelopes {
        assert!(
            e.len() <= limits.absolute_max_bytes as usize,
            "an oversized envelope"
        );
    }
}

/// A partition: connect, three client messages, a time-to-cut, a duplicate and a
/// re-submitted config.
pub fn seeds() -> Vec<Vec<u8>> {
    let client = &members().client;
    let message = |n: u8| {
        create_signed_with_nonce(
            client,
            CHANNEL,
            HeaderType::Message,
            Bytes::from_static(b"fuzz seed"),
            NOW_MS,
            &[n; 24],
        )
        .0
        .encode_to_vec()
    };
    let regular = |n: u8, original_offset: i64| KafkaMessage::Regular {
        envelope: message(n).into(),
        config_seq: 0,
        original_offset,
        is_config: false,
    };
    let records = [
        KafkaMessage::Connect,
        regular(1, 0),
        regular(2, 0),
        regular(3, 0),
        KafkaMessage::TimeToCut { block_number: 1 },
        regular(3, 0),
        regular(4, 2),
    ];
    let encoded: Vec<Vec<u8>> = records
        .iter()
        .map(|m| wire::encode(m, "orderer0"))
        .collect();
    let genesis = fixture::genesis().encode_to_vec();
    vec![
        [&[0u8][..], &fixture::join_pieces(&encoded)].concat(),
        [
            &[1u8][..],
            &fixture::join_pieces(std::iter::once(&genesis).chain(&encoded)),
        ]
        .concat(),
    ]
}
