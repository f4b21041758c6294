//! The checks a Kafka orderer runs on envelopes it consumes, with every orderer reaching
//! the same verdict: they read no clock and no local state, only the envelope and the
//! configuration in force at its place in the partition.
//!
//! - A normal envelope validated against an older configuration passes every filter
//!   again, with certificates checked at the envelope's own signed creation time (the
//!   orderer that produced it already bounded that time by its clock).
//! - A config envelope always passes [`ordo_proto::config_change::check`]: whoever can
//!   write to the topic must not be able to rewrite the channel.

use ordo_proto::config_change::{self, CurrentConfig};
use ordo_proto::envelope;

use crate::filters;
use crate::support::ConfigState;

/// Re-checks `envelope_bytes` (a config envelope when `is_config`) against `state`.
pub fn check(state: &ConfigState, envelope_bytes: &[u8], is_config: bool) -> Result<(), String> {
    if is_config {
        let current = CurrentConfig {
            config: &state.config,
            msp: &state.msp,
            org_names: &state.org_names,
        };
        return config_change::check(&current, envelope_bytes)
            .map(|_| ())
            .map_err(|e| format!("config change refused: {e}"));
    }
    let env = envelope::decode(envelope_bytes).map_err(|e| e.to_string())?;
    let own_time_secs = envelope::unpack(&env)
        .map_err(|e| e.to_string())?
        .header
        .timestamp_ms
        / 1000;
    filters::check_normal(state, env, own_time_secs)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
