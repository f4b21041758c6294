//! Authorizing a signed request to a node: either by an admin of the node's own org, or by
//! a channel policy (Readers for reads). Shared by the orderer and the peer, so the two
//! answer the same request the same way.

use thiserror::Error;

use crate::cert::{CertError, Msp, VerifiedCert};
use crate::crypto;
use crate::identity::Identity;
use crate::pb::common::{Envelope, Policy, Role};
use crate::policy;

/// Why a request is refused (always FORBIDDEN to the client).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct Forbidden(pub String);

fn check_signature(cert: &VerifiedCert, request: &Envelope) -> Result<(), Forbidden> {
    crypto::verify(&cert.public_key, &request.payload, &request.signature)
        .map_err(|_| Forbidden("request signature does not verify".into()))
}

/// The admins of a node's own org: certificates with role ADMIN issued by the CA that
/// issued the node's own certificate. Who may join a node to channels or remove them.
#[derive(Debug, Clone)]
pub struct NodeAdmins {
    msp: Msp,
    org: String,
}

impl NodeAdmins {
    /// The admins of `node`'s org.
    pub fn for_identity(node: &Identity) -> Result<Self, CertError> {
        let (_, body) = crate::cert::decode(node.cert_bytes())?;
        let msp = Msp::new([(body.org.clone(), vec![body.issuer_public_key.to_vec()])])?;
        Ok(Self { msp, org: body.org })
    }

    /// Checks that `request` was signed by `creator`, an admin of the node's org valid at
    /// `now_secs`.
    pub fn authorize(
        &self,
        request: &Envelope,
        creator: &[u8],
        now_secs: u64,
    ) -> Result<VerifiedCert, Forbidden> {
        let cert = self
            .msp
            .verify(creator, now_secs)
            .map_err(|e| Forbidden(format!("not an admin of {}: {e}", self.org)))?;
        if cert.role != Role::Admin {
            return Err(Forbidden(format!(
                "{} is not an admin of {}",
                cert.subject, self.org
            )));
        }
        check_signature(&cert, request)?;
        Ok(cert)
    }
}

/// Checks that `request` was signed by `creator`, a channel member (per `msp`, valid at
/// `now_secs`) whom `policy` (named `policy_name` in errors) admits.
pub fn authorize_by_policy(
    msp: &Msp,
    policy: Option<&Policy>,
    policy_name: &str,
    request: &Envelope,
    creator: &[u8],
    now_secs: u64,
) -> Result<VerifiedCert, Forbidden> {
    let cert = msp
        .verify(creator, now_secs)
        .map_err(|e| Forbidden(format!("creator certificate: {e}")))?;
    check_signature(&cert, request)?;
    let policy =
        policy.ok_or_else(|| Forbidden(format!("the channel has no {policy_name} policy")))?;
    policy::evaluate(policy, std::slice::from_ref(&cert), msp.org_names())
        .map_err(|e| Forbidden(format!("{policy_name} policy: {e}")))?;
    Ok(cert)
}
