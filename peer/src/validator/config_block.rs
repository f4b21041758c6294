//! Config blocks: one CONFIG envelope, alone in its block, that replaces the channel
//! configuration from the next block on.
//!
//! The orderer already validated the change, and the block's orderer signatures were
//! checked before validation; the peer checks again that the change follows from the
//! configuration in force, so that a faulty orderer alone cannot rewrite a channel:
//!
//! - the configuration is well formed and for this channel (`ordo_proto::config`);
//! - in the genesis block (number 0) its sequence is 0: its authority comes from the
//!   admin who handed the block to the peer, as on the orderer;
//! - in any later block its sequence is the current one plus one, and the envelope's
//!   `last_update` is a CONFIG_UPDATE for this channel proposing exactly these
//!   configuration bytes, signed by enough admins to satisfy the current Admins policy.

use bytes::Bytes;
use prost::Message;

use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::pb::common::{
    Block, ChannelConfig, ConfigEnvelope, ConfigUpdate, HeaderType, Payload,
};
use ordo_proto::policy;

use super::context::ValidationContext;

/// A config block that follows from the configuration in force.
pub(crate) struct AcceptedConfig {
    /// The new configuration.
    pub config: ChannelConfig,
    /// The CONFIG envelope's tx id.
    pub tx_id: String,
}

/// Checks a block that holds one CONFIG envelope; `Err` says why it is INVALID_CONFIG.
pub(crate) fn check(
    block: &Block,
    number: u64,
    ctx: &ValidationContext,
) -> Result<AcceptedConfig, String> {
    let config = config::config_from_block(block).map_err(|e| e.to_string())?;
    if config.channel_id != ctx.channel_id() {
        return Err(format!(
            "config for channel {:?} on channel {:?}",
            config.channel_id,
            ctx.channel_id()
        ));
    }
    let envelope_bytes = block
        .data
        .as_ref()
        .and_then(|d| d.data.first())
        .ok_or("no envelope")?;
    let env = envelope::decode(envelope_bytes).map_err(|e| e.to_string())?;
    let payload = Payload::decode(env.payload).map_err(|e| format!("payload: {e}"))?;
    let tx_id = payload.header.map(|h| h.tx_id).unwrap_or_default();
    if number == 0 {
        if config.sequence != 0 {
            return Err(format!("genesis config has sequence {}", config.sequence));
        }
        return Ok(AcceptedConfig { config, tx_id });
    }
    let expected = ctx.config().sequence.saturating_add(1);
    if config.sequence != expected {
        return Err(format!(
            "config sequence {} where {expected} was expected",
            config.sequence
        ));
    }
    let ce = ConfigEnvelope::decode(payload.data).map_err(|e| format!("config envelope: {e}"))?;
    check_update(&ce.config, &ce.last_update, ctx)?;
    Ok(AcceptedConfig { config, tx_id })
}

/// The CONFIG_UPDATE behind a config change: for this channel, proposing exactly
/// `config_bytes`, signed by the admins the current Admins policy requires.
fn check_update(
    config_bytes: &Bytes,
    last_update: &Bytes,
    ctx: &ValidationContext,
) -> Result<(), String> {
    let env = envelope::decode(last_update).map_err(|e| format!("last update: {e}"))?;
    let unpacked = envelope::unpack(&env).map_err(|e| format!("last update: {e}"))?;
    if unpacked.header_type != HeaderType::ConfigUpdate {
        return Err(format!(
            "last update has header type {}",
            unpacked.header_type.as_str_name()
        ));
    }
    if unpacked.header.channel_id != ctx.channel_id() {
        return Err("last update is for another channel".into());
    }
    // Admin certificates are checked at the update's own (signed) creation time, like a
    // transaction's: the same answer on every peer, whenever it validates.
    let update_time_secs = unpacked.header.timestamp_ms / 1000;
    let update = ConfigUpdate::decode(unpacked.data).map_err(|e| format!("config update: {e}"))?;
    if update.config != config_bytes {
        return Err("config differs from the one the update proposed".into());
    }
    let admins = ctx
        .config()
        .admins
        .as_ref()
        .ok_or("the channel has no Admins policy")?;
    let signers = ctx.msp().verified_signers(
        &update.config,
        update
            .signatures
            .iter()
            .map(|s| (s.signer.as_ref(), s.signature.as_ref())),
        update_time_secs,
    );
    policy::evaluate(admins, &signers, ctx.org_names()).map_err(|e| format!("Admins policy: {e}"))
}
