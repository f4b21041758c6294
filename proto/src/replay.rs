//! Replay protection for signed requests: a freshness window for every signed request a
//! node authorizes, and a memory of the admin requests it executed.
//!
//! A signed request proves who asked, not when, nor how often. Anyone who sees one on the
//! wire (or in a log) could send it again. Two mechanisms, for two kinds of request:
//!
//! - **Freshness** ([`check_freshness`]), for every signed request: its header's
//!   `timestamp_ms` must be within a window (default [`DEFAULT_FRESHNESS_WINDOW_MS`]) of
//!   the node's clock. The signature covers the timestamp, so a captured request is
//!   useless once the window has passed; a timestamp of 0 or `u64::MAX` never passes.
//! - **Executed-request memory** ([`ExecutedRequests`]), for admin requests that change
//!   the node (join, remove): the tx id of each one executed is remembered for as long as
//!   the request would still pass the freshness window, and a second copy is refused.
//!   Together: a mutation executes at most once.
//!
//! Reads (Deliver, Query, CommitStatus, Events, Evaluate, channel info and list) get
//! freshness only, deliberately: replaying a read inside the window shows the replayer
//! nothing the original answer did not, and since the signature covers the whole request
//! it cannot be redirected to other data. Remembering every read would cost memory per
//! read, and a cap on it would let any channel reader crowd out the admins.
//!
//! Everything here takes the time as an argument and reads no clock, so the node decides
//! when "now" is and the tests decide it exactly.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use thiserror::Error;

use crate::pb::common::Status;

/// How far a signed request's timestamp may be from the node's clock by default, in
/// milliseconds: 300 s. Long enough for ordinary clock skew between machines kept by NTP
/// and for a slow client; short enough that a captured read is soon useless and that the
/// memory of executed admin requests stays small.
pub const DEFAULT_FRESHNESS_WINDOW_MS: u64 = 300_000;

/// How many executed admin requests a node remembers at most by default: 10,000, about
/// 2 MB. Admin requests are rare (an operator joining or removing channels); 10,000 within
/// one freshness window is over 30 a second for five minutes.
pub const DEFAULT_MAX_REMEMBERED: NonZeroUsize = match NonZeroUsize::new(10_000) {
    Some(n) => n,
    None => unreachable!(),
};

/// A request whose timestamp is outside the freshness window; says by how much, in which
/// direction, and what is allowed, so an operator can tell a skewed clock from a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub struct StaleRequest {
    /// The request's header timestamp, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The node's clock when it checked, ms since the Unix epoch.
    pub now_ms: u64,
    /// The window, ms either side of `now_ms`.
    pub window_ms: u64,
}

impl StaleRequest {
    /// How far the timestamp is from the node's clock, in ms.
    pub fn skew_ms(&self) -> u64 {
        self.timestamp_ms.abs_diff(self.now_ms)
    }
}

impl fmt::Display for StaleRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = if self.timestamp_ms > self.now_ms {
            "ahead of"
        } else {
            "behind"
        };
        write!(
            f,
            "request timestamp {} ms is {} ms {direction} this node's clock ({} ms); at most \
             {} ms either way is accepted (check the client's clock; a captured request \
             cannot be replayed after that)",
            self.timestamp_ms,
            self.skew_ms(),
            self.now_ms,
            self.window_ms
        )
    }
}

/// Checks that a request stamped `timestamp_ms` is within `window_ms` of `now_ms`, both
/// edges included. Pure: the caller reads the clock.
pub fn check_freshness(timestamp_ms: u64, now_ms: u64, window_ms: u64) -> Result<(), StaleRequest> {
    if timestamp_ms.abs_diff(now_ms) > window_ms {
        return Err(StaleRequest {
            timestamp_ms,
            now_ms,
            window_ms,
        });
    }
    Ok(())
}

/// Why [`ExecutedRequests::admit`] refused an admin request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplayError {
    /// Outside the freshness window.
    #[error(transparent)]
    Stale(#[from] StaleRequest),
    /// Signed before this node (this process) started: a previous run may have executed
    /// it, and what that run remembered is gone.
    #[error(
        "request timestamp {timestamp_ms} ms is before this node started ({started_at_ms} ms): \
         a previous run may have executed it, so it is refused; sign a new request"
    )]
    BeforeStart {
        /// The request's header timestamp, ms.
        timestamp_ms: u64,
        /// When the memory was created, ms.
        started_at_ms: u64,
    },
    /// The very same request was executed already.
    #[error(
        "request {tx_id} was already executed: a replay is refused (a retry must be a newly \
         signed request, with a fresh nonce)"
    )]
    Replayed {
        /// Its tx id.
        tx_id: String,
    },
    /// The memory is full of requests still inside the window.
    #[error(
        "too many recent admin requests: {max_remembered} executed within the last \
         {window_ms} ms; retry when older ones leave the window"
    )]
    TooManyRecent {
        /// The cap.
        max_remembered: usize,
        /// The freshness window, ms.
        window_ms: u64,
    },
}

impl ReplayError {
    /// The status an Admin response carries, the same on the orderer and the peer.
    ///
    /// A replay is CONFLICT (409), not FORBIDDEN: the request is authentic and its signer
    /// is allowed to make it (both are checked before it is remembered), it merely
    /// collides with one already executed — the status Broadcast gives a duplicate tx id,
    /// and a client can tell "sign a new request" from "you may not". A stale request (or
    /// one from before a restart) is FORBIDDEN, as for reads: its signature no longer
    /// authorizes anything. A full memory is SERVICE_UNAVAILABLE: it passes within one
    /// window.
    pub fn status(&self) -> Status {
        match self {
            ReplayError::Stale(_) | ReplayError::BeforeStart { .. } => Status::Forbidden,
            ReplayError::Replayed { .. } => Status::Conflict,
            ReplayError::TooManyRecent { .. } => Status::ServiceUnavailable,
        }
    }
}

/// Limits of an [`ExecutedRequests`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// The freshness window, ms either side of the node's clock.
    pub window_ms: u64,
    /// Most requests remembered at once.
    pub max_remembered: NonZeroUsize,
}

impl Default for ReplayLimits {
    fn default() -> Self {
        Self {
            window_ms: DEFAULT_FRESHNESS_WINDOW_MS,
            max_remembered: DEFAULT_MAX_REMEMBERED,
        }
    }
}

/// The admin requests a node executed recently, by tx id, so that none executes twice.
///
/// **Key.** The tx id is `hex(SHA-256(nonce ‖ creator))`, which `envelope::unpack` checks,
/// and the signature covers both: a copy of a request has the same tx id, and changing the
/// nonce breaks the signature. (Two different (nonce, creator) pairs with one tx id would
/// only get the second refused, never a replay admitted.)
///
/// **How long.** A request stamped `t` passes the freshness window until `t + window`;
/// its tx id is kept exactly that long, then forgotten — after that the window refuses
/// the copy by itself. So memory is bounded by the admin requests of the last
/// `2 × window` at most (a request may be stamped up to one window ahead).
///
/// **Bounded, and refusing when full.** At `max_remembered` entries still inside the
/// window, a new request is refused ([`ReplayError::TooManyRecent`]) rather than an entry
/// forgotten early. Forgetting early would re-open exactly the replay this exists to stop,
/// to anyone holding a captured request and able to make the node busy; refusing costs
/// availability only, only until old entries leave the window, and only admins can cause
/// it: a request is remembered only after its signature and its signer's admin role were
/// checked, so a stranger's garbage takes no room.
///
/// **Restarts.** The memory is not persisted. Instead, requests stamped before the memory
/// was created (the node's start) are refused ([`ReplayError::BeforeStart`]): a previous
/// run may have executed them. The cost is a client whose clock is behind the node's
/// being refused for that long after a restart.
///
/// **Atomic.** [`ExecutedRequests::admit`] checks and records under one lock: of two
/// concurrent copies, exactly one is admitted.
#[derive(Debug)]
pub struct ExecutedRequests {
    limits: ReplayLimits,
    started_at_ms: u64,
    seen: Mutex<Seen>,
}

/// Tx ids with the time each may be forgotten, indexed both ways.
#[derive(Debug, Default)]
struct Seen {
    forget_at_ms: HashMap<String, u64>,
    by_forget_at: BTreeSet<(u64, String)>,
}

impl Seen {
    /// Forgets every entry whose request no longer passes the window at `now_ms`.
    fn expire(&mut self, now_ms: u64) {
        while let Some(first) = self.by_forget_at.first() {
            if first.0 >= now_ms {
                break;
            }
            if let Some((_, tx_id)) = self.by_forget_at.pop_first() {
                self.forget_at_ms.remove(&tx_id);
            }
        }
        assert_eq!(self.forget_at_ms.len(), self.by_forget_at.len());
    }
}

impl ExecutedRequests {
    /// An empty memory for a node that started at `started_at_ms` (ms since the Unix
    /// epoch; requests stamped earlier are refused, see the type's docs).
    pub fn new(limits: ReplayLimits, started_at_ms: u64) -> Self {
        Self {
            limits,
            started_at_ms,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The limits it was built with.
    pub fn limits(&self) -> ReplayLimits {
        self.limits
    }

    /// The freshness check with this memory's window; for the cheap early refusal before
    /// a signature is checked, and for requests that are not remembered (reads).
    pub fn check_freshness(&self, timestamp_ms: u64, now_ms: u64) -> Result<(), StaleRequest> {
        check_freshness(timestamp_ms, now_ms, self.limits.window_ms)
    }

    /// Admits the request `tx_id` stamped `timestamp_ms` for execution at `now_ms`, and
    /// remembers it; refuses a stale one, one from before the start, a copy of one already
    /// admitted, or any when full. Call it only once the request's signature and its
    /// signer's authority have been verified, and execute the request only when it
    /// returns `Ok`. An admitted request stays remembered whether its execution succeeds
    /// or not: a retry is a new request.
    pub fn admit(&self, tx_id: &str, timestamp_ms: u64, now_ms: u64) -> Result<(), ReplayError> {
        self.check_freshness(timestamp_ms, now_ms)?;
        if timestamp_ms < self.started_at_ms {
            return Err(ReplayError::BeforeStart {
                timestamp_ms,
                started_at_ms: self.started_at_ms,
            });
        }
        // Nothing that can panic runs between an entry's two inserts, so a lock poisoned
        // by a panic elsewhere still guards consistent data (`expire` asserts it).
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.expire(now_ms);
        if seen.forget_at_ms.contains_key(tx_id) {
            return Err(ReplayError::Replayed {
                tx_id: tx_id.to_string(),
            });
        }
        if seen.forget_at_ms.len() >= self.limits.max_remembered.get() {
            return Err(ReplayError::TooManyRecent {
                max_remembered: self.limits.max_remembered.get(),
                window_ms: self.limits.window_ms,
            });
        }
        let forget_at_ms = timestamp_ms.saturating_add(self.limits.window_ms);
        seen.forget_at_ms.insert(tx_id.to_string(), forget_at_ms);
        seen.by_forget_at.insert((forget_at_ms, tx_id.to_string()));
        Ok(())
    }

    /// How many requests are remembered now (including any that expire at the next
    /// [`ExecutedRequests::admit`]); for metrics and tests.
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget_at_ms
            .len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const W: u64 = 300_000;
    const START: u64 = 1_700_000_000_000;

    fn memory(max: usize) -> ExecutedRequests {
        ExecutedRequests::new(
            ReplayLimits {
                window_ms: W,
                max_remembered: NonZeroUsize::new(max).expect("non-zero"),
            },
            START,
        )
    }

    #[test]
    fn freshness_accepts_both_edges_and_refuses_one_ms_beyond() {
        let now = START;
        assert_eq!(check_freshness(now, now, W), Ok(()));
        assert_eq!(check_freshness(now - W, now, W), Ok(()));
        assert_eq!(check_freshness(now + W, now, W), Ok(()));
        for t in [now - W - 1, now + W + 1] {
            assert_eq!(
                check_freshness(t, now, W),
                Err(StaleRequest {
                    timestamp_ms: t,
                    now_ms: now,
                    window_ms: W
                })
            );
        }
    }

    #[test]
    fn freshness_refuses_zero_and_max_and_says_by_how_much() {
        let now = START;
        let behind = check_freshness(0, now, W).expect_err("0 is stale");
        assert_eq!(behind.skew_ms(), now);
        assert_eq!(
            behind.to_string(),
            format!(
                "request timestamp 0 ms is {now} ms behind this node's clock ({now} ms); at \
                 most {W} ms either way is accepted (check the client's clock; a captured \
                 request cannot be replayed after that)"
            )
        );
        let ahead = check_freshness(u64::MAX, now, W).expect_err("MAX is stale");
        assert_eq!(ahead.skew_ms(), u64::MAX - now);
        assert!(ahead.to_string().contains(" ms ahead of this node's clock"));
        // The node's clock at the extremes does not overflow either.
        assert!(check_freshness(u64::MAX, 0, W).is_err());
        assert_eq!(check_freshness(u64::MAX, u64::MAX, W), Ok(()));
    }

    #[test]
    fn a_repeat_is_refused_and_another_nonce_is_admitted() {
        let m = memory(10);
        assert_eq!(m.admit("a", START + 5, START + 10), Ok(()));
        assert_eq!(
            m.admit("a", START + 5, START + 11),
            Err(ReplayError::Replayed { tx_id: "a".into() })
        );
        assert_eq!(m.admit("b", START + 5, START + 11), Ok(()));
        assert_eq!(m.len(), 2);
        assert_eq!(
            ReplayError::Replayed { tx_id: "a".into() }.status(),
            Status::Conflict
        );
    }

    #[test]
    fn an_entry_is_kept_while_its_request_is_fresh_and_forgotten_after() {
        let m = memory(10);
        let t = START + 1_000;
        assert_eq!(m.admit("a", t, t), Ok(()));
        // At the window's last millisecond the copy still passes freshness, so the memory
        // must still refuse it.
        assert_eq!(
            m.admit("a", t, t + W),
            Err(ReplayError::Replayed { tx_id: "a".into() })
        );
        // One millisecond later freshness refuses it by itself ...
        assert_eq!(
            m.admit("a", t, t + W + 1),
            Err(ReplayError::Stale(StaleRequest {
                timestamp_ms: t,
                now_ms: t + W + 1,
                window_ms: W
            }))
        );
        // ... and the entry is forgotten at the next admission.
        assert_eq!(m.admit("b", t + W + 1, t + W + 1), Ok(()));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_request_stamped_ahead_is_remembered_until_it_leaves_the_window() {
        let m = memory(10);
        let now = START + 1_000;
        let t = now + W; // the furthest ahead accepted
        assert_eq!(m.admit("a", t, now), Ok(()));
        assert_eq!(
            m.admit("a", t, now + 2 * W),
            Err(ReplayError::Replayed { tx_id: "a".into() })
        );
        assert!(matches!(
            m.admit("a", t, now + 2 * W + 1),
            Err(ReplayError::Stale(_))
        ));
    }

    #[test]
    fn when_full_new_requests_are_refused_until_entries_expire() {
        let m = memory(2);
        let t = START + 1_000;
        assert_eq!(m.admit("a", t, t), Ok(()));
        assert_eq!(m.admit("b", t + 10, t + 10), Ok(()));
        let full = ReplayError::TooManyRecent {
            max_remembered: 2,
            window_ms: W,
        };
        assert_eq!(m.admit("c", t + 20, t + 20), Err(full.clone()));
        assert_eq!(full.status(), Status::ServiceUnavailable);
        assert!(full
            .to_string()
            .starts_with("too many recent admin requests"));
        // Nothing inside the window was forgotten to make room.
        assert_eq!(
            m.admit("a", t, t + 20),
            Err(ReplayError::Replayed { tx_id: "a".into() })
        );
        // Once "a" leaves the window there is room again; "b" is still remembered.
        assert_eq!(m.admit("c", t + W + 1, t + W + 1), Ok(()));
        assert_eq!(
            m.admit("b", t + 10, t + W + 1),
            Err(ReplayError::Replayed { tx_id: "b".into() })
        );
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn stale_and_pre_start_requests_are_refused_and_take_no_room() {
        let m = memory(10);
        for t in [0, u64::MAX] {
            let e = m.admit("a", t, START).expect_err("stale");
            assert!(matches!(e, ReplayError::Stale(_)), "{e}");
            assert_eq!(e.status(), Status::Forbidden);
        }
        let e = m
            .admit("a", START - 1, START + 1)
            .expect_err("before start");
        assert_eq!(
            e,
            ReplayError::BeforeStart {
                timestamp_ms: START - 1,
                started_at_ms: START
            }
        );
        assert_eq!(e.status(), Status::Forbidden);
        assert!(m.is_empty());
        assert_eq!(m.admit("a", START, START + 1), Ok(()));
    }

    #[test]
    fn of_concurrent_copies_exactly_one_is_admitted() {
        let m = Arc::new(memory(100));
        let t = START + 1_000;
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let m = m.clone();
                    s.spawn(move || m.admit("same", t, t).is_ok())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().expect("thread")))
                .sum()
        });
        assert_eq!(admitted, 1);
        assert_eq!(m.len(), 1);
    }
}
