//! Who may read a channel: the checks Deliver and channel info share.

use ordo_consensus::ConfigState;
use ordo_proto::authz::authorize_by_policy;
use ordo_proto::cert::VerifiedCert;
use ordo_proto::pb::common::{Envelope, Status as Code};

/// A refused request: the status and why.
pub type Refusal = (Code, String);

/// Checks that `request` was signed by `creator` (its header's certificate), a member
/// of the channel valid at `now_secs` whom the channel's Readers policy admits.
pub fn authorize_reader(
    state: &ConfigState,
    request: &Envelope,
    creator: &[u8],
    now_secs: u64,
) -> Result<VerifiedCert, Refusal> {
    authorize_by_policy(
        &state.msp,
        state.config.readers.as_ref(),
        "Readers",
        request,
        creator,
        now_secs,
    )
    .map_err(|e| (Code::Forbidden, e.0))
}
