//! One invocation as a simulation: the [`Context`] a chaincode runs against, recording
//! what it read (with versions) and buffering what it wrote, within per-invocation limits.
//!
//! Reads see the invocation's own writes first; a key read from the committed state is
//! recorded once, with the version seen then (absent for a missing key). A range read is
//! recorded whole: its bounds and every committed key it held, with versions. The
//! validator later checks every recorded version against the state at commit time (MVCC)
//! and every recorded range against the keys the range holds then (a key inserted,
//! updated or deleted since is a phantom), which makes simulations serializable without
//! holding any lock while the chaincode runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use ordo_proto::pb::peer::{
    ChaincodeEvent, ChaincodeResponse, KvRead, KvWrite, NsRwSet, RangeRead, Version,
};
use ordo_sdk::chaincode::{
    Chaincode, Context, HistoryItem, RangePage, Response, StateError, TransientMap,
};

use super::StateReader;
use crate::validator::rwset::MAX_KEY_BYTES;

/// What one invocation may do. Exceeding any limit ends it with status 413 and keeps
/// nothing it wrote.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock budget, checked at every state access.
    pub time: Duration,
    /// Distinct keys read from the committed state.
    pub max_reads: usize,
    /// Distinct keys written or deleted.
    pub max_writes: usize,
    /// Total bytes of written values.
    pub max_write_bytes: usize,
    /// Keys one range read, or changes one history read, may return.
    pub max_range: usize,
    /// Bytes of the response payload.
    pub max_payload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(3),
            max_reads: 10_000,
            max_writes: 10_000,
            max_write_bytes: 4 * 1024 * 1024,
            max_range: 1_000,
            max_payload_bytes: 1024 * 1024,
        }
    }
}

/// What a simulation produced: what the endorsers sign.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The chaincode's response (or the runtime's error response).
    pub response: ChaincodeResponse,
    /// The namespace's reads and writes; empty when the response is an error.
    pub rwset: NsRwSet,
    /// The event, if the chaincode set one (and succeeded).
    pub event: Option<ChaincodeEvent>,
}

impl Outcome {
    /// Whether the chaincode succeeded (status 200–399).
    pub fn is_ok(&self) -> bool {
        (200..400).contains(&self.response.status)
    }
}

/// Runs `function(args)` of `chaincode` on `namespace` over `state` as transaction
/// `tx_id`, within `limits`; the chaincode reads `transient` through its context.
#[allow(clippy::too_many_arguments)]
pub fn simulate(
    chaincode: &dyn Chaincode,
    state: &dyn StateReader,
    namespace: &str,
    tx_id: &str,
    function: &str,
    args: &[Bytes],
    transient: &TransientMap,
    limits: Limits,
) -> Outcome {
    let mut sim = Simulation {
        state,
        namespace,
        tx_id,
        transient,
        limits,
        deadline: Instant::now() + limits.time,
        reads: BTreeMap::new(),
        range_reads: Vec::new(),
        range_keys: 0,
        writes: BTreeMap::new(),
        write_bytes: 0,
        event: None,
        failure: None,
    };
    let response = chaincode.invoke(&mut sim, function, args);
    // A limit or storage failure the chaincode swallowed still ends the invocation.
    let response = match sim.failure.take() {
        Some(e) => Response::from(e),
        None if response.payload.len() > limits.max_payload_bytes => Response::error(
            413,
            format!(
                "limit exceeded: response payload of {} bytes (at most {})",
                response.payload.len(),
                limits.max_payload_bytes
            ),
        ),
        None => response,
    };
    let ok = response.is_ok();
    Outcome {
        response: ChaincodeResponse {
            status: response.status,
            message: response.message,
            payload: response.payload,
        },
        rwset: if ok {
            sim.rwset()
        } else {
            NsRwSet {
                namespace: namespace.to_string(),
                ..Default::default()
            }
        },
        event: if ok { sim.event } else { None },
    }
}

struct Simulation<'a> {
    state: &'a dyn StateReader,
    namespace: &'a str,
    tx_id: &'a str,
    transient: &'a TransientMap,
    limits: Limits,
    deadline: Instant,
    /// Committed keys read, with the version seen (`None`: absent).
    reads: BTreeMap<String, Option<Version>>,
    /// Ranges read, in order, with the committed keys each held.
    range_reads: Vec<RangeRead>,
    /// Keys listed in `range_reads` (they count against `max_reads` too).
    range_keys: usize,
    /// Keys written (`None`: deleted).
    writes: BTreeMap<String, Option<Bytes>>,
    write_bytes: usize,
    event: Option<ChaincodeEvent>,
    /// The first limit or storage error, which decides the invocation's outcome.
    failure: Option<StateError>,
}

impl Simulation<'_> {
    fn fail(&mut self, e: StateError) -> StateError {
        if self.failure.is_none() {
            self.failure = Some(e.clone());
        }
        e
    }

    fn check_time(&mut self) -> Result<(), StateError> {
        if Instant::now() >= self.deadline {
            return Err(self.fail(StateError::Limit(format!(
                "the invocation ran longer than {:?}",
                self.limits.time
            ))));
        }
        Ok(())
    }

    fn check_key(&mut self, key: &str) -> Result<(), StateError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(StateError::BadKey(format!(
                "keys are 1 to {MAX_KEY_BYTES} bytes, got {}",
                key.len()
            )));
        }
        Ok(())
    }

    fn record_read(&mut self, key: &str, version: Option<Version>) -> Result<(), StateError> {
        if self.reads.contains_key(key) {
            return Ok(());
        }
        if self.reads.len() + self.range_keys >= self.limits.max_reads {
            return Err(self.fail(StateError::Limit(format!(
                "more than {} keys read",
                self.limits.max_reads
            ))));
        }
        self.reads.insert(key.to_string(), version);
        Ok(())
    }

    fn record_write(&mut self, key: &str, value: Option<Bytes>) -> Result<(), StateError> {
        self.check_time()?;
        self.check_key(key)?;
        if !self.writes.contains_key(key) && self.writes.len() >= self.limits.max_writes {
            return Err(self.fail(StateError::Limit(format!(
                "more than {} keys written",
                self.limits.max_writes
            ))));
        }
        let new_len = value.as_ref().map_or(0, Bytes::len);
        let old_len = self
            .writes
            .get(key)
            .and_then(|v| v.as_ref())
            .map_or(0, Bytes::len);
        let total = self.write_bytes - old_len + new_len;
        if total > self.limits.max_write_bytes {
            return Err(self.fail(StateError::Limit(format!(
                "more than {} bytes written",
                self.limits.max_write_bytes
            ))));
        }
        self.write_bytes = total;
        self.writes.insert(key.to_string(), value);
        Ok(())
    }

    /// A range read, whole (`page: None`: more committed keys than `max_range` fail) or
    /// one page of at most `page` keys; what this invocation sees (its own writes
    /// included) and, for a page, where the next one starts. The range is recorded up to
    /// that key (or whole), with every committed key it held there.
    fn read_range(
        &mut self,
        start: &str,
        end: &str,
        page: Option<usize>,
    ) -> Result<RangePage, StateError> {
        self.check_time()?;
        let limit = self.limits.max_range;
        let in_range = |k: &str| k >= start && (end.is_empty() || k < end);
        let own: Vec<(String, Option<Bytes>)> = self
            .writes
            .iter()
            .filter(|(k, _)| in_range(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let page = page.map(|n| n.clamp(1, limit.max(1)));
        // One key past what can be shown is enough to know where the next page starts:
        // own deletes may hide committed keys, own writes may add keys.
        let fetch = match page {
            None => limit + 1,
            Some(n) => n + 1 + own.len(),
        };
        let committed = self
            .state
            .range(self.namespace, start, end, fetch)
            .map_err(|e| self.fail(StateError::Unavailable(e)))?;
        // A whole range must be recorded whole, so more committed keys than the limit
        // fail even where this invocation's own deletes would leave fewer.
        if page.is_none() && committed.len() > limit {
            return Err(self.fail(StateError::Limit(format!(
                "a range read returned more than {limit} keys"
            ))));
        }
        let mut merged: BTreeMap<String, Option<Bytes>> = committed
            .iter()
            .map(|(k, _, v)| (k.clone(), Some(v.clone())))
            .collect();
        merged.extend(own);
        let mut visible = merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v)));
        let (items, next) = match page {
            None => (visible.collect::<Vec<_>>(), None),
            Some(n) => {
                let items: Vec<(String, Bytes)> = visible.by_ref().take(n).collect();
                (items, visible.next().map(|(k, _)| k))
            }
        };
        if items.len() > limit {
            return Err(self.fail(StateError::Limit(format!(
                "a range read returned more than {limit} keys"
            ))));
        }
        let recorded_end = next.clone().unwrap_or_else(|| end.to_string());
        let seen: Vec<KvRead> = committed
            .into_iter()
            .filter(|(k, _, _)| recorded_end.is_empty() || *k < recorded_end)
            .map(|(key, version, _)| KvRead {
                key,
                version: Some(version),
            })
            .collect();
        if self.reads.len() + self.range_keys + seen.len() > self.limits.max_reads {
            return Err(self.fail(StateError::Limit(format!(
                "more than {} keys read",
                self.limits.max_reads
            ))));
        }
        self.range_keys += seen.len();
        self.range_reads.push(RangeRead {
            start: start.to_string(),
            end: recorded_end,
            reads: seen,
        });
        Ok((items, next))
    }

    fn rwset(&self) -> NsRwSet {
        NsRwSet {
            namespace: self.namespace.to_string(),
            reads: self
                .reads
                .iter()
                .map(|(key, version)| KvRead {
                    key: key.clone(),
                    version: *version,
                })
                .collect(),
            writes: self
                .writes
                .iter()
                .map(|(key, value)| KvWrite {
                    key: key.clone(),
                    is_delete: value.is_none(),
                    value: value.clone().unwrap_or_default(),
                })
                .collect(),
            range_reads: self.range_reads.clone(),
        }
    }
}

impl Context for Simulation<'_> {
    fn tx_id(&self) -> &str {
        self.tx_id
    }

    fn transient(&self) -> &TransientMap {
        self.transient
    }

    fn get(&mut self, key: &str) -> Result<Option<Bytes>, StateError> {
        self.check_time()?;
        self.check_key(key)?;
        if let Some(own) = self.writes.get(key) {
            return Ok(own.clone());
        }
        let found = self
            .state
            .get(self.namespace, key)
            .map_err(|e| self.fail(StateError::Unavailable(e)))?;
        self.record_read(key, found.as_ref().map(|(v, _)| *v))?;
        Ok(found.map(|(_, value)| value))
    }

    fn put(&mut self, key: &str, value: Bytes) -> Result<(), StateError> {
        self.record_write(key, Some(value))
    }

    fn delete(&mut self, key: &str) -> Result<(), StateError> {
        self.record_write(key, None)
    }

    fn range(&mut self, start: &str, end: &str) -> Result<Vec<(String, Bytes)>, StateError> {
        self.read_range(start, end, None).map(|(items, _)| items)
    }

    fn range_page(
        &mut self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<RangePage, StateError> {
        self.read_range(start, end, Some(limit))
    }

    fn history(&mut self, key: &str) -> Result<Vec<HistoryItem>, StateError> {
        self.check_time()?;
        self.check_key(key)?;
        let limit = self.limits.max_range;
        let items = self
            .state
            .history(self.namespace, key, limit + 1)
            .map_err(|e| self.fail(StateError::Unavailable(e)))?;
        if items.len() > limit {
            return Err(self.fail(StateError::Limit(format!(
                "the history of {key:?} has more than {limit} changes"
            ))));
        }
        Ok(items)
    }

    fn set_event(&mut self, name: &str, payload: Bytes) {
        self.event = Some(ChaincodeEvent {
            name: name.to_string(),
            payload,
        });
    }
}

#[cfg(test)]
mod tests;
