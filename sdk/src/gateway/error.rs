//! What can go wrong with a gateway call, as data an application can act on: the
//! chaincode's own status (an overdraft is a 400 with a message, not a string to parse),
//! the validation code of a transaction that committed but not as VALID, and whether
//! trying again can help.

use bytes::Bytes;
use prost::Message;
use thiserror::Error;

use ordo_proto::pb::gateway::ChaincodeRefusal;
use ordo_proto::pb::peer::TxValidationCode;

/// Why a gateway call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GatewayError {
    /// The peer could not be reached.
    #[error("cannot reach the gateway at {addr}: {reason}")]
    Connect {
        /// The peer's address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The chaincode answered a status outside 200..=399: the caller's mistake (400),
    /// something unknown (404), a chaincode failure (500), … Nothing was ordered.
    #[error("{step}: chaincode refused with status {status}: {message}")]
    Chaincode {
        /// Evaluate or Endorse.
        step: &'static str,
        /// The chaincode's status (HTTP-like).
        status: i32,
        /// The chaincode's message.
        message: String,
        /// The chaincode's payload, if it sent one with the refusal.
        payload: Bytes,
        /// The peer whose chaincode refused (empty: the gateway's own peer).
        peer: String,
    },
    /// The gateway refused the request (bad input, an unmet endorsement policy, no
    /// orderer available, overload, …).
    #[error("{step} refused ({code:?}): {message}")]
    Refused {
        /// Evaluate, Endorse, Submit, CommitStatus, ChaincodeEvents or Query.
        step: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The gateway's explanation (it names the node that failed).
        message: String,
    },
    /// The transaction was ordered and committed, but not as VALID.
    #[error("transaction {tx_id} committed in block {block} as {code:?}")]
    NotValid {
        /// The transaction.
        tx_id: String,
        /// Its validation code.
        code: TxValidationCode,
        /// The block that holds it.
        block: u64,
    },
    /// A submission with retries failed on its last attempt (a retryable failure when the
    /// policy ran out of attempts, or a final one such as a chaincode refusal).
    #[error("after {attempts} attempts: {last}")]
    Retried {
        /// Attempts made, the failed last one included.
        attempts: u32,
        /// How the last attempt failed.
        last: Box<GatewayError>,
    },
}

impl GatewayError {
    /// Whether submitting again (a fresh proposal) can succeed: an MVCC or phantom
    /// conflict (another transaction changed what this one read), a chaincode definition
    /// upgraded while the transaction was on its way (it is endorsed again under the new
    /// one), a transaction that expired on its way (a fresh proposal is signed now), or a
    /// peer or orderer that was unavailable or overloaded. A chaincode
    /// refusal, a bad request or an exhausted retry is final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NotValid { code, .. } => matches!(
                code,
                TxValidationCode::MvccReadConflict
                    | TxValidationCode::PhantomReadConflict
                    | TxValidationCode::DefinitionSuperseded
                    | TxValidationCode::Expired
            ),
            Self::Refused { code, .. } => {
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                )
            }
            Self::Connect { .. } => true,
            Self::Chaincode { .. } | Self::Retried { .. } => false,
        }
    }

    /// The failure itself, seen through [`GatewayError::Retried`].
    pub fn root(&self) -> &GatewayError {
        match self {
            Self::Retried { last, .. } => last.root(),
            other => other,
        }
    }

    /// The chaincode's status when the chaincode refused (e.g. 400 for an overdraft).
    pub fn chaincode_status(&self) -> Option<i32> {
        match self.root() {
            Self::Chaincode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The validation code when the transaction committed but not as VALID.
    pub fn validation_code(&self) -> Option<TxValidationCode> {
        match self.root() {
            Self::NotValid { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// How many attempts the call made (1 unless it was retried).
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Retried { attempts, .. } => *attempts,
            _ => 1,
        }
    }
}

/// A gRPC status from `step` as an error: a chaincode refusal when the status carries a
/// [`ChaincodeRefusal`], a refusal by the gateway otherwise.
pub(crate) fn from_status(step: &'static str) -> impl Fn(tonic::Status) -> GatewayError {
    move |s| {
        if s.code() == tonic::Code::Aborted && !s.details().is_empty() {
            if let Ok(r) = ChaincodeRefusal::decode(s.details()) {
                return GatewayError::Chaincode {
                    step,
                    status: r.status,
                    message: r.message,
                    payload: r.payload,
                    peer: r.peer,
                };
            }
        }
        GatewayError::Refused {
            step,
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_in_the_status_details_becomes_the_chaincode_status() {
        let details = ChaincodeRefusal {
            status: 400,
            message: "insufficient funds".into(),
            payload: Bytes::new(),
            peer: String::new(),
        };
        let status = tonic::Status::with_details(
            tonic::Code::Aborted,
            "chaincode \"bank\" refused",
            details.encode_to_vec().into(),
        );
        let e = from_status("Endorse")(status);
        assert_eq!(e.chaincode_status(), Some(400));
        assert!(!e.is_retryable());
        assert!(
            matches!(&e, GatewayError::Chaincode { message, .. } if message == "insufficient funds")
        );
        // Without details (or with undecodable ones) it stays the gateway's refusal.
        let plain = from_status("Endorse")(tonic::Status::aborted("no"));
        assert_eq!(plain.chaincode_status(), None);
        let retried = GatewayError::Retried {
            attempts: 3,
            last: Box::new(e),
        };
        assert_eq!(retried.chaincode_status(), Some(400));
        assert_eq!(retried.attempts(), 3);
        assert!(!retried.is_retryable());
    }

    #[test]
    fn conflicts_and_unavailable_nodes_are_retryable_and_nothing_else() {
        let conflict = GatewayError::NotValid {
            tx_id: "t".into(),
            code: TxValidationCode::MvccReadConflict,
            block: 3,
        };
        assert!(conflict.is_retryable());
        assert_eq!(
            conflict.validation_code(),
            Some(TxValidationCode::MvccReadConflict)
        );
        let policy = GatewayError::NotValid {
            tx_id: "t".into(),
            code: TxValidationCode::EndorsementPolicyFailure,
            block: 3,
        };
        assert!(!policy.is_retryable());
        for code in [
            TxValidationCode::PhantomReadConflict,
            TxValidationCode::DefinitionSuperseded,
            TxValidationCode::Expired,
        ] {
            let e = GatewayError::NotValid {
                tx_id: "t".into(),
                code,
                block: 3,
            };
            assert!(e.is_retryable(), "{code:?}");
        }
        for (code, retry) in [
            (tonic::Code::Unavailable, true),
            (tonic::Code::ResourceExhausted, true),
            (tonic::Code::InvalidArgument, false),
            (tonic::Code::PermissionDenied, false),
        ] {
            let e = from_status("Submit")(tonic::Status::new(code, "x"));
            assert_eq!(e.is_retryable(), retry, "{code:?}");
        }
    }
}
