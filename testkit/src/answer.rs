//! What a client saw from one call, in the one status model (PROTOCOL.md, "Statuses"):
//! the gRPC code (OK when the call was answered), the node's reason, and the answer.
//! Tests compare codes and read reasons the same way for every service.

/// One call's outcome.
#[derive(Debug)]
pub struct Answer<T> {
    /// OK for an answer, otherwise the refusal's code.
    pub code: tonic::Code,
    /// The refusal's message; empty for an answer.
    pub info: String,
    /// The answer, when the call was answered.
    pub body: Option<T>,
}

impl<T> Answer<T> {
    /// The outcome of a call as tonic returns it.
    pub fn of(result: Result<tonic::Response<T>, tonic::Status>) -> Self {
        match result {
            Ok(r) => Self {
                code: tonic::Code::Ok,
                info: String::new(),
                body: Some(r.into_inner()),
            },
            Err(s) => Self::refused(&s),
        }
    }

    /// A refusal.
    pub fn refused(status: &tonic::Status) -> Self {
        Self {
            code: status.code(),
            info: status.message().to_string(),
            body: None,
        }
    }

    /// Whether the call was answered.
    pub fn is_ok(&self) -> bool {
        self.code == tonic::Code::Ok
    }

    /// The answer; panics, naming `what` and the refusal, when there is none.
    pub fn expect_ok(self, what: &str) -> T {
        match self.body {
            Some(body) => body,
            None => panic!("{what}: refused with {:?}: {}", self.code, self.info),
        }
    }

    /// Panics unless the outcome has `code`, naming `what` and the outcome.
    pub fn assert_code(&self, code: tonic::Code, what: &str) {
        assert_eq!(self.code, code, "{what}: {:?} ({})", self.code, self.info);
    }
}
