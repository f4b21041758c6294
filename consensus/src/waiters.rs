//! Committed-mode waiters: who waits for the block that will hold which envelope.
//!
//! In `committed` ack mode Broadcast answers an envelope only once its block is durable,
//! so every backend tells this registry about each block it writes
//! ([`CommitWaiters::commit_block`]) and about each envelope it drops
//! ([`CommitWaiters::reject`]). The registry is bounded in both directions a
//! misbehaving network could push it:
//!
//! - **Space.** At most [`WaiterLimits::capacity`] waiters: registering beyond that is
//!   refused ([`WaiterError::Full`]) before the envelope is handed to the chain, so the
//!   client is told to retry and nothing is half-taken.
//! - **Time.** A waiter whose envelope is in no block after [`WaiterLimits::timeout`] is
//!   answered [`NotWritten::TimedOut`] and forgotten. The envelope may still be ordered
//!   later (a slow leader change), so the answer says to look the tx id up rather than
//!   resubmit blindly. Expired waiters are swept whenever the registry is used; a waiter
//!   whose client went away is swept the same way, so nothing stays for good.
//!
//! Time is passed in (`now`), never read here, so the rules are testable without
//! sleeping and a simulation decides what time it is.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::tx_key::{self, KeyBuildHasher};

/// Why an envelope a committed-mode waiter waited for was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotWritten {
    /// The chain dropped it (refused on re-validation, lost with a leader, chain stopped).
    #[error("{0}")]
    Dropped(String),
    /// No block held it within the wait limit; it may still be ordered.
    #[error(
        "no block held the envelope within {}s; it may still be ordered: look its tx id up before resubmitting",
        after.as_secs()
    )]
    TimedOut {
        /// The wait limit.
        after: Duration,
    },
}

/// What a committed-mode waiter learns: the block holding its envelope, or why none does.
pub type CommitOutcome = Result<u64, NotWritten>;

/// Why a waiter could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaiterError {
    /// As many envelopes as the registry holds already wait for their blocks.
    #[error("{capacity} envelopes already wait for their blocks on this channel; retry later")]
    Full {
        /// The registry's capacity.
        capacity: usize,
    },
}

/// Bounds of a [`CommitWaiters`] registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaiterLimits {
    /// Waiters held at once.
    pub capacity: usize,
    /// How long a waiter may wait for its block.
    pub timeout: Duration,
}

impl Default for WaiterLimits {
    /// 100,000 waiters (a few seconds of the fastest backend's throughput, far more than
    /// Broadcast streams keep in flight) and two minutes (longer than any leader change
    /// or Kafka reconnect the backends ride out).
    fn default() -> Self {
        Self {
            capacity: 100_000,
            timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug)]
struct Waiter {
    /// Tells an expiry record apart from a later waiter on the same tx id.
    serial: u64,
    /// The tx id itself: a block answers the waiter only when its id is this one, so that
    /// even two ids sharing a [`tx_key`] could never be told each other's block.
    tx_id: String,
    answer: oneshot::Sender<CommitOutcome>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Keyed by [`tx_key::key`]: one hex parse per operation instead of a SipHash of the
    /// id and a second copy of it.
    by_tx: HashMap<u128, Waiter, KeyBuildHasher>,
    /// (deadline, serial, tx key) in registration order, which is deadline order because
    /// every waiter gets the same timeout.
    expiry: VecDeque<(Instant, u64, u128)>,
    next_serial: u64,
}

/// The registry of one channel's committed-mode waiters.
#[derive(Debug)]
pub struct CommitWaiters {
    inner: Mutex<Inner>,
    limits: WaiterLimits,
}

impl CommitWaiters {
    /// An empty registry with these bounds.
    pub fn new(limits: WaiterLimits) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
        }
    }

    /// The registry's bounds.
    pub fn limits(&self) -> WaiterLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers interest in the block that will hold `tx_id`, at time `now`. A waiter
    /// already registered for the same tx id is answered as dropped (only one client
    /// can be told about one envelope).
    pub fn register(
        &self,
        tx_id: &str,
        now: Instant,
    ) -> Result<oneshot::Receiver<CommitOutcome>, WaiterError> {
        let key = tx_key::key(tx_id);
        let mut inner = self.lock();
        expire(&mut inner, now, self.limits.timeout);
        if inner.by_tx.len() >= self.limits.capacity && !inner.by_tx.contains_key(&key) {
            return Err(WaiterError::Full {
                capacity: self.limits.capacity,
            });
        }
        let (answer, rx) = oneshot::channel();
        let serial = inner.next_serial;
        inner.next_serial += 1;
        let waiter = Waiter {
            serial,
            tx_id: tx_id.to_string(),
            answer,
        };
        let replaced = inner.by_tx.insert(key, waiter);
        if let Some(old) = replaced {
            let _ = old.answer.send(Err(NotWritten::Dropped(
                "another submission of the same tx id waits for its block".into(),
            )));
        }
        inner
            .expiry
            .push_back((now + self.limits.timeout, serial, key));
        Ok(rx)
    }

    /// Forgets the waiter of `tx_id` without answering it (its envelope was refused
    /// before the chain took it, or its client stopped waiting).
    pub fn cancel(&self, tx_id: &str) {
        take(&mut self.lock(), tx_id);
    }

    /// Tells the waiter of `tx_id` that its envelope was dropped, and why.
    pub fn reject(&self, tx_id: &str, reason: String) {
        if let Some(w) = take(&mut self.lock(), tx_id) {
            let _ = w.answer.send(Err(NotWritten::Dropped(reason)));
        }
    }

    /// Block `number`, holding the envelopes with `tx_ids`, is durable: their waiters
    /// learn it; waiters past their deadline at `now` learn that they timed out.
    pub fn commit_block<'a>(
        &self,
        number: u64,
        tx_ids: impl IntoIterator<Item = &'a str>,
        now: Instant,
    ) {
        let mut inner = self.lock();
        if inner.by_tx.is_empty() {
            return;
        }
        for tx_id in tx_ids {
            if let Some(w) = take(&mut inner, tx_id) {
                let _ = w.answer.send(Ok(number));
            }
        }
        expire(&mut inner, now, self.limits.timeout);
    }

    /// Answers the waiters whose deadline passed by `now` (TimedOut). Blocks and
    /// registrations do this on their way; a periodic call does it in a quiet channel,
    /// so that no waiter needs a timer of its own.
    pub fn expire_due(&self, now: Instant) {
        let mut inner = self.lock();
        if !inner.expiry.is_empty() {
            expire(&mut inner, now, self.limits.timeout);
        }
    }

    /// Whether anyone waits (lets a writer skip extracting a block's tx ids).
    pub fn is_empty(&self) -> bool {
        self.lock().by_tx.is_empty()
    }

    /// Waiters registered now.
    pub fn len(&self) -> usize {
        self.lock().by_tx.len()
    }

    /// Tells every waiter that its envelope will not be written (the chain stopped).
    pub fn fail_all(&self, reason: &str) {
        let drained: Vec<Waiter> = {
            let mut inner = self.lock();
            inner.expiry.clear();
            inner.by_tx.drain().map(|(_, w)| w).collect()
        };
        for w in drained {
            let _ = w.answer.send(Err(NotWritten::Dropped(reason.to_string())));
        }
    }
}

/// Removes and returns the waiter of exactly `tx_id`, if there is one.
fn take(inner: &mut Inner, tx_id: &str) -> Option<Waiter> {
    let key = tx_key::key(tx_id);
    match inner.by_tx.get(&key) {
        Some(w) if w.tx_id == tx_id => inner.by_tx.remove(&key),
        _ => None,
    }
}

/// Answers and forgets the waiters whose deadline passed by `now`, and drops expiry
/// records of waiters already answered.
fn expire(inner: &mut Inner, now: Instant, timeout: Duration) {
    while let Some((deadline, serial, _)) = inner.expiry.front() {
        let (deadline, serial) = (*deadline, *serial);
        let live =
            |inner: &Inner, key: &u128| inner.by_tx.get(key).map(|w| w.serial) == Some(serial);
        if deadline > now {
            // Records of answered waiters pile up behind a live one; drop them once they
            // outnumber the waiters so the queue stays bounded by the registry.
            if inner.expiry.len() > 2 * inner.by_tx.len() + 64 {
                let by_tx = std::mem::take(&mut inner.by_tx);
                inner
                    .expiry
                    .retain(|(_, s, key)| by_tx.get(key).map(|w| w.serial) == Some(*s));
                inner.by_tx = by_tx;
            }
            return;
        }
        let Some((_, _, key)) = inner.expiry.pop_front() else {
            return;
        };
        if live(inner, &key) {
            if let Some(w) = inner.by_tx.remove(&key) {
                let _ = w.answer.send(Err(NotWritten::TimedOut { after: timeout }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_due_answers_only_waiters_past_their_deadline() {
        let w = registry(10, 60);
        let t0 = Instant::now();
        let mut early = w.register("early", t0).expect("room");
        let mut late = w
            .register("late", t0 + Duration::from_secs(30))
            .expect("room");
        w.expire_due(t0 + Duration::from_secs(59));
        assert!(early.try_recv().is_err(), "not due yet");
        w.expire_due(t0 + Duration::from_secs(61));
        assert_eq!(
            early.try_recv(),
            Ok(Err(NotWritten::TimedOut {
                after: Duration::from_secs(60)
            }))
        );
        assert!(late.try_recv().is_err(), "still within its minute");
        assert_eq!(w.len(), 1);
    }

    fn registry(capacity: usize, timeout_secs: u64) -> CommitWaiters {
        CommitWaiters::new(WaiterLimits {
            capacity,
            timeout: Duration::from_secs(timeout_secs),
        })
    }

    #[test]
    fn a_block_answers_its_waiters_and_only_them() {
        let w = registry(10, 60);
        let t0 = Instant::now();
        let mut a = w.register("a", t0).expect("room");
        let mut b = w.register("b", t0).expect("room");
        w.commit_block(7, ["a", "x"], t0);
        assert_eq!(a.try_recv(), Ok(Ok(7)));
        assert!(b.try_recv().is_err(), "b is still waiting");
        w.reject("b", "refused on re-validation".into());
        assert_eq!(
            b.try_recv(),
            Ok(Err(NotWritten::Dropped("refused on re-validation".into())))
        );
        assert!(w.is_empty());
    }

    #[test]
    fn a_full_registry_refuses_new_waiters_until_one_is_answered() {
        let w = registry(2, 60);
        let t0 = Instant::now();
        let _a = w.register("a", t0).expect("room");
        let _b = w.register("b", t0).expect("room");
        assert_eq!(
            w.register("c", t0).err(),
            Some(WaiterError::Full { capacity: 2 })
        );
        w.commit_block(1, ["a"], t0);
        w.register("c", t0).expect("room again");
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn waiters_past_their_deadline_are_told_and_forgotten() {
        let w = registry(10, 60);
        let t0 = Instant::now();
        let mut old = w.register("old", t0).expect("room");
        let mut young = w
            .register("young", t0 + Duration::from_secs(30))
            .expect("room");
        // At 61 s only the first is past its deadline; the sweep runs on any use.
        w.commit_block(3, ["unrelated"], t0 + Duration::from_secs(61));
        assert_eq!(
            old.try_recv(),
            Ok(Err(NotWritten::TimedOut {
                after: Duration::from_secs(60)
            }))
        );
        assert!(young.try_recv().is_err(), "still within its time");
        assert_eq!(w.len(), 1);
        // A registration sweeps too.
        let _late = w
            .register("late", t0 + Duration::from_secs(91))
            .expect("room");
        assert!(matches!(
            young.try_recv(),
            Ok(Err(NotWritten::TimedOut { .. }))
        ));
    }

    #[test]
    fn a_second_waiter_on_a_tx_id_replaces_the_first_and_keeps_its_own_deadline() {
        let w = registry(10, 60);
        let t0 = Instant::now();
        let mut first = w.register("t", t0).expect("room");
        let mut second = w.register("t", t0 + Duration::from_secs(50)).expect("room");
        assert!(matches!(first.try_recv(), Ok(Err(NotWritten::Dropped(_)))));
        // The first registration's deadline passes: the second is not touched.
        w.commit_block(1, [], t0 + Duration::from_secs(70));
        assert!(second.try_recv().is_err(), "second still waits");
        w.commit_block(2, ["t"], t0 + Duration::from_secs(71));
        assert_eq!(second.try_recv(), Ok(Ok(2)));
    }

    #[test]
    fn answered_waiters_do_not_grow_the_expiry_queue_without_bound() {
        let w = registry(10, 60);
        let t0 = Instant::now();
        let _long = w.register("long", t0).expect("room");
        for i in 0..10_000 {
            let id = format!("tx{i}");
            let _rx = w.register(&id, t0).expect("room");
            w.commit_block(i, [id.as_str()], t0);
        }
        // One lock at a time: the registry's mutex is not reentrant.
        let records = w.lock().expiry.len();
        let waiting = w.len();
        assert!(
            records <= 2 * waiting + 65,
            "{records} expiry records for {waiting} waiters"
        );
    }

    #[test]
    fn failing_all_answers_everyone() {
        let w = registry(10, 60);
        let t0 = Instant::now();
        let mut a = w.register("a", t0).expect("room");
        let cancelled = w.register("b", t0).expect("room");
        w.cancel("b");
        drop(cancelled);
        w.fail_all("storage failure");
        assert_eq!(
            a.try_recv(),
            Ok(Err(NotWritten::Dropped("storage failure".into())))
        );
        assert!(w.is_empty());
    }
}
