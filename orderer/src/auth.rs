//! Who may read a channel: the checks Deliver and channel info share.

use ordo_consensus::ConfigState;
use ordo_proto::authz::authorize_by_policy;
use ordo_proto::cert::VerifiedCert;
use ordo_proto::pb::common::{Envelope, Header, Status as Code};
use ordo_proto::replay::check_freshness;

/// A refused request: the status and why.
pub type Refusal = (Code, String);

/// Checks a signed read request: its header's timestamp is within `window_ms` of
/// `now_ms`, and it was signed by its header's creator, a member of the channel valid at
/// `now_ms` whom the channel's Readers policy admits. Every refusal is FORBIDDEN.
///
/// The freshness window is the only replay protection reads get: a captured read is
/// useless once the window has passed, and replaying it within the window shows nothing
/// the original answer did not (see [`ordo_proto::replay`]). Every read path goes through
/// here, so none can skip it.
pub fn authorize_reader(
    state: &ConfigState,
    request: &Envelope,
    header: &Header,
    now_ms: u64,
    window_ms: u64,
) -> Result<VerifiedCert, Refusal> {
    check_freshness(header.timestamp_ms, now_ms, window_ms)
        .map_err(|e| (Code::Forbidden, e.to_string()))?;
    authorize_by_policy(
        &state.msp,
        state.config.readers.as_ref(),
        "Readers",
        request,
        &header.creator,
        now_ms / 1000,
    )
    .map_err(|e| (Code::Forbidden, e.0))
}
