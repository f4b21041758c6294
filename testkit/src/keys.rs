//! Keys for tests: fixed by a seed where a run must be reproducible (engine transcripts,
//! simulations), fresh from the OS where tests must not collide.

use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The key whose 32 secret bytes are all `byte`: the fixtures of transcript tests, which
/// name their keys by a small number.
pub fn fixed(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32])
}

/// A key derived from a run's `seed` and a `purpose` (which member it is): every run of
/// a seed has the same keys, and different purposes get unrelated keys.
pub fn seeded(seed: u64, purpose: u64) -> SigningKey {
    let mut rng = StdRng::seed_from_u64(seed ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    SigningKey::from_bytes(&rng.gen())
}

/// A fresh random key (the OS's randomness).
pub fn random() -> SigningKey {
    ordo_proto::crypto::generate_signing_key()
}
