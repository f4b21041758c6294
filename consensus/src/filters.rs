//! The checks every envelope passes before it is ordered, as pure functions of the
//! envelope, the channel configuration and the time.
//!
//! The orderer runs them on receipt (with signatures verified in batches across a
//! stream's envelopes); a backend runs them again through
//! [`crate::support::ChainSupport::revalidate`] when the configuration changed after the
//! first check. Each failure maps to one precise status.

use prost::Message;
use thiserror::Error;

use ordo_proto::cert::VerifiedCert;
use ordo_proto::crypto::{self, SignedMessage};
use ordo_proto::envelope::{self, Unpacked};
use ordo_proto::pb::common::{Envelope, HeaderType, Status};
use ordo_proto::policy;

use crate::support::ConfigState;

/// How far an envelope's creation time may be from the orderer's clock. Peers check
/// certificates at a transaction's own creation time (so that validation is
/// deterministic); this bound is what stops a holder of an expired certificate from
/// backdating new transactions into its validity.
pub const MAX_TX_CLOCK_SKEW_SECS: u64 = 600;

/// Why an envelope was refused by a filter.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FilterError {
    /// Larger than the channel's `absolute_max_bytes`.
    #[error("envelope of {size} bytes exceeds the channel's limit of {max} bytes")]
    TooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: u32,
    },
    /// Does not decode, or the header is not sane.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The envelope's timestamp is too far from the orderer's clock.
    #[error("bad request: envelope timestamp {timestamp_secs}s is more than {MAX_TX_CLOCK_SKEW_SECS}s from the orderer's clock ({now_secs}s)")]
    Timestamp {
        /// The envelope's creation time, seconds since the epoch.
        timestamp_secs: u64,
        /// The orderer's time.
        now_secs: u64,
    },
    /// The creator's certificate is not acceptable on this channel.
    #[error("forbidden: creator certificate: {0}")]
    BadCreator(String),
    /// The envelope's signature does not verify.
    #[error("forbidden: envelope signature does not verify")]
    BadSignature,
    /// The creator is not allowed by the channel's policy.
    #[error("forbidden: {0}")]
    PolicyDenied(String),
}

impl FilterError {
    /// The Broadcast status for this failure.
    pub fn status(&self) -> Status {
        match self {
            FilterError::TooLarge { .. } => Status::RequestEntityTooLarge,
            FilterError::BadRequest(_) | FilterError::Timestamp { .. } => Status::BadRequest,
            FilterError::BadCreator(_)
            | FilterError::BadSignature
            | FilterError::PolicyDenied(_) => Status::Forbidden,
        }
    }
}

/// An envelope whose size, header and creator certificate passed; its signature is still
/// to be verified (in a batch, with [`verify_signatures`]).
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The envelope as received.
    pub envelope: Envelope,
    /// Its decoded header and data.
    pub unpacked: Unpacked,
    /// The creator, verified against the channel's MSP.
    pub creator: VerifiedCert,
    /// Its encoded size.
    pub size: usize,
}

impl Candidate {
    /// The tx id.
    pub fn tx_id(&self) -> &str {
        &self.unpacked.header.tx_id
    }

    /// The header type.
    pub fn header_type(&self) -> HeaderType {
        self.unpacked.header_type
    }

    /// The envelope's encoded bytes, as they go into a block.
    pub fn encoded(&self) -> bytes::Bytes {
        self.envelope.encode_to_vec().into()
    }
}

/// Size, decode, channel, header sanity and creator certificate, in that order.
pub fn precheck(
    state: &ConfigState,
    envelope: Envelope,
    now_secs: u64,
) -> Result<Candidate, FilterError> {
    check_size(state, &envelope)?;
    let unpacked =
        envelope::unpack(&envelope).map_err(|e| FilterError::BadRequest(e.to_string()))?;
    precheck_unpacked(state, envelope, unpacked, now_secs)
}

fn check_size(state: &ConfigState, envelope: &Envelope) -> Result<usize, FilterError> {
    let size = envelope.encoded_len();
    if size > state.limits.absolute_max_bytes as usize {
        return Err(FilterError::TooLarge {
            size,
            max: state.limits.absolute_max_bytes,
        });
    }
    Ok(size)
}

/// [`precheck`] for an envelope the caller has already unpacked (the orderer unpacks
/// first to learn the channel), so the payload is decoded once.
pub fn precheck_unpacked(
    state: &ConfigState,
    envelope: Envelope,
    unpacked: Unpacked,
    now_secs: u64,
) -> Result<Candidate, FilterError> {
    let size = check_size(state, &envelope)?;
    if unpacked.header.channel_id != state.config.channel_id {
        return Err(FilterError::BadRequest(format!(
            "envelope for channel {:?} sent to channel {:?}",
            unpacked.header.channel_id, state.config.channel_id
        )));
    }
    let timestamp_secs = unpacked.header.timestamp_ms / 1000;
    if timestamp_secs.abs_diff(now_secs) > MAX_TX_CLOCK_SKEW_SECS {
        return Err(FilterError::Timestamp {
            timestamp_secs,
            now_secs,
        });
    }
    let creator = state
        .msp
        .verify(&unpacked.header.creator, now_secs)
        .map_err(|e| FilterError::BadCreator(e.to_string()))?;
    Ok(Candidate {
        envelope,
        unpacked,
        creator,
        size,
    })
}

/// Verifies the envelope signatures of `candidates` in one batch; `true` where good.
pub fn verify_signatures(candidates: &[&Candidate]) -> Vec<bool> {
    let items: Vec<SignedMessage<'_>> = candidates
        .iter()
        .map(|c| SignedMessage {
            key: &c.creator.public_key,
            msg: &c.envelope.payload,
            sig: &c.envelope.signature,
        })
        .collect();
    crypto::verify_each(&items)
}

/// The Writers policy and the header type of a normal (non-config) envelope.
pub fn authorize_normal(state: &ConfigState, candidate: &Candidate) -> Result<(), FilterError> {
    match candidate.header_type() {
        HeaderType::Message | HeaderType::EndorserTransaction => {}
        other => {
            return Err(FilterError::BadRequest(format!(
                "header type {} cannot be broadcast as a transaction",
                other.as_str_name()
            )))
        }
    }
    let writers = state
        .config
        .writers
        .as_ref()
        .ok_or_else(|| FilterError::PolicyDenied("channel has no Writers policy".into()))?;
    policy::evaluate(
        writers,
        std::slice::from_ref(&candidate.creator),
        &state.org_names,
    )
    .map_err(|e| FilterError::PolicyDenied(format!("Writers policy: {e}")))
}

/// Re-runs every check on an encoded envelope against `state` at `now_secs` (Unix
/// seconds): a backend re-validates an envelope this way when the config sequence moved
/// after the envelope was first checked. The time is a parameter so that an engine that
/// calls it stays a function of its inputs.
pub fn revalidate(
    state: &ConfigState,
    envelope_bytes: &[u8],
    now_secs: u64,
) -> Result<(), FilterError> {
    let env = ordo_proto::envelope::decode(envelope_bytes)
        .map_err(|e| FilterError::BadRequest(e.to_string()))?;
    check_normal(state, env, now_secs).map(|_| ())
}

/// All checks on one envelope, signature included (the non-batched path, for
/// re-validation).
pub fn check_normal(
    state: &ConfigState,
    envelope: Envelope,
    now_secs: u64,
) -> Result<Candidate, FilterError> {
    let c = precheck(state, envelope, now_secs)?;
    if !verify_signatures(&[&c]).first().copied().unwrap_or(false) {
        return Err(FilterError::BadSignature);
    }
    authorize_normal(state, &c)?;
    Ok(c)
}
