//! Ed25519 signatures: signing, single verification and batch verification.
//!
//! Batch verification checks many signatures for roughly a third of the cost of checking
//! them one by one; when a batch fails, [`verify_each`] falls back to single checks to name
//! the bad ones, so one bad signature costs its sender, not everyone else in the batch.
//! Weak (small-order) public keys are refused everywhere, so no key can sign for "any
//! message".

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use thiserror::Error;

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an Ed25519 secret key seed.
pub const SECRET_KEY_LEN: usize = 32;

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The public key is not 32 bytes, not a curve point, or of small order.
    #[error("malformed or weak public key")]
    BadPublicKey,
    /// The signature is not 64 bytes.
    #[error("malformed signature (expected {SIGNATURE_LEN} bytes, got {0})")]
    MalformedSignature(usize),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// Parses a public key, refusing malformed and weak keys.
pub fn parse_public_key(bytes: &[u8]) -> Result<VerifyingKey, CryptoError> {
    let arr: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::BadPublicKey)?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| CryptoError::BadPublicKey)?;
    if key.is_weak() {
        return Err(CryptoError::BadPublicKey);
    }
    Ok(key)
}

/// Parses a signature's bytes.
pub fn parse_signature(bytes: &[u8]) -> Result<Signature, CryptoError> {
    let arr: [u8; SIGNATURE_LEN] = bytes
        .try_into()
        .map_err(|_| CryptoError::MalformedSignature(bytes.len()))?;
    Ok(Signature::from_bytes(&arr))
}

/// A fresh random signing key from the operating system's RNG.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// Signs `msg`.
pub fn sign(key: &SigningKey, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
    key.sign(msg).to_bytes()
}

/// Verifies one signature.
pub fn verify(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    let sig = parse_signature(sig)?;
    key.verify(msg, &sig).map_err(|_| CryptoError::BadSignature)
}

/// One signature to check in a batch.
#[derive(Debug, Clone, Copy)]
pub struct SignedMessage<'a> {
    /// The signer's key (already parsed, so already known not to be weak).
    pub key: &'a VerifyingKey,
    /// The exact bytes that were signed.
    pub msg: &'a [u8],
    /// The signature bytes as received.
    pub sig: &'a [u8],
}

/// Verifies all `items` at once; `Ok` only if every one verifies.
pub fn verify_batch(items: &[SignedMessage<'_>]) -> Result<(), CryptoError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut msgs = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for it in items {
        sigs.push(parse_signature(it.sig)?);
        msgs.push(it.msg);
        keys.push(*it.key);
    }
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).map_err(|_| CryptoError::BadSignature)
}

/// Verifies every item and says which ones are good: one batch check, and only when it
/// fails a single check of each item. The result never depends on how items are grouped,
/// because a failed batch is always settled by the single checks.
pub fn verify_each(items: &[SignedMessage<'_>]) -> Vec<bool> {
    if verify_batch(items).is_ok() {
        return vec![true; items.len()];
    }
    items
        .iter()
        .map(|it| verify(it.key, it.msg, it.sig).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let k = key(1);
        let sig = sign(&k, b"hello");
        assert_eq!(verify(&k.verifying_key(), b"hello", &sig), Ok(()));
        assert_eq!(
            verify(&k.verifying_key(), b"hellO", &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify(&k.verifying_key(), b"hello", &sig[..10]),
            Err(CryptoError::MalformedSignature(10))
        );
    }

    #[test]
    fn weak_and_malformed_keys_are_refused() {
        assert_eq!(parse_public_key(&[0u8; 31]), Err(CryptoError::BadPublicKey));
        // The identity point (small order) encodes as 1 followed by zeros.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(parse_public_key(&identity), Err(CryptoError::BadPublicKey));
        let good = key(3).verifying_key().to_bytes();
        assert!(parse_public_key(&good).is_ok());
    }

    #[test]
    fn batch_names_exactly_the_bad_signatures() {
        let keys: Vec<SigningKey> = (1..=5).map(key).collect();
        let vks: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
        let msgs: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 10]).collect();
        let mut sigs: Vec<[u8; 64]> = keys.iter().zip(&msgs).map(|(k, m)| sign(k, m)).collect();
        let items = |sigs: &Vec<[u8; 64]>| -> Vec<bool> {
            let v: Vec<SignedMessage<'_>> = (0..5)
                .map(|i| SignedMessage {
                    key: &vks[i],
                    msg: &msgs[i],
                    sig: &sigs[i],
                })
                .collect();
            verify_each(&v)
        };
        assert_eq!(items(&sigs), vec![true; 5]);
        sigs[3][5] ^= 1;
        assert_eq!(items(&sigs), vec![true, true, true, false, true]);
    }
}
