//! How a refusal reaches a client: one model for every service.
//!
//! The outcome of every call is its gRPC status. Checks inside the nodes still speak in
//! [`Status`] values (the HTTP-like codes of `ordo.common`, the ones an operator reads in
//! the logs and the metrics); at the edge of each service they become gRPC codes through
//! [`grpc_code`], the single table below, so that the same refusal gets the same code on
//! every service. The one answer that stays in a message body is Broadcast's, one per
//! envelope, because a Broadcast stream carries many independent envelopes and refusing
//! one must not end the stream for the others.

use crate::pb::common::Status;

/// Every status a node's check may refuse with (all but SUCCESS and STATUS_UNKNOWN).
pub const REFUSALS: [Status; 9] = [
    Status::BadRequest,
    Status::Forbidden,
    Status::NotFound,
    Status::Conflict,
    Status::RequestEntityTooLarge,
    Status::TooManyRequests,
    Status::InternalServerError,
    Status::NotImplemented,
    Status::ServiceUnavailable,
];

/// The gRPC code of a node's refusal.
///
/// | `ordo.common.Status` | gRPC code |
/// |---|---|
/// | SUCCESS | OK |
/// | BAD_REQUEST, REQUEST_ENTITY_TOO_LARGE | INVALID_ARGUMENT |
/// | FORBIDDEN | PERMISSION_DENIED |
/// | NOT_FOUND | NOT_FOUND |
/// | CONFLICT | ALREADY_EXISTS |
/// | TOO_MANY_REQUESTS | RESOURCE_EXHAUSTED |
/// | NOT_IMPLEMENTED | UNIMPLEMENTED |
/// | SERVICE_UNAVAILABLE | UNAVAILABLE |
/// | INTERNAL_SERVER_ERROR, STATUS_UNKNOWN | INTERNAL |
pub fn grpc_code(status: Status) -> tonic::Code {
    match status {
        Status::Success => tonic::Code::Ok,
        Status::BadRequest | Status::RequestEntityTooLarge => tonic::Code::InvalidArgument,
        Status::Forbidden => tonic::Code::PermissionDenied,
        Status::NotFound => tonic::Code::NotFound,
        Status::Conflict => tonic::Code::AlreadyExists,
        Status::TooManyRequests => tonic::Code::ResourceExhausted,
        Status::NotImplemented => tonic::Code::Unimplemented,
        Status::ServiceUnavailable => tonic::Code::Unavailable,
        Status::InternalServerError | Status::Unknown => tonic::Code::Internal,
    }
}

/// A refusal as the gRPC status a client receives: the code from [`grpc_code`] and the
/// node's explanation as the message.
pub fn refusal(status: Status, info: impl Into<String>) -> tonic::Status {
    tonic::Status::new(grpc_code(status), info)
}

/// The gRPC code of a Broadcast answer's status, for a client that treats it like any
/// other call's outcome; an unknown number is INTERNAL.
pub fn grpc_code_of(status: i32) -> tonic::Code {
    Status::try_from(status).map_or(tonic::Code::Internal, grpc_code)
}

/// A gRPC code's name as the gRPC specification spells it (`PERMISSION_DENIED`): what
/// clients print, so that an operator reads the same name in every tool's output.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_code_and_only_success_is_ok() {
        for s in REFUSALS
            .into_iter()
            .chain([Status::Success, Status::Unknown])
        {
            assert_eq!(
                grpc_code(s) == tonic::Code::Ok,
                s == Status::Success,
                "{s:?}"
            );
        }
        assert_eq!(grpc_code_of(403), tonic::Code::PermissionDenied);
        assert_eq!(grpc_code_of(999), tonic::Code::Internal);
        assert_eq!(code_name(grpc_code(Status::Conflict)), "ALREADY_EXISTS");
        let r = refusal(Status::NotFound, "channel \"x\" not found");
        assert_eq!(
            (r.code(), r.message()),
            (tonic::Code::NotFound, "channel \"x\" not found")
        );
    }
}
