//! Member certificates issued by org certificate authorities, and the [`Msp`] that checks
//! them against a channel's configured roots.
//!
//! A certificate is `{body bytes, issuer signature}`; the body names the org, the role,
//! the holder's key, the validity window and the issuing root key. Verification checks
//! the issuer is one of the org's roots in the channel config, the signature over the
//! exact body bytes, and the validity window against a time the caller supplies (so the
//! check is deterministic). Verified certificates are cached by the hash of their bytes;
//! expiry is re-checked on every use because the cache outlives time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ed25519_dalek::{SigningKey, VerifyingKey};
use prost::Message;
use thiserror::Error;

use crate::crypto::{self, CryptoError};
use crate::hash::{sha256, Hash};
use crate::pb::common::{Certificate, CertificateBody, ChannelConfig, Role};

/// Largest encoded certificate accepted; real ones are about 200 bytes.
pub const MAX_CERTIFICATE_BYTES: usize = 4096;

/// How many verified certificates an [`Msp`] remembers before it starts over.
const CACHE_CAPACITY: usize = 16_384;

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertError {
    /// The bytes are not a certificate, or a field is out of range.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// The certificate names an org that is not in the channel.
    #[error("certificate from unknown org {0:?}")]
    UnknownOrg(String),
    /// The issuer key is not one of the org's roots.
    #[error("certificate of org {0:?} not issued by one of its roots")]
    UnknownIssuer(String),
    /// The issuer's signature does not verify.
    #[error("certificate issuer signature does not verify")]
    BadIssuerSignature,
    /// The certificate's validity ended before `now_secs`.
    #[error("certificate expired at {not_after} (now {now_secs})")]
    Expired {
        /// End of validity, seconds since the epoch.
        not_after: u64,
        /// The time it was checked against.
        now_secs: u64,
    },
    /// The certificate's validity starts after `now_secs`.
    #[error("certificate not valid before {not_before} (now {now_secs})")]
    NotYetValid {
        /// Start of validity, seconds since the epoch.
        not_before: u64,
        /// The time it was checked against.
        now_secs: u64,
    },
}

/// A certificate whose issuer signature has been checked.
#[derive(Debug, Clone)]
pub struct VerifiedCert {
    /// The holder's org (shared: verified certificates are cloned out of the cache for
    /// every envelope, and a clone must not allocate).
    pub org: Arc<str>,
    /// The holder's role.
    pub role: Role,
    /// The holder's name, for logs.
    pub subject: Arc<str>,
    /// The holder's key.
    pub public_key: VerifyingKey,
    /// Start of validity, seconds since the epoch.
    pub not_before: u64,
    /// End of validity, seconds since the epoch.
    pub not_after: u64,
    /// SHA-256 of the encoded certificate: the holder's identity for de-duplication.
    pub cert_hash: Hash,
}

impl VerifiedCert {
    /// Checks the validity window against `now_secs`.
    pub fn check_validity(&self, now_secs: u64) -> Result<(), CertError> {
        if now_secs > self.not_after {
            return Err(CertError::Expired {
                not_after: self.not_after,
                now_secs,
            });
        }
        if now_secs < self.not_before {
            return Err(CertError::NotYetValid {
                not_before: self.not_before,
                now_secs,
            });
        }
        Ok(())
    }
}

/// Issues a certificate: fills in the issuer key from `ca` and signs the encoded body.
pub fn issue(ca: &SigningKey, mut body: CertificateBody) -> Certificate {
    body.issuer_public_key = ca.verifying_key().to_bytes().to_vec().into();
    let body_bytes = body.encode_to_vec();
    let sig = crypto::sign(ca, &body_bytes);
    Certificate {
        body: body_bytes.into(),
        issuer_signature: sig.to_vec().into(),
    }
}

/// Decodes a certificate and its body without checking anything.
pub fn decode(cert_bytes: &[u8]) -> Result<(Certificate, CertificateBody), CertError> {
    if cert_bytes.len() > MAX_CERTIFICATE_BYTES {
        return Err(CertError::Malformed(format!(
            "{} bytes exceeds the limit of {MAX_CERTIFICATE_BYTES}",
            cert_bytes.len()
        )));
    }
    let cert = Certificate::decode(cert_bytes).map_err(|e| CertError::Malformed(e.to_string()))?;
    let body = CertificateBody::decode(cert.body.as_ref())
        .map_err(|e| CertError::Malformed(e.to_string()))?;
    Ok((cert, body))
}

/// The membership service of one channel (or of one node): each org's root keys, and a
/// cache of certificates already verified against them.
#[derive(Debug, Clone)]
pub struct Msp {
    roots: Arc<HashMap<String, Vec<VerifyingKey>>>,
    org_names: Arc<Vec<String>>,
    cache: Arc<Mutex<HashMap<Hash, VerifiedCert>>>,
}

impl Msp {
    /// An MSP over the given orgs and their root keys; malformed keys are an error.
    pub fn new<I, K>(orgs: I) -> Result<Self, CertError>
    where
        I: IntoIterator<Item = (String, Vec<K>)>,
        K: AsRef<[u8]>,
    {
        let mut roots = HashMap::new();
        let mut names = Vec::new();
        for (org, keys) in orgs {
            let parsed = keys
                .iter()
                .map(|k| crypto::parse_public_key(k.as_ref()))
                .collect::<Result<Vec<_>, CryptoError>>()
                .map_err(|e| CertError::Malformed(format!("root key of org {org:?}: {e}")))?;
            names.push(org.clone());
            roots.insert(org, parsed);
        }
        Ok(Self {
            roots: Arc::new(roots),
            org_names: Arc::new(names),
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The MSP of a channel configuration.
    pub fn from_config(config: &ChannelConfig) -> Result<Self, CertError> {
        Self::new(
            config
                .orgs
                .iter()
                .map(|o| (o.name.clone(), o.root_public_keys.to_vec())),
        )
    }

    /// Names of the orgs, in configuration order.
    pub fn org_names(&self) -> &[String] {
        &self.org_names
    }

    /// Verifies a certificate: known org, issued by one of its roots, signature good,
    /// valid at `now_secs`.
    pub fn verify(&self, cert_bytes: &[u8], now_secs: u64) -> Result<VerifiedCert, CertError> {
        let cert_hash = sha256(cert_bytes);
        let cached = self
            .cache
            .lock()
            .map(|c| c.get(&cert_hash).cloned())
            .unwrap_or(None);
        if let Some(v) = cached {
            v.check_validity(now_secs)?;
            return Ok(v);
        }
        let verified = self.verify_uncached(cert_bytes, cert_hash)?;
        verified.check_validity(now_secs)?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_CAPACITY {
                c.clear();
            }
            c.insert(cert_hash, verified.clone());
        }
        Ok(verified)
    }

    fn verify_uncached(
        &self,
        cert_bytes: &[u8],
        cert_hash: Hash,
    ) -> Result<VerifiedCert, CertError> {
        let (cert, body) = decode(cert_bytes)?;
        let role = Role::try_from(body.role)
            .ok()
            .filter(|r| *r != Role::Unspecified)
            .ok_or_else(|| CertError::Malformed(format!("unknown role {}", body.role)))?;
        let roots = self
            .roots
            .get(&body.org)
            .ok_or_else(|| CertError::UnknownOrg(body.org.clone()))?;
        let issuer = roots
            .iter()
            .find(|k| k.as_bytes().as_slice() == body.issuer_public_key.as_ref())
            .ok_or_else(|| CertError::UnknownIssuer(body.org.clone()))?;
        crypto::verify(issuer, &cert.body, &cert.issuer_signature)
            .map_err(|_| CertError::BadIssuerSignature)?;
        let public_key = crypto::parse_public_key(&body.public_key)
            .map_err(|e| CertError::Malformed(format!("holder key: {e}")))?;
        if body.not_before > body.not_after {
            return Err(CertError::Malformed(
                "validity window ends before it starts".into(),
            ));
        }
        Ok(VerifiedCert {
            org: body.org.into(),
            role,
            subject: body.subject.into(),
            public_key,
            not_before: body.not_before,
            not_after: body.not_after,
            cert_hash,
        })
    }
}

impl Msp {
    /// The signers whose certificate verifies (valid at `now_secs`) and whose signature
    /// over `msg` verifies, from `(certificate bytes, signature)` pairs. Signatures are
    /// checked in one batch; bad ones are left out, so they can only make a policy fail.
    pub fn verified_signers<'a>(
        &self,
        msg: &[u8],
        signatures: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        now_secs: u64,
    ) -> Vec<VerifiedCert> {
        let checked: Vec<(VerifiedCert, &[u8])> = signatures
            .into_iter()
            .filter_map(|(signer, sig)| self.verify(signer, now_secs).ok().map(|c| (c, sig)))
            .collect();
        let items: Vec<crypto::SignedMessage<'_>> = checked
            .iter()
            .map(|(c, sig)| crypto::SignedMessage {
                key: &c.public_key,
                msg,
                sig,
            })
            .collect();
        let good = crypto::verify_each(&items);
        checked
            .into_iter()
            .zip(good)
            .filter_map(|((c, _), ok)| ok.then_some(c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(org: &str, role: Role, holder: &SigningKey, not_after: u64) -> CertificateBody {
        CertificateBody {
            org: org.into(),
            role: role as i32,
            subject: format!("x@{org}"),
            public_key: holder.verifying_key().to_bytes().to_vec().into(),
            not_before: 100,
            not_after,
            issuer_public_key: Default::default(),
            serial: 1,
        }
    }

    fn setup() -> (SigningKey, Msp) {
        let ca = SigningKey::from_bytes(&[9; 32]);
        let msp = Msp::new([("BankA".to_string(), vec![ca.verifying_key().to_bytes()])])
            .expect("valid roots");
        (ca, msp)
    }

    #[test]
    fn issued_certificate_verifies_and_expires() {
        let (ca, msp) = setup();
        let holder = SigningKey::from_bytes(&[1; 32]);
        let cert = issue(&ca, body("BankA", Role::Client, &holder, 1000)).encode_to_vec();
        let v = msp.verify(&cert, 500).expect("valid");
        assert_eq!(&*v.org, "BankA");
        assert_eq!(v.role, Role::Client);
        // Cached, but expiry is still checked.
        assert_eq!(
            msp.verify(&cert, 1001).err(),
            Some(CertError::Expired {
                not_after: 1000,
                now_secs: 1001
            })
        );
        assert!(matches!(
            msp.verify(&cert, 50),
            Err(CertError::NotYetValid { .. })
        ));
    }

    #[test]
    fn foreign_org_and_foreign_issuer_are_refused() {
        let (_ca, msp) = setup();
        let other_ca = SigningKey::from_bytes(&[8; 32]);
        let holder = SigningKey::from_bytes(&[1; 32]);
        let cert = issue(&other_ca, body("BankZ", Role::Client, &holder, 1000)).encode_to_vec();
        assert_eq!(
            msp.verify(&cert, 500).err(),
            Some(CertError::UnknownOrg("BankZ".into()))
        );
        let cert = issue(&other_ca, body("BankA", Role::Client, &holder, 1000)).encode_to_vec();
        assert_eq!(
            msp.verify(&cert, 500).err(),
            Some(CertError::UnknownIssuer("BankA".into()))
        );
    }

    #[test]
    fn tampered_body_fails_the_issuer_signature() {
        let (ca, msp) = setup();
        let holder = SigningKey::from_bytes(&[1; 32]);
        let mut cert = issue(&ca, body("BankA", Role::Client, &holder, 1000));
        let mut b = CertificateBody::decode(cert.body.as_ref()).expect("decodes");
        b.role = Role::Admin as i32;
        cert.body = b.encode_to_vec().into();
        assert_eq!(
            msp.verify(&cert.encode_to_vec(), 500).err(),
            Some(CertError::BadIssuerSignature)
        );
        assert!(matches!(
            msp.verify(b"\xff\xff garbage", 500),
            Err(CertError::Malformed(_))
        ));
    }
}
