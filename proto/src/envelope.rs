//! Signed envelopes: building them, and the header checks every node applies on receipt.

use bytes::Bytes;
use prost::Message;
use thiserror::Error;

use crate::hash;
use crate::identity::Identity;
use crate::pb::common::{Envelope, Header, HeaderType, Payload};

/// Nonce length used by [`create_signed`].
pub const NONCE_LEN: usize = 24;
/// Longest nonce accepted.
pub const MAX_NONCE_LEN: usize = 64;

/// Why an envelope is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    /// Bytes that do not decode.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which part.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// The payload has no header.
    #[error("payload has no header")]
    MissingHeader,
    /// A header field is missing or out of range.
    #[error("bad header: {0}")]
    BadHeader(String),
    /// The tx id is not `hex(SHA-256(nonce ‖ creator))`.
    #[error("tx id {claimed} does not match its nonce and creator")]
    TxIdMismatch {
        /// The id the header claims.
        claimed: String,
    },
}

/// A decoded envelope with its header checked for sanity (not yet its signature).
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// The header.
    pub header: Header,
    /// The header type, already known to be a real one.
    pub header_type: HeaderType,
    /// The payload data.
    pub data: Bytes,
}

/// Builds and signs an envelope with a fresh random nonce; returns it with its tx id.
pub fn create_signed(
    identity: &Identity,
    channel_id: &str,
    header_type: HeaderType,
    data: Bytes,
    timestamp_ms: u64,
) -> (Envelope, String) {
    let nonce: [u8; NONCE_LEN] = rand::random();
    create_signed_with_nonce(
        identity,
        channel_id,
        header_type,
        data,
        timestamp_ms,
        &nonce,
    )
}

/// Builds and signs an envelope with the given nonce (deterministic, for tests).
pub fn create_signed_with_nonce(
    identity: &Identity,
    channel_id: &str,
    header_type: HeaderType,
    data: Bytes,
    timestamp_ms: u64,
    nonce: &[u8],
) -> (Envelope, String) {
    let creator = identity.cert_bytes().clone();
    let tx_id = hash::tx_id(nonce, &creator);
    let payload = Payload {
        header: Some(Header {
            channel_id: channel_id.to_string(),
            r#type: header_type as i32,
            tx_id: tx_id.clone(),
            timestamp_ms,
            creator,
            nonce: Bytes::copy_from_slice(nonce),
        }),
        data,
    };
    let payload_bytes = payload.encode_to_vec();
    let signature = identity.sign(&payload_bytes);
    (
        Envelope {
            payload: payload_bytes.into(),
            signature: signature.to_vec().into(),
        },
        tx_id,
    )
}

/// Decodes an envelope's payload and checks its header: channel id present, a known
/// type, a creator, a nonce of sane length and a tx id that matches them.
pub fn unpack(envelope: &Envelope) -> Result<Unpacked, EnvelopeError> {
    let payload =
        Payload::decode(envelope.payload.as_ref()).map_err(|e| EnvelopeError::Malformed {
            what: "payload",
            reason: e.to_string(),
        })?;
    let header = payload.header.ok_or(EnvelopeError::MissingHeader)?;
    let header_type = HeaderType::try_from(header.r#type)
        .ok()
        .filter(|t| *t != HeaderType::Unspecified)
        .ok_or_else(|| {
            EnvelopeError::BadHeader(format!("unknown header type {}", header.r#type))
        })?;
    if header.channel_id.is_empty() {
        return Err(EnvelopeError::BadHeader("empty channel id".into()));
    }
    if header.creator.is_empty() {
        return Err(EnvelopeError::BadHeader("no creator".into()));
    }
    if header.nonce.is_empty() || header.nonce.len() > MAX_NONCE_LEN {
        return Err(EnvelopeError::BadHeader(format!(
            "nonce of {} bytes (1..={MAX_NONCE_LEN} allowed)",
            header.nonce.len()
        )));
    }
    if header.tx_id != hash::tx_id(&header.nonce, &header.creator) {
        return Err(EnvelopeError::TxIdMismatch {
            claimed: header.tx_id,
        });
    }
    Ok(Unpacked {
        header,
        header_type,
        data: payload.data,
    })
}

/// Decodes envelope bytes (as stored in a block).
pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    Envelope::decode(bytes).map_err(|e| EnvelopeError::Malformed {
        what: "envelope",
        reason: e.to_string(),
    })
}

/// The tx id in the header of stored envelope bytes, without checking anything else: the
/// one way the ordering backends, the orderer's duplicate filter and the ledger's tx index
/// read it from blocks. `None` when the bytes do not decode to a payload with a header.
///
/// Decoded from `Bytes`, so the payload, data, creator and signature are views of the
/// input rather than copies: this runs for every envelope of every block a leader writes
/// in `committed` mode.
pub fn tx_id_of(bytes: &Bytes) -> Option<String> {
    let envelope = Envelope::decode(bytes.clone()).ok()?;
    let payload = Payload::decode(envelope.payload).ok()?;
    payload.header.map(|h| h.tx_id)
}
