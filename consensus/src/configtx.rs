//! The config path: turning a client's CONFIG_UPDATE into the CONFIG envelope that the
//! backend orders alone in a block.

use bytes::Bytes;
use prost::Message;

use ordo_proto::config;
use ordo_proto::config_change;
use ordo_proto::envelope;
use ordo_proto::pb::common::{ChannelConfig, ConfigEnvelope, ConfigUpdate, HeaderType};
use ordo_proto::policy;

use crate::filters::{Candidate, FilterError, MAX_TX_CLOCK_SKEW_SECS};
use crate::support::ChainSupport;

/// Validates a CONFIG_UPDATE (its envelope signature already verified) against the
/// configuration in force and returns the encoded CONFIG envelope, signed by this orderer,
/// with its tx id.
///
/// Rules: the update proposes a whole configuration for the same channel with sequence
/// = current + 1, valid on its own, with the same consensus type, whose chaincode
/// definitions follow the lifecycle rules, and signed (over the exact config bytes) by
/// enough admins to satisfy the policy the change needs (Lifecycle for chaincode
/// definitions alone, Admins otherwise), their certificates checked at the update's own
/// signed creation time: the peers' `ordo_proto::config_change` check.
pub fn process_config_update(
    support: &ChainSupport,
    candidate: &Candidate,
    now_secs: u64,
) -> Result<(Bytes, String), FilterError> {
    let state = support.state();
    let update = ConfigUpdate::decode(candidate.unpacked.data.as_ref())
        .map_err(|e| FilterError::BadRequest(format!("config update: {e}")))?;
    let proposed = ChannelConfig::decode(update.config.as_ref())
        .map_err(|e| FilterError::BadRequest(format!("proposed config: {e}")))?;
    if proposed.channel_id != state.config.channel_id {
        return Err(FilterError::BadRequest(
            "proposed config is for another channel".into(),
        ));
    }
    if proposed.sequence != state.sequence() + 1 {
        return Err(FilterError::BadRequest(format!(
            "proposed config sequence {} must be {}",
            proposed.sequence,
            state.sequence() + 1
        )));
    }
    config::validate(&proposed).map_err(|e| FilterError::BadRequest(e.to_string()))?;
    let new_type = proposed
        .orderer
        .as_ref()
        .map(|o| o.consensus_type.as_str())
        .unwrap_or("");
    if new_type != state.consensus_type() {
        return Err(FilterError::BadRequest(format!(
            "consensus type cannot change ({} -> {new_type})",
            state.consensus_type()
        )));
    }
    config_change::check_definitions(&state.config, &proposed)
        .map_err(|e| FilterError::BadRequest(format!("chaincode lifecycle: {e}")))?;
    if new_type == "raft" {
        // One consenter added or removed per update (raft changes membership one voter
        // at a time); the leader also refuses a change that would lose quorum. One
        // (or rekeyed) per update.
        crate::raft::membership::check_one_change(&state.config, &proposed)
            .map_err(|e| FilterError::BadRequest(e.to_string()))?;
    }
    // The admins' certificates are checked at the update's own signed creation time, as
    // every peer checks them (`config_change::check`), not at this orderer's clock:
    // otherwise a certificate valid at one of the two times and not at the other would
    // have the orderers put in force a change the peers refuse as INVALID_CONFIG (or the
    // reverse). That time is within the clock skew the filters allow of `now_secs`;
    // checked again here, as this function may be given any candidate.
    let update_time_secs = candidate.unpacked.header.timestamp_ms / 1000;
    if update_time_secs.abs_diff(now_secs) > MAX_TX_CLOCK_SKEW_SECS {
        return Err(FilterError::Timestamp {
            timestamp_secs: update_time_secs,
            now_secs,
        });
    }
    let signers = state.msp.verified_signers(
        &update.config,
        update
            .signatures
            .iter()
            .map(|s| (s.signer.as_ref(), s.signature.as_ref())),
        update_time_secs,
    );
    let (name, needed) = config_change::authorizing_policy(&state.config, &proposed)
        .map_err(FilterError::PolicyDenied)?;
    policy::evaluate(needed, &signers, &state.org_names)
        .map_err(|e| FilterError::PolicyDenied(format!("{name} policy: {e}")))?;
    let data = ConfigEnvelope {
        config: update.config.clone(),
        last_update: candidate.encoded(),
    };
    let (env, tx_id) = envelope::create_signed(
        support.signer(),
        support.channel_id(),
        HeaderType::Config,
        data.encode_to_vec().into(),
        ordo_proto::now_ms(),
    );
    Ok((env.encode_to_vec().into(), tx_id))
}
