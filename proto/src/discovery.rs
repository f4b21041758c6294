//! Peer announcements (`ordo.discovery`): how a peer signs what it says about itself on a
//! channel, and the one check every receiver runs on one — whoever relayed it.
//!
//! An announcement is a [`PeerInfo`] signed by the peer's identity key over
//! [`PEER_INFO_DOMAIN`] followed by the encoded info. It is accepted ([`verify`]) when:
//!
//! | check | refusal |
//! |---|---|
//! | `info` at most [`MAX_PEER_INFO_BYTES`], decodes, names the channel asked about | [`AnnouncementError::Malformed`], [`AnnouncementError::WrongChannel`] |
//! | the endpoint is `host:port`; at most [`MAX_ANNOUNCED_CHAINCODES`] chaincodes, each a name of at most [`MAX_CHAINCODE_NAME_LEN`] bytes | [`AnnouncementError::Malformed`] |
//! | signed at most [`MAX_FUTURE_SKEW_MS`] ahead of the receiver's clock | [`AnnouncementError::FromTheFuture`] |
//! | not older than the receiver's TTL | [`AnnouncementError::Expired`] |
//! | the certificate is a channel member's, valid when signed | [`AnnouncementError::Certificate`] |
//! | its role is PEER | [`AnnouncementError::NotAPeer`] |
//! | the signature verifies with the certificate's key | [`AnnouncementError::BadSignature`] |
//!
//! The org of an announced peer is its certificate's, so no peer can speak for another
//! org; the endpoint is only where to dial, and whatever answers there must still sign its
//! endorsements with a member's key.

use bytes::Bytes;
use prost::Message;
use thiserror::Error;

use crate::cert::{Msp, VerifiedCert};
use crate::crypto;
use crate::identity::Identity;
use crate::pb::common::Role;
use crate::pb::discovery::{PeerInfo, SignedPeerInfo};

/// What an announcement's signature covers before the encoded info: no other signature a
/// peer makes (endorsements, envelopes) can be taken for an announcement.
pub const PEER_INFO_DOMAIN: &[u8] = b"ordo-peer-info/1\0";
/// Largest encoded [`PeerInfo`] accepted.
pub const MAX_PEER_INFO_BYTES: usize = 16 * 1024;
/// Most chaincodes one announcement may list.
pub const MAX_ANNOUNCED_CHAINCODES: usize = 256;
/// Longest chaincode name in an announcement (a channel's longest).
pub use crate::config::MAX_CHAINCODE_NAME_LEN;
/// How far ahead of the receiver's clock an announcement may be signed (clocks of
/// different banks differ a little).
pub const MAX_FUTURE_SKEW_MS: u64 = 60_000;

/// Why an announcement is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnnouncementError {
    /// It does not decode, or a field is out of bounds.
    #[error("malformed announcement: {0}")]
    Malformed(String),
    /// It is about another channel.
    #[error("announcement for channel {got:?} sent for channel {expected:?}")]
    WrongChannel {
        /// The channel it names.
        got: String,
        /// The channel it was offered for.
        expected: String,
    },
    /// Signed further ahead of this node's clock than [`MAX_FUTURE_SKEW_MS`].
    #[error("announcement signed at {issued_ms} ms, {ahead_ms} ms ahead of this node's clock")]
    FromTheFuture {
        /// Its signing time.
        issued_ms: u64,
        /// How far ahead.
        ahead_ms: u64,
    },
    /// Older than the receiver's TTL: its peer has not announced itself since.
    #[error("announcement signed at {issued_ms} ms is older than {ttl_ms} ms")]
    Expired {
        /// Its signing time.
        issued_ms: u64,
        /// The receiver's TTL.
        ttl_ms: u64,
    },
    /// The certificate is not a channel member's, or was not valid when it signed.
    #[error("announcement certificate: {0}")]
    Certificate(String),
    /// The certificate is a member's, but not a peer's.
    #[error("announcement signed by {subject} of {org}, a {role}, not a peer")]
    NotAPeer {
        /// The signer's org.
        org: String,
        /// The signer's name.
        subject: String,
        /// Its role.
        role: String,
    },
    /// The signature does not verify with the certificate's key.
    #[error("announcement signature of {subject} of {org} does not verify")]
    BadSignature {
        /// The claimed signer's org.
        org: String,
        /// The claimed signer's name.
        subject: String,
    },
}

/// An announcement that passed [`verify`]: what it says, who said it, and the signed form
/// to relay unchanged.
#[derive(Debug, Clone)]
pub struct VerifiedPeer {
    /// What the peer said.
    pub info: PeerInfo,
    /// Its verified certificate (org, role, key, identity hash).
    pub cert: VerifiedCert,
    /// The announcement exactly as signed.
    pub signed: SignedPeerInfo,
}

/// Signs `info` with `identity` (whose certificate `info.certificate` should be).
pub fn sign(identity: &Identity, info: &PeerInfo) -> SignedPeerInfo {
    let bytes = info.encode_to_vec();
    let signature = identity.sign(&signed_message(&bytes));
    SignedPeerInfo {
        info: bytes.into(),
        signature: Bytes::copy_from_slice(&signature),
    }
}

/// Every check of the module docs, for an announcement offered for `channel` at `now_ms`
/// by a receiver that keeps announcements `ttl_ms`.
pub fn verify(
    signed: &SignedPeerInfo,
    channel: &str,
    msp: &Msp,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<VerifiedPeer, AnnouncementError> {
    let info = decode(signed)?;
    if info.channel_id != channel {
        return Err(AnnouncementError::WrongChannel {
            got: info.channel_id,
            expected: channel.to_string(),
        });
    }
    if info.issued_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(AnnouncementError::FromTheFuture {
            issued_ms: info.issued_ms,
            ahead_ms: info.issued_ms - now_ms,
        });
    }
    if info.issued_ms.saturating_add(ttl_ms) < now_ms {
        return Err(AnnouncementError::Expired {
            issued_ms: info.issued_ms,
            ttl_ms,
        });
    }
    let cert = msp
        .verify(&info.certificate, info.issued_ms / 1000)
        .map_err(|e| AnnouncementError::Certificate(e.to_string()))?;
    if cert.role != Role::Peer {
        return Err(AnnouncementError::NotAPeer {
            org: cert.org.to_string(),
            subject: cert.subject.to_string(),
            role: cert.role.as_str_name().to_string(),
        });
    }
    crypto::verify(
        &cert.public_key,
        &signed_message(&signed.info),
        &signed.signature,
    )
    .map_err(|_| AnnouncementError::BadSignature {
        org: cert.org.to_string(),
        subject: cert.subject.to_string(),
    })?;
    Ok(VerifiedPeer {
        info,
        cert,
        signed: signed.clone(),
    })
}

/// The info of an announcement, decoded and bounds-checked (not yet authenticated).
pub fn decode(signed: &SignedPeerInfo) -> Result<PeerInfo, AnnouncementError> {
    let malformed = |why: String| AnnouncementError::Malformed(why);
    if signed.info.len() > MAX_PEER_INFO_BYTES {
        return Err(malformed(format!(
            "info of {} bytes; at most {MAX_PEER_INFO_BYTES}",
            signed.info.len()
        )));
    }
    let info = PeerInfo::decode(signed.info.as_ref()).map_err(|e| malformed(e.to_string()))?;
    crate::config::check_endpoint(&info.endpoint).map_err(malformed)?;
    if info.chaincodes.len() > MAX_ANNOUNCED_CHAINCODES {
        return Err(malformed(format!(
            "{} chaincodes; at most {MAX_ANNOUNCED_CHAINCODES}",
            info.chaincodes.len()
        )));
    }
    if let Some(bad) = info
        .chaincodes
        .iter()
        .find(|c| c.is_empty() || c.len() > MAX_CHAINCODE_NAME_LEN)
    {
        return Err(malformed(format!(
            "chaincode name {bad:?} is empty or longer than {MAX_CHAINCODE_NAME_LEN} bytes"
        )));
    }
    Ok(info)
}

fn signed_message(info: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(PEER_INFO_DOMAIN.len() + info.len());
    message.extend_from_slice(PEER_INFO_DOMAIN);
    message.extend_from_slice(info);
    message
}

#[cfg(test)]
mod tests;
