//! The bytes of a kafka channel: partition messages and a block's resume point.
//!
//! The partition is shared with every orderer of the channel and, in a consortium, with
//! whoever can write to the broker, so a message that does not decode is reported, never
//! a reason to panic; the driver decides what to do with it (skip it, and every orderer
//! skips it alike, so the chains stay identical).

use bytes::Bytes;
use prost::Message;
use thiserror::Error;

use ordo_proto::pb::common::Block;
use ordo_proto::pb::kafka::{
    kafka_message, KafkaConnect, KafkaMessage as WireMessage, KafkaMetadata, KafkaRegular,
    KafkaTimeToCut,
};

use super::core::{KafkaMessage, ResumePoint};

/// Why bytes from the partition or the ledger are not what the kafka backend wrote.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// Not a protobuf `KafkaMessage`.
    #[error("undecodable partition message: {0}")]
    Decode(String),
    /// A message with none of the known kinds (written by a newer or a foreign producer).
    #[error("partition message of no known kind")]
    UnknownKind,
    /// A block's consenter metadata is not a kafka resume point.
    #[error("block {block}: consenter metadata is not a kafka resume point: {reason}")]
    Metadata {
        /// The block.
        block: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Encodes a message for the partition.
pub fn encode(message: &KafkaMessage, orderer: &str) -> Vec<u8> {
    let kind = match message {
        KafkaMessage::Regular {
            envelope,
            config_seq,
            original_offset,
            is_config,
        } => kafka_message::Type::Regular(KafkaRegular {
            envelope: envelope.clone(),
            config_seq: *config_seq,
            original_offset: *original_offset,
            is_config: *is_config,
        }),
        KafkaMessage::TimeToCut { block_number } => {
            kafka_message::Type::TimeToCut(KafkaTimeToCut {
                block_number: *block_number,
            })
        }
        KafkaMessage::Connect => kafka_message::Type::Connect(KafkaConnect {
            orderer: orderer.to_string(),
        }),
    };
    WireMessage { r#type: Some(kind) }.encode_to_vec()
}

/// Decodes a message read from the partition.
pub fn decode(bytes: Bytes) -> Result<KafkaMessage, WireError> {
    let m = WireMessage::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
    Ok(match m.r#type.ok_or(WireError::UnknownKind)? {
        kafka_message::Type::Regular(r) => KafkaMessage::Regular {
            envelope: r.envelope,
            config_seq: r.config_seq,
            original_offset: r.original_offset,
            is_config: r.is_config,
        },
        kafka_message::Type::TimeToCut(t) => KafkaMessage::TimeToCut {
            block_number: t.block_number,
        },
        kafka_message::Type::Connect(_) => KafkaMessage::Connect,
    })
}

/// The consenter metadata of a block cut from the partition.
pub fn metadata(last_offset: i64, last_original_offset: i64) -> Bytes {
    KafkaMetadata {
        last_offset,
        last_original_offset,
    }
    .encode_to_vec()
    .into()
}

/// Where an orderer resumes, from the last block of its ledger (`None` for an empty
/// ledger). A ledger holding only the genesis block resumes at the partition's start.
pub fn resume_point(last_block: Option<&Block>) -> Result<ResumePoint, WireError> {
    let Some(b) = last_block else {
        return Ok(ResumePoint {
            next_block: 0,
            last_offset: -1,
            last_original_offset: 0,
        });
    };
    let number = ordo_proto::block::number(b);
    let next_block = number + 1;
    if number == 0 {
        return Ok(ResumePoint {
            next_block,
            last_offset: -1,
            last_original_offset: 0,
        });
    }
    let raw = b
        .metadata
        .as_ref()
        .map(|m| m.consenter_metadata.clone())
        .unwrap_or_default();
    if raw.is_empty() {
        return Err(WireError::Metadata {
            block: number,
            reason: "none (the block was not cut from a partition)".into(),
        });
    }
    let m = KafkaMetadata::decode(raw).map_err(|e| WireError::Metadata {
        block: number,
        reason: e.to_string(),
    })?;
    if m.last_offset < 0 {
        return Err(WireError::Metadata {
            block: number,
            reason: format!("negative last offset {}", m.last_offset),
        });
    }
    Ok(ResumePoint {
        next_block,
        last_offset: m.last_offset,
        last_original_offset: m.last_original_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_proto::pb::common::BlockMetadata;
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = KafkaMessage> {
        prop_oneof![
            (
                prop::collection::vec(any::<u8>(), 0..300),
                any::<u64>(),
                any::<i64>(),
                any::<bool>()
            )
                .prop_map(|(e, s, o, c)| KafkaMessage::Regular {
                    envelope: e.into(),
                    config_seq: s,
                    original_offset: o,
                    is_config: c,
                }),
            any::<u64>().prop_map(|n| KafkaMessage::TimeToCut { block_number: n }),
            Just(KafkaMessage::Connect),
        ]
    }

    proptest! {
        #[test]
        fn messages_round_trip(m in message()) {
            prop_assert_eq!(decode(encode(&m, "orderer0").into()), Ok(m));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(bytes.into());
        }
    }

    #[test]
    fn foreign_and_empty_messages_are_errors() {
        assert_eq!(decode(Bytes::new()), Err(WireError::UnknownKind));
        assert!(matches!(
            decode(Bytes::from_static(&[0xff, 0xff, 0xff])),
            Err(WireError::Decode(_))
        ));
    }

    fn block(number: u64, consenter_metadata: Bytes) -> Block {
        let mut b = ordo_proto::block::build(number, [0; 32], vec![]);
        b.metadata = Some(BlockMetadata {
            consenter_metadata,
            ..Default::default()
        });
        b
    }

    #[test]
    fn resume_points_come_from_the_last_block() {
        assert_eq!(resume_point(None).expect("empty").next_block, 0);
        let genesis = resume_point(Some(&block(0, Bytes::new()))).expect("genesis");
        assert_eq!((genesis.next_block, genesis.last_offset), (1, -1));
        let p = resume_point(Some(&block(7, metadata(41, 12)))).expect("block 7");
        assert_eq!(
            p,
            ResumePoint {
                next_block: 8,
                last_offset: 41,
                last_original_offset: 12
            }
        );
        assert!(matches!(
            resume_point(Some(&block(7, Bytes::from_static(&[0xff, 0x01])))),
            Err(WireError::Metadata { block: 7, .. })
        ));
        assert!(matches!(
            resume_point(Some(&block(7, Bytes::new()))),
            Err(WireError::Metadata { block: 7, .. })
        ));
        assert!(matches!(
            resume_point(Some(&block(7, metadata(-5, 0)))),
            Err(WireError::Metadata { block: 7, .. })
        ));
    }
}
