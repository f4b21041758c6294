//! Envelope decoding and the orderer's filters, as pure functions of the bytes and the
//! fixture channel's configuration at [`NOW_SECS`]: decode (with the canonical-bytes
//! shortcut the Broadcast path takes), unpack, tx id extraction, the config-envelope test,
//! and every filter (`check_normal`: size, channel, clock skew, creator certificate,
//! signature, header type and the Writers policy).
//!
//! Invariants: the canonical-bytes shortcut keeps bytes only when they are exactly the
//! envelope's encoding; an envelope the filters accept unpacks to the fixture channel, and
//! its creator verifies against the channel's MSP.

use bytes::Bytes;
use prost::Message;

use ordo_consensus::filters;
use ordo_orderer::broadcast::ReceivedEnvelope;
use ordo_proto::envelope::{create_signed_with_nonce, tx_id_of, unpack};
use ordo_proto::pb::common::HeaderType;

use crate::fixture::{self, members, CHANNEL, NOW_MS, NOW_SECS};

/// Runs one input.
pub fn run(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let tx_id = tx_id_of(&bytes);
    let _ = ordo_proto::config::is_config_envelope(data);
    let Ok(received) = ReceivedEnvelope::decode(bytes) else {
        return;
    };
    if let Some(canonical) = &received.canonical_bytes {
        assert_eq!(
            received.envelope.encode_to_vec(),
            canonical.as_ref(),
            "kept bytes that are not the envelope's encoding"
        );
    }
    if let Ok(unpacked) = unpack(&received.envelope) {
        if !unpacked.header.tx_id.is_empty() {
            assert_eq!(tx_id.as_deref(), Some(unpacked.header.tx_id.as_str()));
        }
    }
    match filters::check_normal(fixture::config_state(), received.envelope, NOW_SECS) {
        Ok(candidate) => {
            assert_eq!(candidate.unpacked.header.channel_id, CHANNEL);
            assert!(matches!(
                candidate.header_type(),
                HeaderType::Message | HeaderType::EndorserTransaction
            ));
        }
        Err(refusal) => {
            let _ = refusal.status();
        }
    }
}

/// A valid MESSAGE from the client, one from a stranger, and one for another channel.
pub fn seeds() -> Vec<Vec<u8>> {
    let m = members();
    let make = |who, channel: &str, n: u8| {
        create_signed_with_nonce(
            who,
            channel,
            HeaderType::Message,
            Bytes::from_static(b"fuzz seed"),
            NOW_MS,
            &[n; 24],
        )
        .0
        .encode_to_vec()
    };
    vec![
        make(&m.client, CHANNEL, 1),
        make(&m.stranger, CHANNEL, 2),
        make(&m.client, "other", 3),
    ]
}
