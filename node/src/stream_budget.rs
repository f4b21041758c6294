//! Server streams whose buffered answers are bounded in bytes, not only in count.
//!
//! A client that opens a stream and never reads it must not pin memory without bound:
//! 16 buffered blocks of up to 16 MiB each is 256 MiB per stream. Here every item
//! carries permits of a per-stream byte budget, taken before it is queued and given back
//! when the client's side of the stream takes it; a producer that runs ahead of its reader
//! waits. An item larger than the whole budget takes the whole budget, so it still goes
//! through, alone.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;

/// The receiving side went away: nobody reads the stream any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// Queues items for one stream against its byte budget.
pub struct BudgetSender<T> {
    tx: mpsc::Sender<(T, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    max_permits: usize,
}

/// The stream a service returns: yields the items, returning their bytes to the budget.
pub struct BudgetStream<T> {
    rx: mpsc::Receiver<(T, OwnedSemaphorePermit)>,
}

/// A stream of at most `budget_bytes` queued bytes (and at most `max_items` items).
pub fn channel<T>(budget_bytes: usize, max_items: usize) -> (BudgetSender<T>, BudgetStream<T>) {
    let max_permits = budget_bytes.clamp(1, Semaphore::MAX_PERMITS);
    let (tx, rx) = mpsc::channel(max_items.max(1));
    (
        BudgetSender {
            tx,
            budget: Arc::new(Semaphore::new(max_permits)),
            max_permits,
        },
        BudgetStream { rx },
    )
}

impl<T> BudgetSender<T> {
    /// Queues `item` of `bytes` bytes, waiting while the reader is too far behind; fails
    /// once the reader is gone (also while waiting).
    pub async fn send(&self, item: T, bytes: usize) -> Result<(), Closed> {
        let want = u32::try_from(bytes.clamp(1, self.max_permits)).unwrap_or(u32::MAX);
        let permit = tokio::select! {
            p = self.budget.clone().acquire_many_owned(want) => p.map_err(|_| Closed)?,
            _ = self.tx.closed() => return Err(Closed),
        };
        self.tx.send((item, permit)).await.map_err(|_| Closed)
    }

    /// Resolves once the reader is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Bytes that may still be queued before a sender waits.
    pub fn available_bytes(&self) -> usize {
        self.budget.available_permits()
    }
}

impl<T> Stream for BudgetStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        // The permit is dropped here: the item's bytes leave the budget as the client's
        // stream takes the item.
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|(item, _permit)| item))
    }
}

/// Counts the streams each client (a certificate hash) holds open, up to a cap.
#[derive(Debug, Clone)]
pub struct StreamLimiter {
    max_per_client: usize,
    open: Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], usize>>>,
}

/// One counted stream; the count drops with it.
#[derive(Debug)]
pub struct StreamSlot {
    open: Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], usize>>>,
    client: [u8; 32],
}

impl StreamLimiter {
    /// At most `max_per_client` streams per client.
    pub fn new(max_per_client: usize) -> Self {
        Self {
            max_per_client,
            open: Arc::default(),
        }
    }

    /// The most streams one client may hold.
    pub fn max_per_client(&self) -> usize {
        self.max_per_client
    }

    /// A slot for one more stream of `client`, or `None` when it holds the most already.
    pub fn admit(&self, client: [u8; 32]) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(client).or_default();
        if *n >= self.max_per_client {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            open: self.open.clone(),
            client,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn a_producer_waits_for_its_reader_once_the_budget_is_spent() {
        let (tx, mut rx) = channel::<u32>(100, 1_000);
        tx.send(1, 60).await.expect("fits");
        tx.send(2, 40).await.expect("fits exactly");
        assert_eq!(tx.available_bytes(), 0);
        let blocked = tokio::time::timeout(std::time::Duration::from_millis(50), tx.send(3, 10));
        assert!(
            blocked.await.is_err(),
            "no room until the reader takes something"
        );
        assert_eq!(rx.next().await, Some(1));
        assert_eq!(tx.available_bytes(), 60);
        // Larger than the whole budget: it waits for all of it, then goes alone.
        let big = tokio::spawn(async move {
            tx.send(4, 1_000_000).await.expect("goes through");
            tx
        });
        assert_eq!(rx.next().await, Some(2));
        let tx = big.await.expect("task");
        assert_eq!(tx.available_bytes(), 0);
        assert_eq!(rx.next().await, Some(4));
        drop(rx);
        assert_eq!(tx.send(5, 1).await, Err(Closed), "the reader is gone");
    }

    #[test]
    fn each_client_holds_at_most_its_streams_and_a_closed_one_makes_room() {
        let limiter = StreamLimiter::new(2);
        let a = limiter.admit([1; 32]).expect("first");
        let _b = limiter.admit([1; 32]).expect("second");
        assert!(limiter.admit([1; 32]).is_none(), "a third is refused");
        let _other = limiter
            .admit([2; 32])
            .expect("another client is not affected");
        drop(a);
        assert!(limiter.admit([1; 32]).is_some(), "room again");
    }

    #[tokio::test]
    async fn a_waiting_producer_learns_that_its_reader_left() {
        let (tx, rx) = channel::<u32>(10, 10);
        tx.send(1, 10).await.expect("fits");
        let waiting = tokio::spawn(async move { tx.send(2, 10).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiting.await.expect("task"), Err(Closed));
    }
}
