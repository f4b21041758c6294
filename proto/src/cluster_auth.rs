//! How one consenter proves to another that a cluster request is its own.
//!
//! Raft messages and forwarded envelopes must come from the channel's consenters and no
//! one else: an outsider who could inject raft messages could stall or split the group.
//! Each request (or the first request of a stream) carries a [`ClusterAuth`]: the
//! sender's certificate exactly as the channel config lists it, the time, and a signature
//! binding purpose, channel, time and the request's content. The receiver accepts it only
//! from a listed consenter whose certificate its org's CA issued, within the allowed
//! clock skew. (When the transport moves to mTLS this check stays, as the application-level
//! proof DESIGN.md asks for on everything crossing an org boundary.)

use thiserror::Error;

use crate::cert::Msp;
use crate::crypto;
use crate::identity::Identity;
use crate::pb::cluster::ClusterAuth;
use crate::pb::common::Consenter;

/// The most a request's timestamp may differ from the receiver's clock.
pub const MAX_CLUSTER_CLOCK_SKEW_MS: u64 = 600_000;

/// What a cluster request is for; part of the signed bytes, so a proof for one purpose
/// cannot be replayed for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Opening a Step stream of raft messages.
    Step,
    /// Forwarding one envelope to the leader.
    Submit,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Step => b"step",
            Purpose::Submit => b"submit",
        }
    }
}

/// Why a cluster request was refused (FORBIDDEN to the sender).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClusterAuthError {
    /// No proof where one is required.
    #[error("cluster request without authentication")]
    Missing,
    /// The certificate is not one of the channel's consenters.
    #[error("the sender is not a consenter of channel {0:?}")]
    NotAConsenter(String),
    /// The certificate does not verify under the channel's org CAs.
    #[error("consenter certificate refused: {0}")]
    BadCertificate(String),
    /// The timestamp is too far from the receiver's clock.
    #[error("cluster request timestamp is {0} ms away from this node's clock")]
    Stale(u64),
    /// The signature does not verify.
    #[error("cluster request signature does not verify")]
    BadSignature,
}

fn signed_bytes(purpose: Purpose, channel: &str, timestamp_ms: u64, context: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + channel.len() + context.len());
    m.extend_from_slice(b"ordo-cluster");
    m.extend_from_slice(purpose.tag());
    m.push(0);
    m.extend_from_slice(channel.as_bytes());
    m.push(0);
    m.extend_from_slice(&timestamp_ms.to_be_bytes());
    m.extend_from_slice(context);
    m
}

/// The proof `identity` attaches to a request.
pub fn sign(
    identity: &Identity,
    purpose: Purpose,
    channel: &str,
    context: &[u8],
    now_ms: u64,
) -> ClusterAuth {
    let msg = signed_bytes(purpose, channel, now_ms, context);
    ClusterAuth {
        certificate: identity.cert_bytes().clone(),
        timestamp_ms: now_ms,
        signature: identity.sign(&msg).to_vec().into(),
    }
}

/// Checks a proof against the channel's consenters; returns the sender's consenter id.
pub fn verify<'c>(
    auth: Option<&ClusterAuth>,
    consenters: &'c [Consenter],
    msp: &Msp,
    purpose: Purpose,
    channel: &str,
    context: &[u8],
    now_ms: u64,
) -> Result<&'c Consenter, ClusterAuthError> {
    let auth = auth.ok_or(ClusterAuthError::Missing)?;
    let consenter = consenters
        .iter()
        .find(|c| c.certificate == auth.certificate)
        .ok_or_else(|| ClusterAuthError::NotAConsenter(channel.to_string()))?;
    let skew = now_ms.abs_diff(auth.timestamp_ms);
    if skew > MAX_CLUSTER_CLOCK_SKEW_MS {
        return Err(ClusterAuthError::Stale(skew));
    }
    let cert = msp
        .verify(&auth.certificate, now_ms / 1000)
        .map_err(|e| ClusterAuthError::BadCertificate(e.to_string()))?;
    let msg = signed_bytes(purpose, channel, auth.timestamp_ms, context);
    crypto::verify(&cert.public_key, &msg, &auth.signature)
        .map_err(|_| ClusterAuthError::BadSignature)?;
    Ok(consenter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Enrollment;
    use crate::pb::common::Role;
    use ed25519_dalek::SigningKey;

    fn member(ca: &SigningKey, name: &str) -> Identity {
        let key = SigningKey::from_bytes(&[name.len() as u8 + 40; 32]);
        let enrollment = Enrollment {
            subject: name.into(),
            ..Enrollment::new("A", Role::Orderer, name)
        };
        Identity::enroll(ca, key, &enrollment)
    }

    #[test]
    fn only_a_listed_consenter_with_a_fresh_matching_proof_is_accepted() {
        let ca = SigningKey::from_bytes(&[1; 32]);
        let msp = Msp::new([(
            "A".to_string(),
            vec![ca.verifying_key().to_bytes().to_vec()],
        )])
        .expect("msp");
        let o1 = member(&ca, "o1");
        let outsider = member(&ca, "outsider");
        let consenters = vec![Consenter {
            id: "o1".into(),
            endpoint: "127.0.0.1:1".into(),
            certificate: o1.cert_bytes().clone(),
            ..Default::default()
        }];
        let now = 1_800_000_000_000;
        let auth = sign(&o1, Purpose::Submit, "ch", b"digest", now);
        let ok = verify(
            Some(&auth),
            &consenters,
            &msp,
            Purpose::Submit,
            "ch",
            b"digest",
            now,
        );
        assert_eq!(ok.map(|c| c.id.as_str()), Ok("o1"));
        let check = |auth: Option<&ClusterAuth>, purpose, channel, context: &[u8], at| {
            verify(auth, &consenters, &msp, purpose, channel, context, at).map(|_| ())
        };
        assert_eq!(
            check(None, Purpose::Submit, "ch", b"digest", now),
            Err(ClusterAuthError::Missing)
        );
        assert_eq!(
            check(Some(&auth), Purpose::Step, "ch", b"digest", now),
            Err(ClusterAuthError::BadSignature)
        );
        assert_eq!(
            check(Some(&auth), Purpose::Submit, "other", b"digest", now),
            Err(ClusterAuthError::BadSignature)
        );
        assert_eq!(
            check(Some(&auth), Purpose::Submit, "ch", b"tampered", now),
            Err(ClusterAuthError::BadSignature)
        );
        assert_eq!(
            check(
                Some(&auth),
                Purpose::Submit,
                "ch",
                b"digest",
                now + 3_600_000
            ),
            Err(ClusterAuthError::Stale(3_600_000))
        );
        let foreign = sign(&outsider, Purpose::Submit, "ch", b"digest", now);
        assert_eq!(
            check(Some(&foreign), Purpose::Submit, "ch", b"digest", now),
            Err(ClusterAuthError::NotAConsenter("ch".into()))
        );
    }
}
