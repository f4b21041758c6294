//! Who may read a channel: the checks Deliver and channel info share.

use ordo_consensus::ConfigState;
use ordo_proto::cert::VerifiedCert;
use ordo_proto::crypto;
use ordo_proto::pb::common::{Envelope, Status as Code};
use ordo_proto::policy;

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
    let cert = state
        .msp
        .verify(creator, now_secs)
        .map_err(|e| (Code::Forbidden, format!("creator certificate: {e}")))?;
    crypto::verify(&cert.public_key, &request.payload, &request.signature).map_err(|_| {
        (
            Code::Forbidden,
            "request signature does not verify".to_string(),
        )
    })?;
    let readers = state
        .config
        .readers
        .as_ref()
        .ok_or((Code::Forbidden, "channel has no Readers policy".to_string()))?;
    policy::evaluate(readers, std::slice::from_ref(&cert), &state.org_names)
        .map_err(|e| (Code::Forbidden, format!("Readers policy: {e}")))?;
    Ok(cert)
}
