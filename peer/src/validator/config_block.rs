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
//! - in any later block it passes `ordo_proto::config_change::check`: the next sequence,
//!   the same consensus type, and a `last_update` signed by enough admins to satisfy the
//!   current Admins policy.

use prost::Message;

use ordo_proto::config;
use ordo_proto::config_change::{self, CurrentConfig};
use ordo_proto::envelope;
use ordo_proto::pb::common::{Block, ChannelConfig, Payload};

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
    let current = CurrentConfig {
        config: ctx.config(),
        msp: ctx.msp(),
        org_names: ctx.org_names(),
    };
    let (config, tx_id) =
        config_change::check(&current, envelope_bytes).map_err(|e| e.to_string())?;
    Ok(AcceptedConfig { config, tx_id })
}
