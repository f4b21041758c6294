//! Signed envelopes for tests.

use bytes::Bytes;
use prost::Message as _;

use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Envelope, HeaderType};

/// A signed MESSAGE envelope on `channel` from `id` with `payload` bytes of data (at least
/// 8) that start with `tag`, stamped now; with its tx id. Each call gets a fresh nonce,
/// so the same tag twice is two transactions.
pub fn message(id: &Identity, channel: &str, payload: usize, tag: u64) -> (Envelope, String) {
    let mut data = vec![0u8; payload.max(8)];
    data[..8].copy_from_slice(&tag.to_be_bytes());
    ordo_proto::envelope::create_signed(
        id,
        channel,
        HeaderType::Message,
        Bytes::from(data),
        ordo_proto::now_ms(),
    )
}

/// A signed MESSAGE envelope whose every byte follows from `n`: the nonce is `n`, the data
/// `size` bytes of `x`, the timestamp 1. Engine transcripts and simulations name
/// envelopes this way and get the same tx ids on every run. Encoded, with its tx id.
pub fn numbered(id: &Identity, channel: &str, n: u64, size: usize) -> (Bytes, String) {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    let (env, tx_id) = ordo_proto::envelope::create_signed_with_nonce(
        id,
        channel,
        HeaderType::Message,
        Bytes::from(vec![b'x'; size]),
        1,
        &nonce,
    );
    (Bytes::from(env.encode_to_vec()), tx_id)
}

/// The `n`-th envelope of a simulation run of `seed`: nonce and data follow from both, the
/// timestamp is 1, so every run of a seed submits the same bytes and different runs never
/// share a tx id.
pub fn seeded(id: &Identity, channel: &str, seed: u64, n: u64) -> (Envelope, String) {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(&seed.to_be_bytes());
    nonce[8..16].copy_from_slice(&n.to_be_bytes());
    ordo_proto::envelope::create_signed_with_nonce(
        id,
        channel,
        HeaderType::Message,
        Bytes::from(format!("envelope {n} of seed {seed}")),
        1,
        &nonce,
    )
}
