//! Chaincode: the program a channel runs over its world state, written once and run
//! either inside the peer (built-ins) or as a server of its own (chaincode as a service,
//! through the shim).
//!
//! A chaincode sees the world state only through its [`Context`]: every read is recorded
//! with the version it saw and every write stays in the transaction's read/write set until
//! the transaction is ordered and validated, so an invocation is a *simulation*, never a
//! change. A chaincode must be deterministic: the same state and arguments give the same
//! response, read/write set and event on every endorsing peer (no clocks, no randomness,
//! no iteration over unordered maps), or the endorsements disagree.
//!
//! [`builtin`] holds the chaincodes compiled into the peer: `kv` and `bank`.

use bytes::Bytes;
use thiserror::Error;

pub mod builtin;
pub mod shim;

/// Why a state access failed. The invocation ends with an error response; nothing it
/// wrote is kept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    /// A per-invocation limit was reached (keys written, bytes written, keys read, time).
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// A key is empty, too long, or not allowed.
    #[error("bad key: {0}")]
    BadKey(String),
    /// The peer could not read its state (or the chaincode server lost the peer).
    #[error("state unavailable: {0}")]
    Unavailable(String),
}

/// One committed change of a key, for history queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// Block of the transaction that made the change.
    pub block: u64,
    /// Index of that transaction in its block.
    pub tx: u32,
    /// The value written, or `None` for a delete.
    pub value: Option<Bytes>,
}

/// A proposal's transient data by key: private inputs (a PIN, personal data, a price)
/// that the endorsers' chaincode reads and the ledger never records.
pub type TransientMap = std::collections::HashMap<String, Bytes>;

/// One page of a range read: the keys and values, and the key the next page starts at
/// (`None`: the range is exhausted).
pub type RangePage = (Vec<(String, Bytes)>, Option<String>);

/// What a chaincode may do during one invocation, on its own namespace.
pub trait Context {
    /// The id of the transaction being simulated.
    fn tx_id(&self) -> &str;
    /// The proposal's transient data. It is not in the transaction, so nothing checks
    /// that endorsers saw the same values: derive writes from it only where every
    /// endorser gets the same map (the gateway forwards the client's signed proposal as
    /// is). Read it by key; the map's order is arbitrary.
    fn transient(&self) -> &TransientMap;
    /// The value of `key`: this invocation's own write if it wrote one, else the
    /// committed value (the read and its version are recorded).
    fn get(&mut self, key: &str) -> Result<Option<Bytes>, StateError>;
    /// Writes `key` (kept in the read/write set).
    fn put(&mut self, key: &str, value: Bytes) -> Result<(), StateError>;
    /// Deletes `key` (kept in the read/write set).
    fn delete(&mut self, key: &str) -> Result<(), StateError>;
    /// Keys in `[start, end)` (an empty `end`: no upper bound) in key order, as this
    /// invocation sees them (its own writes included). The range is recorded whole —
    /// its bounds and the committed keys it held, with versions — and the transaction
    /// commits as PHANTOM_READ_CONFLICT if a key is inserted into, updated in or deleted
    /// from the range before it commits.
    fn range(&mut self, start: &str, end: &str) -> Result<Vec<(String, Bytes)>, StateError>;
    /// One page of [`Context::range`]: at most `limit` keys of `[start, end)` as this
    /// invocation sees them, and the key to start the next page at (`None`: the range is
    /// exhausted). Only the part of the range up to that key is recorded, so a page is
    /// checked for phantoms only where it read.
    fn range_page(&mut self, start: &str, end: &str, limit: usize)
        -> Result<RangePage, StateError>;
    /// Every committed change of `key`, oldest first (a peer fails the invocation with
    /// 413 beyond its per-invocation limit, 1,000 by default). Not recorded as a read (history is
    /// informational; a transaction should not decide on it).
    fn history(&mut self, key: &str) -> Result<Vec<HistoryItem>, StateError>;
    /// Sets the invocation's event, delivered to listeners once the transaction commits
    /// as VALID; a later call replaces an earlier one.
    fn set_event(&mut self, name: &str, payload: Bytes);
}

/// What a chaincode answers. Status follows HTTP: 200 to 399 is success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// 200 for success; 400 for the caller's mistakes; 404 for unknown things; 500 for
    /// failures of the chaincode or the peer.
    pub status: i32,
    /// Why, for errors.
    pub message: String,
    /// The result, for successes.
    pub payload: Bytes,
}

impl Response {
    /// A success with `payload`.
    pub fn ok(payload: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            message: String::new(),
            payload: payload.into(),
        }
    }

    /// A failure with `status` and `message`.
    pub fn error(status: i32, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            payload: Bytes::new(),
        }
    }

    /// The caller's mistake (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::error(400, message)
    }

    /// Something the caller named does not exist (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::error(404, message)
    }

    /// Whether the status means success.
    pub fn is_ok(&self) -> bool {
        (200..400).contains(&self.status)
    }
}

impl From<StateError> for Response {
    fn from(e: StateError) -> Self {
        match e {
            StateError::BadKey(_) => Self::bad_request(e.to_string()),
            StateError::Limit(_) => Self::error(413, e.to_string()),
            StateError::Unavailable(_) => Self::error(500, e.to_string()),
        }
    }
}

/// A chaincode: one entry point, dispatching on the function name.
pub trait Chaincode: Send + Sync {
    /// Runs `function` with `args` over `ctx`. Must be deterministic (see the module
    /// docs). Errors are responses (status ≥ 400), never panics.
    fn invoke(&self, ctx: &mut dyn Context, function: &str, args: &[Bytes]) -> Response;
}

/// Argument `i` as UTF-8 text, or a 400 naming it.
pub fn text_arg<'a>(args: &'a [Bytes], i: usize, name: &str) -> Result<&'a str, Response> {
    let raw = args
        .get(i)
        .ok_or_else(|| Response::bad_request(format!("missing argument {i} ({name})")))?;
    std::str::from_utf8(raw)
        .map_err(|_| Response::bad_request(format!("argument {i} ({name}) is not UTF-8 text")))
}

/// Fails with a 400 unless exactly `n` arguments were given.
pub fn expect_args(args: &[Bytes], n: usize, usage: &str) -> Result<(), Response> {
    if args.len() == n {
        Ok(())
    } else {
        Err(Response::bad_request(format!(
            "expected {n} argument(s) ({usage}), got {}",
            args.len()
        )))
    }
}
