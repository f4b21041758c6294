//! Whether a CONFIG envelope follows from the configuration in force: the one check
//! that peers run on every config block and Kafka orderers run on every config envelope
//! they consume, so that neither a faulty orderer nor anyone else who can write to the
//! ordering service can rewrite a channel on their own.
//!
//! A change is accepted when the envelope carries a valid configuration for the same
//! channel, with the next sequence number and the same consensus type, whose chaincode
//! definitions follow the lifecycle rules ([`check_definitions`]), and its `last_update`
//! is a CONFIG_UPDATE for this channel proposing exactly these configuration bytes, signed
//! by enough admins to satisfy the current policy for such a change
//! ([`authorizing_policy`]: Lifecycle for a change to chaincode definitions alone, Admins
//! otherwise). Admin certificates are checked at the update's own signed creation time,
//! never a clock, so every node reaches the same verdict whenever it checks.
//!
//! The orderer applies the same two functions to a CONFIG_UPDATE before ordering it
//! (`ordo_consensus::configtx`), so a change refused here never reaches a block from an
//! honest orderer.

use bytes::Bytes;
use prost::Message;
use thiserror::Error;

use crate::cert::Msp;
use crate::config;
use crate::envelope;
use crate::pb::common::{
    ChaincodeDefinition, ChannelConfig, ConfigEnvelope, ConfigUpdate, HeaderType, Payload, Policy,
};
use crate::policy;

/// Why a config change does not follow from the configuration in force.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChangeError {
    /// The envelope is not a well-formed CONFIG envelope with a valid configuration.
    #[error("{0}")]
    Malformed(String),
    /// The configuration is for another channel.
    #[error("config for channel {got:?} on channel {channel:?}")]
    WrongChannel {
        /// The channel the configuration names.
        got: String,
        /// The channel it was ordered on.
        channel: String,
    },
    /// The sequence is not the current one plus one (a stale or replayed change).
    #[error("config sequence {got} where {expected} was expected")]
    Sequence {
        /// The sequence in the envelope.
        got: u64,
        /// Current sequence + 1.
        expected: u64,
    },
    /// The change switches the consensus type, which a running channel cannot do.
    #[error("consensus type cannot change ({from} -> {to})")]
    ConsensusType {
        /// The type in force.
        from: String,
        /// The proposed type.
        to: String,
    },
    /// The chaincode definitions break a lifecycle rule ([`check_definitions`]).
    #[error("chaincode lifecycle: {0}")]
    Lifecycle(String),
    /// The update behind the change is missing, foreign or not signed by enough admins.
    #[error("last update: {0}")]
    Unauthorized(String),
}

/// The lifecycle rules, from the definitions in force (`current`) to the proposed ones:
///
/// - a definition is never removed (retire it: `retired`, with the next sequence);
/// - a definition that changes at all (version, policy, runtime, retirement) carries the
///   next sequence: the one in force plus one;
/// - a new name starts at sequence 1, not retired.
///
/// So every sequence number names exactly one definition of a chaincode, and a
/// transaction endorsed under one is recognised as superseded after any change.
pub fn check_definitions(current: &ChannelConfig, proposed: &ChannelConfig) -> Result<(), String> {
    for old in &current.chaincodes {
        if !proposed.chaincodes.iter().any(|d| d.name == old.name) {
            return Err(format!(
                "chaincode {:?} cannot be removed; retire it instead (retired, sequence {})",
                old.name,
                effective_sequence(old) + 1
            ));
        }
    }
    for new in &proposed.chaincodes {
        match current.chaincodes.iter().find(|d| d.name == new.name) {
            Some(old) if old == new => {}
            Some(old) => {
                let next = effective_sequence(old) + 1;
                if new.sequence != next {
                    return Err(format!(
                        "chaincode {:?} changes, so its definition sequence must be {next} (the \
                         one in force, {}, plus one), not {}",
                        new.name,
                        effective_sequence(old),
                        new.sequence
                    ));
                }
            }
            None => {
                if new.sequence != 1 || new.retired {
                    return Err(format!(
                        "new chaincode {:?} must start at definition sequence 1, not retired \
                         (got sequence {}{})",
                        new.name,
                        new.sequence,
                        if new.retired { ", retired" } else { "" }
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A definition's sequence, counting the 0 of configurations made before the lifecycle
/// as the first definition.
pub fn effective_sequence(def: &ChaincodeDefinition) -> u64 {
    def.sequence.max(1)
}

/// The policy whose signatures a change from `current` to `proposed` needs, with its
/// name: the Lifecycle policy when the change touches chaincode definitions alone and the
/// channel has one; the Admins policy otherwise.
pub fn authorizing_policy<'a>(
    current: &'a ChannelConfig,
    proposed: &ChannelConfig,
) -> Result<(&'static str, &'a Policy), String> {
    let mut rest = proposed.clone();
    rest.chaincodes.clone_from(&current.chaincodes);
    rest.sequence = current.sequence;
    let definitions_only = rest == *current && proposed.chaincodes != current.chaincodes;
    match (&current.lifecycle, definitions_only) {
        (Some(lifecycle), true) => Ok(("Lifecycle", lifecycle)),
        _ => current
            .admins
            .as_ref()
            .map(|p| ("Admins", p))
            .ok_or_else(|| "the channel has no Admins policy".to_string()),
    }
}

/// The configuration in force, as the check needs it.
pub struct CurrentConfig<'a> {
    /// The configuration.
    pub config: &'a ChannelConfig,
    /// Its membership service (org roots).
    pub msp: &'a Msp,
    /// Its org names, in configuration order.
    pub org_names: &'a [String],
}

/// Checks a CONFIG envelope (any block but the genesis one) against the configuration in
/// force; returns the new configuration and the envelope's tx id.
pub fn check(
    current: &CurrentConfig<'_>,
    envelope_bytes: &[u8],
) -> Result<(ChannelConfig, String), ChangeError> {
    let malformed = |e: &dyn std::fmt::Display| ChangeError::Malformed(e.to_string());
    let proposed = config::config_from_envelope(envelope_bytes).map_err(|e| malformed(&e))?;
    let env = envelope::decode(envelope_bytes).map_err(|e| malformed(&e))?;
    let payload = Payload::decode(env.payload).map_err(|e| malformed(&e))?;
    let tx_id = payload.header.map(|h| h.tx_id).unwrap_or_default();
    if proposed.channel_id != current.config.channel_id {
        return Err(ChangeError::WrongChannel {
            got: proposed.channel_id,
            channel: current.config.channel_id.clone(),
        });
    }
    let expected = current.config.sequence.saturating_add(1);
    if proposed.sequence != expected {
        return Err(ChangeError::Sequence {
            got: proposed.sequence,
            expected,
        });
    }
    let consensus = |c: &ChannelConfig| {
        c.orderer
            .as_ref()
            .map(|o| o.consensus_type.clone())
            .unwrap_or_default()
    };
    let (from, to) = (consensus(current.config), consensus(&proposed));
    if from != to {
        return Err(ChangeError::ConsensusType { from, to });
    }
    check_definitions(current.config, &proposed).map_err(ChangeError::Lifecycle)?;
    let ce = ConfigEnvelope::decode(payload.data).map_err(|e| malformed(&e))?;
    check_update(current, &proposed, &ce.config, &ce.last_update)
        .map_err(ChangeError::Unauthorized)?;
    Ok((proposed, tx_id))
}

/// The CONFIG_UPDATE behind a change: for this channel, proposing exactly
/// `config_bytes`, signed by the admins the [`authorizing_policy`] requires.
fn check_update(
    current: &CurrentConfig<'_>,
    proposed: &ChannelConfig,
    config_bytes: &Bytes,
    last_update: &Bytes,
) -> Result<(), String> {
    let env = envelope::decode(last_update).map_err(|e| e.to_string())?;
    let unpacked = envelope::unpack(&env).map_err(|e| e.to_string())?;
    if unpacked.header_type != HeaderType::ConfigUpdate {
        return Err(format!(
            "header type {}",
            unpacked.header_type.as_str_name()
        ));
    }
    if unpacked.header.channel_id != current.config.channel_id {
        return Err("for another channel".into());
    }
    let update_time_secs = unpacked.header.timestamp_ms / 1000;
    let update = ConfigUpdate::decode(unpacked.data).map_err(|e| format!("config update: {e}"))?;
    if update.config != config_bytes {
        return Err("config differs from the one the update proposed".into());
    }
    let (name, needed) = authorizing_policy(current.config, proposed)?;
    let signers = current.msp.verified_signers(
        &update.config,
        update
            .signatures
            .iter()
            .map(|s| (s.signer.as_ref(), s.signature.as_ref())),
        update_time_secs,
    );
    policy::evaluate(needed, &signers, current.org_names).map_err(|e| format!("{name} policy: {e}"))
}

#[cfg(test)]
mod tests;
