//! Ed25519 signatures: signing, single verification and batch verification.
//!
//! **What is signed.** Every Ordo signature is an Ed25519 signature over the 32-byte
//! SHA-256 digest of the signed bytes, never over the bytes themselves. Ed25519 hashes its
//! message with SHA-512 (twice when signing); for a 1 KiB envelope that is most of the
//! hashing cost, while SHA-256 runs in hardware on current x86 and ARM CPUs. Every verifier
//! checks a signature once, every signer signs once, so this is paid everywhere.
//!
//! Verification is **cofactored** (ZIP-215 style): a signature `(R, s)` on `M` by `A` is
//! good when `[8]([s]B - [k]A - R)` is the identity, with `k = SHA-512(R || A || M)` and
//! `s` canonical. The single check and the batch check use this same equation, so a batch
//! accepts exactly what the single checks accept (up to a 2^-128 chance over the batch's
//! random weights). That matters for determinism: with the uncofactored equation of the
//! original paper, a signature whose `R` carries a small-order component fails the single
//! check but passes a random batch one time in eight, and two peers could disagree on a
//! transaction's validity depending on how its signatures happened to be grouped.
//!
//! Batch verification checks many signatures for roughly a third of the cost of checking
//! them one by one, and signatures by the same key share one term of the batch equation
//! (a busy client signs many envelopes of a batch). When a batch fails, [`verify_each`]
//! falls back to single checks to name the bad ones, so one bad signature costs its
//! sender, not everyone else in the batch. Weak (small-order) public keys are refused
//! everywhere, so no key can sign for "any message".

use std::collections::HashMap;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::Rng;
use sha2::{Digest, Sha256, Sha512};
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

/// The bytes Ed25519 actually signs for `msg`: its SHA-256 digest (module documentation).
fn signed_digest(msg: &[u8]) -> [u8; 32] {
    Sha256::digest(msg).into()
}

/// Signs `msg` (Ed25519 over its SHA-256 digest).
pub fn sign(key: &SigningKey, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
    key.sign(&signed_digest(msg)).to_bytes()
}

/// A signature split into the parts the verification equation uses.
struct SignatureParts {
    r: CompressedEdwardsY,
    s: Scalar,
}

impl SignatureParts {
    /// Splits `sig`, refusing a non-canonical `s` (which would make signatures malleable).
    fn parse(sig: &[u8]) -> Result<Self, CryptoError> {
        let sig: &[u8; SIGNATURE_LEN] = sig
            .try_into()
            .map_err(|_| CryptoError::MalformedSignature(sig.len()))?;
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&sig[..32]);
        s.copy_from_slice(&sig[32..]);
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s))
            .ok_or(CryptoError::BadSignature)?;
        Ok(Self {
            r: CompressedEdwardsY(r),
            s,
        })
    }
}

/// The challenge `k = SHA-512(R || A || SHA-256(msg)) mod l`.
fn challenge(r: &CompressedEdwardsY, key: &VerifyingKey, msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r.as_bytes());
    h.update(key.as_bytes());
    h.update(signed_digest(msg));
    let digest: [u8; 64] = h.finalize().into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

/// Verifies one signature (cofactored equation, see the module documentation).
pub fn verify(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    let parts = SignatureParts::parse(sig)?;
    let r = parts.r.decompress().ok_or(CryptoError::BadSignature)?;
    let k = challenge(&parts.r, key, msg);
    let minus_a = -key.to_edwards();
    // [k](-A) + [s]B - R
    let residue = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &minus_a, &parts.s) - r;
    if residue.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(CryptoError::BadSignature)
    }
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
///
/// Checks `[8]( -[sum z_i s_i]B + sum z_i R_i + sum_A [sum_{i by A} z_i k_i]A ) = 0` for
/// random 128-bit weights `z_i`: one multiscalar multiplication with one term per
/// signature plus one per distinct key.
pub fn verify_batch(items: &[SignedMessage<'_>]) -> Result<(), CryptoError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut rng = rand::thread_rng();
    let mut scalars: Vec<Scalar> = Vec::with_capacity(items.len() + 8);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(items.len() + 8);
    let mut key_slots: HashMap<[u8; PUBLIC_KEY_LEN], usize> = HashMap::new();
    let mut key_scalars: Vec<Scalar> = Vec::new();
    let mut key_points: Vec<EdwardsPoint> = Vec::new();
    let mut basepoint_scalar = Scalar::ZERO;
    for item in items {
        let parts = SignatureParts::parse(item.sig)?;
        let r = parts.r.decompress().ok_or(CryptoError::BadSignature)?;
        let k = challenge(&parts.r, item.key, item.msg);
        let z = Scalar::from(rng.gen::<u128>());
        basepoint_scalar -= z * parts.s;
        scalars.push(z);
        points.push(r);
        let slot = *key_slots.entry(item.key.to_bytes()).or_insert_with(|| {
            key_scalars.push(Scalar::ZERO);
            key_points.push(item.key.to_edwards());
            key_points.len() - 1
        });
        key_scalars[slot] += z * k;
    }
    scalars.push(basepoint_scalar);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    scalars.extend(key_scalars);
    points.extend(key_points);
    let sum = EdwardsPoint::vartime_multiscalar_mul(&scalars, &points);
    if sum.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(CryptoError::BadSignature)
    }
}

/// Verifies every item and says which ones are good: one batch check, and only when it
/// fails a single check of each item. The result never depends on how items are grouped:
/// the batch and the single check use the same (cofactored) equation, and a failed batch
/// is always settled by the single checks.
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
    fn signatures_are_plain_ed25519_over_the_sha256_digest() {
        use ed25519_dalek::Verifier;
        let k = key(2);
        let msg = b"an envelope payload";
        let sig = Signature::from_bytes(&sign(&k, msg));
        let digest: [u8; 32] = Sha256::digest(msg).into();
        assert!(k.verifying_key().verify(&digest, &sig).is_ok());
        assert!(k.verifying_key().verify(msg, &sig).is_err());
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

    /// A signature whose `R` carries an order-8 component `T`: `R = [r]B + T`,
    /// `s = r + k·a`, so `[s]B - [k]A - R = -T`. The cofactored equation accepts it;
    /// what matters is that every check agrees, however the signature is batched (the
    /// uncofactored batch equation would pass it one time in eight).
    fn torsioned_signature(signer: &SigningKey, msg: &[u8], s_offset: u64) -> [u8; 64] {
        let a = signer.to_scalar();
        let r = Scalar::from(0x1234_5678_9abc_def0_u64);
        let big_r = EdwardsPoint::mul_base(&r) + curve25519_dalek::constants::EIGHT_TORSION[1];
        let big_r = big_r.compress();
        let k = challenge(&big_r, &signer.verifying_key(), msg);
        let s = r + k * a + Scalar::from(s_offset);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    #[test]
    fn single_and_batch_agree_on_small_order_components() {
        let signer = key(7);
        let vk = signer.verifying_key();
        let honest_key = key(8);
        let honest_vk = honest_key.verifying_key();
        let honest_sig = sign(&honest_key, b"honest");
        for (offset, expected) in [(0u64, true), (1u64, false)] {
            let odd = torsioned_signature(&signer, b"odd", offset);
            assert_eq!(verify(&vk, b"odd", &odd).is_ok(), expected);
            // Random batch weights: 64 tries would hit a multiple of 8 with certainty
            // for a lenient equation; every verdict must still match the single check.
            for _ in 0..64 {
                let batch = [
                    SignedMessage {
                        key: &honest_vk,
                        msg: b"honest",
                        sig: &honest_sig,
                    },
                    SignedMessage {
                        key: &vk,
                        msg: b"odd",
                        sig: &odd,
                    },
                ];
                assert_eq!(verify_batch(&batch).is_ok(), expected);
                assert_eq!(verify_each(&batch), vec![true, expected]);
            }
        }
    }

    #[test]
    fn non_canonical_s_is_refused() {
        let k = key(9);
        let mut sig = sign(&k, b"m");
        // s + l encodes the same scalar mod l but is not canonical (malleability).
        let s = Scalar::from_canonical_bytes(sig[32..].try_into().expect("32 bytes"))
            .expect("canonical");
        let l_bytes: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut sum = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s.as_bytes()[i]) + u16::from(l_bytes[i]) + carry;
            sum[i] = v as u8;
            carry = v >> 8;
        }
        sig[32..].copy_from_slice(&sum);
        let vk = k.verifying_key();
        assert_eq!(verify(&vk, b"m", &sig), Err(CryptoError::BadSignature));
        let batch = [SignedMessage {
            key: &vk,
            msg: b"m",
            sig: &sig,
        }];
        assert_eq!(verify_each(&batch), vec![false]);
    }

    #[test]
    fn batches_sharing_keys_name_the_bad_signature() {
        let signers: Vec<SigningKey> = (20..23).map(key).collect();
        let vks: Vec<VerifyingKey> = signers.iter().map(|k| k.verifying_key()).collect();
        let msgs: Vec<Vec<u8>> = (0..30).map(|i| vec![i as u8; 40]).collect();
        let mut sigs: Vec<[u8; 64]> = (0..30).map(|i| sign(&signers[i % 3], &msgs[i])).collect();
        let check = |sigs: &Vec<[u8; 64]>| {
            let batch: Vec<SignedMessage<'_>> = (0..30)
                .map(|i| SignedMessage {
                    key: &vks[i % 3],
                    msg: &msgs[i],
                    sig: &sigs[i],
                })
                .collect();
            verify_each(&batch)
        };
        assert_eq!(check(&sigs), vec![true; 30]);
        // A valid signature by the wrong key of the batch is still refused.
        sigs[4] = sign(&signers[0], &msgs[4]);
        let mut expected = vec![true; 30];
        expected[4] = false;
        assert_eq!(check(&sigs), expected);
    }
}
