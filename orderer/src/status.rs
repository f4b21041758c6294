//! One place that maps internal errors to the statuses clients see.

use ordo_consensus::ChainError;
use ordo_proto::pb::common::Status as Code;

/// The Broadcast status for a chain's refusal.
pub fn chain_error_code(e: &ChainError) -> Code {
    match e {
        ChainError::NotReady { .. } | ChainError::NotLeader { .. } | ChainError::ShuttingDown => {
            Code::ServiceUnavailable
        }
        ChainError::Revalidation(_) => Code::BadRequest,
        ChainError::Storage(_) => Code::InternalServerError,
        ChainError::Unsupported(_) => Code::NotImplemented,
    }
}
