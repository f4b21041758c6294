//! Checking a channel's chain block by block, as a reader that trusts only the genesis
//! block: the hash chain, each block's Merkle data hash, its last-config metadata, and the
//! orderer signatures against the BlockValidation policy of the configuration in force —
//! which config blocks change as the chain goes.
//!
//! Used by `ordo block verify` and by a peer's deliver client before it commits anything.

use thiserror::Error;

use crate::block::{self, BlockError, GENESIS_PREVIOUS_HASH};
use crate::cert::Msp;
use crate::config::{self, ConfigError};
use crate::hash::Hash;
use crate::pb::common::{Block, ChannelConfig, Policy};

/// Why a block was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// Structure, chain link, data hash or signatures.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// Block 0 is not a genesis (config) block, or a config block carries a bad config.
    #[error("block {number}: {source}")]
    Config {
        /// The block.
        number: u64,
        /// What is wrong with its configuration.
        source: ConfigError,
    },
    /// The last-config metadata does not name the config block in force.
    #[error("block {number}: last config {found} but the last config block is {expected}")]
    LastConfig {
        /// The block.
        number: u64,
        /// What it claims.
        found: u64,
        /// What the chain says.
        expected: u64,
    },
    /// The configuration in force has no BlockValidation policy.
    #[error("block {number}: the configuration in force has no BlockValidation policy")]
    NoPolicy {
        /// The block.
        number: u64,
    },
}

/// The configuration a verifier checks signatures against.
#[derive(Debug, Clone)]
struct InForce {
    msp: Msp,
    policy: Policy,
    config: ChannelConfig,
    block: u64,
}

/// Verifies a chain one block at a time; see the module docs.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next: u64,
    prev: Hash,
    in_force: Option<InForce>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting the genesis block.
    pub fn new() -> Self {
        Self {
            next: 0,
            prev: GENESIS_PREVIOUS_HASH,
            in_force: None,
        }
    }

    /// A verifier resuming after block `next - 1` (whose hash is `prev`), with `config`
    /// (held in block `config_block`) in force: how a restarted peer continues.
    pub fn resume(
        next: u64,
        prev: Hash,
        config: ChannelConfig,
        config_block: u64,
    ) -> Result<Self, VerifyError> {
        let mut v = Self {
            next,
            prev,
            in_force: None,
        };
        v.apply(config, config_block)?;
        Ok(v)
    }

    /// The number of the block expected next.
    pub fn next_number(&self) -> u64 {
        self.next
    }

    /// The configuration in force (after the genesis block).
    pub fn config(&self) -> Option<&ChannelConfig> {
        self.in_force.as_ref().map(|f| &f.config)
    }

    /// Checks the next block at time `now_secs` (for certificate validity) and advances.
    /// Nothing changes when it fails.
    pub fn check(&mut self, b: &Block, now_secs: u64) -> Result<(), VerifyError> {
        let number = self.next;
        block::check_structure(b, Some((number, &self.prev)))?;
        let new_config = config::config_from_block(b).ok();
        if number == 0 {
            let cfg = config::config_from_block(b)
                .map_err(|source| VerifyError::Config { number, source })?;
            self.apply(cfg, 0)?;
        } else {
            let in_force = self
                .in_force
                .as_ref()
                .ok_or(VerifyError::NoPolicy { number })?;
            let found = b.metadata.as_ref().map(|m| m.last_config).unwrap_or(0);
            let expected = if new_config.is_some() {
                number
            } else {
                in_force.block
            };
            if found != expected {
                return Err(VerifyError::LastConfig {
                    number,
                    found,
                    expected,
                });
            }
            block::verify_signatures(b, &in_force.msp, &in_force.policy, now_secs)?;
            if let Some(cfg) = &new_config {
                let want = in_force.config.sequence + 1;
                if cfg.sequence != want {
                    return Err(VerifyError::Config {
                        number,
                        source: ConfigError::Invalid(format!(
                            "config sequence {} (expected {want})",
                            cfg.sequence
                        )),
                    });
                }
            }
            if let Some(cfg) = new_config {
                self.apply(cfg, number)?;
            }
        }
        self.prev = block::hash(b);
        self.next += 1;
        Ok(())
    }

    fn apply(&mut self, config: ChannelConfig, number: u64) -> Result<(), VerifyError> {
        let msp = Msp::from_config(&config).map_err(|e| VerifyError::Config {
            number,
            source: ConfigError::Invalid(e.to_string()),
        })?;
        let policy = config
            .block_validation
            .clone()
            .ok_or(VerifyError::NoPolicy { number })?;
        self.in_force = Some(InForce {
            msp,
            policy,
            config,
            block: number,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Enrollment, Identity};
    use crate::pb::common::{AckMode, BatchSize, OrdererConfig, Organization, Role};
    use crate::policy::build as policy;
    use bytes::Bytes;
    use ed25519_dalek::SigningKey;
    use prost::Message;

    fn member(ca: &SigningKey, role: Role, seed: u8) -> Identity {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let enrollment = Enrollment::new("A", role, &seed.to_string())
            .serial(u64::from(seed))
            .valid(0, 10_000);
        Identity::enroll(ca, key, &enrollment)
    }

    fn config(ca: &SigningKey, sequence: u64, validators: Role) -> ChannelConfig {
        ChannelConfig {
            channel_id: "v".into(),
            sequence,
            orgs: vec![Organization {
                name: "A".into(),
                root_public_keys: vec![ca.verifying_key().to_bytes().to_vec().into()],
                ..Default::default()
            }],
            orderer: Some(OrdererConfig {
                consensus_type: "solo".into(),
                batch_size: Some(BatchSize {
                    max_message_count: 10,
                    absolute_max_bytes: 1 << 20,
                    preferred_max_bytes: 1 << 19,
                }),
                batch_timeout_ms: 100,
                ack_mode: AckMode::Enqueued as i32,
                ..Default::default()
            }),
            readers: Some(policy::any_member(&[], &[])),
            writers: Some(policy::any_member(&[], &[])),
            admins: Some(policy::any_member(&[], &[Role::Admin])),
            block_validation: Some(policy::any_member(&[], &[validators])),
            chaincodes: vec![],
        }
    }

    /// A chain: genesis (orderers validate), 2 blocks, a config block switching
    /// BlockValidation to peers, then a block signed by a peer.
    fn chain() -> (Vec<Block>, ChannelConfig) {
        let ca = SigningKey::from_bytes(&[1; 32]);
        let orderer = member(&ca, Role::Orderer, 2);
        let peer = member(&ca, Role::Peer, 3);
        let genesis = config::genesis_block(&config(&ca, 0, Role::Orderer), 0).expect("genesis");
        let mut blocks = vec![genesis];
        for i in 1..3u64 {
            let mut b = block::build(
                i,
                block::hash(&blocks[i as usize - 1]),
                vec![Bytes::from(vec![i as u8; 10])],
            );
            block::sign_at(&mut b, &orderer, 0, Bytes::new(), 100_000);
            blocks.push(b);
        }
        let next = config(&ca, 1, Role::Peer);
        let env_bytes = config_envelope(&next);
        let mut b3 = block::build(3, block::hash(&blocks[2]), vec![env_bytes]);
        block::sign_at(&mut b3, &orderer, 3, Bytes::new(), 100_000);
        blocks.push(b3);
        let mut b4 = block::build(
            4,
            block::hash(&blocks[3]),
            vec![Bytes::from_static(b"after")],
        );
        block::sign_at(&mut b4, &peer, 3, Bytes::new(), 100_000);
        blocks.push(b4);
        (blocks, next)
    }

    fn config_envelope(cfg: &ChannelConfig) -> Bytes {
        use crate::pb::common::{ConfigEnvelope, Envelope, Header, HeaderType, Payload};
        let data = ConfigEnvelope {
            config: cfg.encode_to_vec().into(),
            last_update: Bytes::new(),
        };
        let header = Header {
            channel_id: cfg.channel_id.clone(),
            r#type: HeaderType::Config as i32,
            ..Default::default()
        };
        let payload = Payload {
            header: Some(header),
            data: data.encode_to_vec().into(),
        };
        Envelope {
            payload: payload.encode_to_vec().into(),
            signature: Bytes::new(),
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn a_config_block_must_advance_the_sequence_by_one() {
        let (blocks, next) = chain();
        let mut v = ChainVerifier::new();
        for b in &blocks[..3] {
            v.check(b, 100).expect("verifies");
        }
        let ca = SigningKey::from_bytes(&[1; 32]);
        let mut b3 = block::build(
            3,
            block::hash(&blocks[2]),
            vec![config_envelope(&ChannelConfig {
                sequence: 5,
                ..next
            })],
        );
        block::sign_at(
            &mut b3,
            &member(&ca, Role::Orderer, 2),
            3,
            Bytes::new(),
            100_000,
        );
        assert!(matches!(
            v.check(&b3, 100),
            Err(VerifyError::Config { number: 3, .. })
        ));
    }

    #[test]
    fn a_chain_verifies_and_config_blocks_switch_the_policy() {
        let (blocks, _) = chain();
        let mut v = ChainVerifier::new();
        for b in &blocks {
            v.check(b, 100).expect("verifies");
        }
        assert_eq!(v.next_number(), 5);
        // Block 4 signed by the orderer would now fail: peers validate after block 3.
        let mut v = ChainVerifier::new();
        for b in &blocks[..4] {
            v.check(b, 100).expect("verifies");
        }
        let ca = SigningKey::from_bytes(&[1; 32]);
        let mut forged = blocks[4].clone();
        if let Some(md) = forged.metadata.as_mut() {
            md.signatures.clear();
        }
        block::sign_at(
            &mut forged,
            &member(&ca, Role::Orderer, 2),
            3,
            Bytes::new(),
            100_000,
        );
        assert!(matches!(
            v.check(&forged, 100),
            Err(VerifyError::Block(BlockError::Signatures { number: 4, .. }))
        ));
        assert_eq!(v.next_number(), 4, "a refused block changes nothing");
    }

    #[test]
    fn wrong_last_config_and_expired_signers_are_refused() {
        let (blocks, _) = chain();
        let mut v = ChainVerifier::new();
        v.check(&blocks[0], 100).expect("genesis");
        let ca = SigningKey::from_bytes(&[1; 32]);
        let mut b = blocks[1].clone();
        if let Some(md) = b.metadata.as_mut() {
            md.signatures.clear();
        }
        block::sign_at(
            &mut b,
            &member(&ca, Role::Orderer, 2),
            7,
            Bytes::new(),
            100_000,
        );
        assert_eq!(
            v.check(&b, 100),
            Err(VerifyError::LastConfig {
                number: 1,
                found: 7,
                expected: 0
            })
        );
        // Signed after the orderer's certificate expired (not_after 10,000 s): refused.
        let mut late = blocks[1].clone();
        if let Some(md) = late.metadata.as_mut() {
            md.signatures.clear();
        }
        block::sign_at(
            &mut late,
            &member(&ca, Role::Orderer, 2),
            0,
            Bytes::new(),
            20_000_000,
        );
        assert!(matches!(
            v.check(&late, 20_000),
            Err(VerifyError::Block(BlockError::Signatures { .. }))
        ));
        // Stamped far in the verifier's future: refused.
        let mut future = blocks[1].clone();
        if let Some(md) = future.metadata.as_mut() {
            md.signatures.clear();
        }
        block::sign_at(
            &mut future,
            &member(&ca, Role::Orderer, 2),
            0,
            Bytes::new(),
            5_000_000,
        );
        assert!(matches!(
            v.check(&future, 100),
            Err(VerifyError::Block(BlockError::Signatures { .. }))
        ));
        // Signed while the certificate was valid: still verifies long after it expired.
        v.check(&blocks[1], 1_000_000)
            .expect("verifiable after expiry");
    }

    #[test]
    fn resume_continues_where_a_node_stopped() {
        let (blocks, next) = chain();
        let mut v = ChainVerifier::resume(4, block::hash(&blocks[3]), next, 3).expect("resume");
        v.check(&blocks[4], 100).expect("block 4 after resuming");
        let mut v = ChainVerifier::resume(
            4,
            [9; 32],
            config(&SigningKey::from_bytes(&[1; 32]), 1, Role::Peer),
            3,
        )
        .expect("resume");
        assert!(matches!(
            v.check(&blocks[4], 100),
            Err(VerifyError::Block(BlockError::BrokenChain { .. }))
        ));
    }
}
