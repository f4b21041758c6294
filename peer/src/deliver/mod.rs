//! The deliver client: follows one channel on the ordering service, verifies every block,
//! and hands only verified blocks, in order, to a [`BlockSink`] (the committer).
//!
//! # Layout
//!
//! The loop itself — which orderer next, backoff, verification, the sink's contract —
//! is [`ordo_sdk::pull`], shared with the orderers' catch-up; this module is its
//! deliver-client side:
//!
//! - [`follow`] opens Deliver streams on the channel's orderers (signed by the peer's
//!   identity, from the verifier's next block, no stop, BLOCK_UNTIL_READY) and runs the
//!   pull with the peer's policy: retry forever with jittered backoff
//!   ([`DeliverConfig::backoff_base_ms`] up to [`DeliverConfig::backoff_max_ms`]), avoid
//!   an orderer that served a block failing verification for
//!   [`DeliverConfig::avoid_ms`], take the channel's orderer endpoints
//!   (`orderer.consenters[*].endpoint` of the configuration in force) ahead of the
//!   peer's static ones.
//!
//! # The flow
//!
//! For each block that arrives:
//!
//! 1. the [`ChainVerifier`] checks it — number, hash chain, Merkle data hash, last-config
//!    metadata and the orderer signatures against the BlockValidation policy of the
//!    configuration in force (a config block changes that configuration, and with it the
//!    endpoint list, from the next block on);
//! 2. only if it verifies, `sink.deliver(block)` takes it; after that the sink's
//!    [`BlockSink::next_number`] must be the next block's number.
//!
//! A block that fails verification is never delivered: the client logs a warning with
//! the endpoint and the reason, counts it, drops the stream, avoids that endpoint and
//! reconnects (elsewhere when it can) from the same block. Any other end of a stream —
//! an end status (the request names no stop block, so even SUCCESS is unexpected), a
//! transport error, a connection that cannot be opened within
//! [`DeliverConfig::connect_timeout_ms`], or no message for
//! [`DeliverConfig::idle_timeout_ms`] — waits a backoff delay (none when the stream had
//! delivered blocks) and reconnects to the next endpoint.
//!
//! # Limits
//!
//! One stream at a time; one block in hand at a time (the next message is not read
//! before the sink took the current block, so a slow sink slows the stream through
//! HTTP/2 flow control rather than filling memory); messages above
//! [`DeliverConfig::max_message_bytes`] are refused by the gRPC decoder.
//!
//! # Shutdown
//!
//! `follow` returns `Ok(())` when the shutdown token is cancelled. It watches the token
//! only while it waits on the network or on a backoff timer, never while the sink holds
//! a block: a `deliver` future is always polled to completion, so a committer never sees
//! a block half taken.
//!
//! # Quiet channels
//!
//! The orderer sends nothing while a channel has no new blocks, so the idle timeout
//! cannot tell a quiet channel from a stalled orderer: on a quiet channel the client
//! reconnects once per idle timeout. That costs a signed request and resumes from the
//! same block; the default timeout is long enough to make it negligible.

mod fetch;
mod follow;

use std::sync::Arc;

use ordo_proto::identity::Identity;
use ordo_proto::verify::ChainVerifier;
use thiserror::Error;

pub use fetch::{fetch_block, FetchError};
pub use follow::follow;
/// The sink's contract and the counters are the shared pull's; a deliver client's
/// counters keep their name here.
pub use ordo_sdk::pull::{
    channel_endpoints, BlockSink, PullCounts as DeliverCounts, PullError,
    PullStats as DeliverStats, SinkError,
};

/// Smallest accepted [`DeliverConfig::max_message_bytes`]: 1 MiB.
pub const MIN_MESSAGE_BYTES: usize = 1024 * 1024;

/// The deliver client's tunables. Every field has a default that suits a single-machine
/// network as well as a consortium's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverConfig {
    /// Backoff before the first reconnection after a good block, in milliseconds; each
    /// further consecutive failure doubles it. Must be positive. Default: 100.
    pub backoff_base_ms: u64,
    /// Largest backoff, in milliseconds; at least `backoff_base_ms`. Default: 10,000.
    pub backoff_max_ms: u64,
    /// How long an endpoint that served a block failing verification is avoided, in
    /// milliseconds. Default: 300,000 (5 minutes).
    pub avoid_ms: u64,
    /// How long a stream may stay silent before the client gives up on it and
    /// reconnects, in milliseconds (see "Quiet channels" in the module docs). Must be
    /// positive. Default: 60,000.
    pub idle_timeout_ms: u64,
    /// How long connecting and opening the Deliver stream may take, in milliseconds.
    /// Must be positive. Default: 5,000.
    pub connect_timeout_ms: u64,
    /// Largest gRPC message accepted from an orderer, in bytes; at least
    /// [`MIN_MESSAGE_BYTES`]. Default: [`ordo_sdk::orderer::MAX_GRPC_MESSAGE_BYTES`]
    /// (80 MiB, above the largest allowed block).
    pub max_message_bytes: usize,
}

impl Default for DeliverConfig {
    fn default() -> Self {
        Self {
            backoff_base_ms: 100,
            backoff_max_ms: 10_000,
            avoid_ms: 300_000,
            idle_timeout_ms: 60_000,
            connect_timeout_ms: 5_000,
            max_message_bytes: ordo_sdk::orderer::MAX_GRPC_MESSAGE_BYTES,
        }
    }
}

impl DeliverConfig {
    /// Checks each field and the relations between them.
    pub fn validate(&self) -> Result<(), DeliverError> {
        let invalid = |m: String| Err(DeliverError::Config(m));
        if self.backoff_base_ms == 0 {
            return invalid("backoff_base_ms must be positive".into());
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            return invalid(format!(
                "backoff_max_ms ({}) is below backoff_base_ms ({})",
                self.backoff_max_ms, self.backoff_base_ms
            ));
        }
        if self.idle_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return invalid("idle_timeout_ms and connect_timeout_ms must be positive".into());
        }
        if self.max_message_bytes < MIN_MESSAGE_BYTES {
            return invalid(format!(
                "max_message_bytes ({}) is below {MIN_MESSAGE_BYTES}",
                self.max_message_bytes
            ));
        }
        Ok(())
    }
}

/// Everything [`follow`] needs besides the sink and the shutdown token.
#[derive(Debug)]
pub struct FollowOptions {
    /// The channel to follow.
    pub channel_id: String,
    /// The peer's identity; it signs the Deliver requests, so the channel's Readers
    /// policy must admit it.
    pub identity: Identity,
    /// Verifies the chain; its next block must be the sink's. Build it with
    /// [`ChainVerifier::new`] to follow from the genesis block, or with
    /// [`ChainVerifier::resume`] from the sink's height (last block hash and the
    /// configuration in force) — then its configuration also supplies the channel's
    /// orderer endpoints.
    pub verifier: ChainVerifier,
    /// Orderer endpoints (`host:port`) from the peer's own configuration, tried after
    /// the channel's. Needed when following from genesis, when the configuration names
    /// none yet.
    pub static_endpoints: Vec<String>,
    /// Timeouts, backoff and limits.
    pub config: DeliverConfig,
    /// Seeds the backoff jitter. [`FollowOptions::new`] derives it from the identity's
    /// certificate and the channel id, so runs replay while different peers still spread
    /// their reconnects apart.
    pub jitter_seed: u64,
    /// Where `follow` counts; keep a clone of the `Arc` to read it.
    pub stats: Arc<DeliverStats>,
    /// How the orderers are reached (the peer's TLS client, or plaintext). Default:
    /// plaintext.
    pub transport: ordo_sdk::transport::Transport,
}

impl FollowOptions {
    /// Options with the default [`DeliverConfig`], no static endpoints, fresh stats and a
    /// jitter seed derived from `identity` and `channel_id`.
    pub fn new(channel_id: impl Into<String>, identity: Identity, verifier: ChainVerifier) -> Self {
        let channel_id = channel_id.into();
        let mut seed_input = identity.cert_bytes().to_vec();
        seed_input.extend_from_slice(channel_id.as_bytes());
        let digest = ordo_proto::hash::sha256(&seed_input);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        Self {
            channel_id,
            identity,
            verifier,
            static_endpoints: Vec::new(),
            config: DeliverConfig::default(),
            jitter_seed: u64::from_be_bytes(seed),
            stats: Arc::new(DeliverStats::new()),
            transport: Default::default(),
        }
    }
}

/// Why [`follow`] stopped. Failures of orderers are not errors — the client fails over
/// and retries; these are the conditions it cannot repair.
#[derive(Debug, Error)]
pub enum DeliverError {
    /// The [`DeliverConfig`] is not valid.
    #[error("invalid deliver configuration: {0}")]
    Config(String),
    /// No orderer endpoint is known: the configuration in force names none and no static
    /// endpoint was given.
    #[error("channel {channel:?}: no orderer endpoint known")]
    NoEndpoints {
        /// The channel.
        channel: String,
    },
    /// The shared pull stopped: the sink failed or got out of step with the verifier
    /// ([`PullError::Sink`], [`PullError::SinkOutOfStep`]), or verification could not run.
    /// (The deliver client's policy neither gives up nor treats a bad block as fatal.)
    #[error(transparent)]
    Pull(PullError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid_and_bad_ones_are_refused() {
        DeliverConfig::default()
            .validate()
            .expect("defaults are valid");
        let bad = [
            DeliverConfig {
                backoff_base_ms: 0,
                ..Default::default()
            },
            DeliverConfig {
                backoff_max_ms: 50,
                ..Default::default()
            },
            DeliverConfig {
                idle_timeout_ms: 0,
                ..Default::default()
            },
            DeliverConfig {
                connect_timeout_ms: 0,
                ..Default::default()
            },
            DeliverConfig {
                max_message_bytes: 1000,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(DeliverError::Config(_))),
                "{c:?} should be refused"
            );
        }
    }
}
