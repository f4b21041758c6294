//! One status for undecodable requests on every service of a node.
//!
//! tonic answers a request message that does not decode with INTERNAL ("failed to decode
//! Protobuf message: …"), which blames the node for the client's bytes and tells a client
//! to retry what can never succeed. Ordo's model is that every refusal of a request
//! names the client's mistake: [`DecodeErrorLayer`] wraps a node's gRPC server so that
//! this answer becomes INVALID_ARGUMENT, with tonic's explanation kept. Any other status
//! passes untouched.

use std::task::{Context, Poll};

use tonic::codegen::http::{HeaderMap, HeaderValue, Response};
use tonic::codegen::BoxFuture;

/// The status tonic gives an undecodable message (INTERNAL).
const INTERNAL: &str = "13";
/// INVALID_ARGUMENT.
const INVALID_ARGUMENT: &str = "3";
/// The start of prost's decode error message, as tonic percent-encodes it in
/// `grpc-message`.
const DECODE_FAILURE: &str = "failed%20to%20decode%20Protobuf%20message";

/// Wraps a gRPC server: see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeErrorLayer;

impl<S> tower_layer::Layer<S> for DecodeErrorLayer {
    type Service = DecodeErrors<S>;

    fn layer(&self, inner: S) -> DecodeErrors<S> {
        DecodeErrors { inner }
    }
}

/// A service whose undecodable-request answers are INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct DecodeErrors<S> {
    inner: S,
}

impl<S, Request, ResBody> tower_service::Service<Request> for DecodeErrors<S>
where
    S: tower_service::Service<Request, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            blame_the_bytes(response.headers_mut());
            Ok(response)
        })
    }
}

/// Turns a trailers-only INTERNAL decode failure into INVALID_ARGUMENT.
fn blame_the_bytes(headers: &mut HeaderMap) {
    let internal = headers.get("grpc-status").is_some_and(|v| v == INTERNAL);
    let undecodable = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.starts_with(DECODE_FAILURE));
    if internal && undecodable {
        headers.insert("grpc-status", HeaderValue::from_static(INVALID_ARGUMENT));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &str, message: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_str(status).expect("ascii"));
        h.insert(
            "grpc-message",
            HeaderValue::from_str(message).expect("ascii"),
        );
        h
    }

    #[test]
    fn only_internal_decode_failures_become_invalid_argument() {
        let mut h = headers(
            "13",
            "failed%20to%20decode%20Protobuf%20message:%20buffer%20underflow",
        );
        blame_the_bytes(&mut h);
        assert_eq!(h["grpc-status"], "3");
        for (status, message) in [
            ("13", "the%20ledger%20failed"),
            ("5", "failed%20to%20decode%20Protobuf%20message"),
            ("0", ""),
        ] {
            let mut h = headers(status, message);
            blame_the_bytes(&mut h);
            assert_eq!(h["grpc-status"], status, "{message}");
        }
    }
}
