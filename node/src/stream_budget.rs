//! Server streams whose buffered answers are bounded in bytes, not only in count — per
//! stream, per client and per node.
//!
//! A client that opens a stream and never reads it must not pin memory without bound:
//! 16 buffered blocks of up to 16 MiB each is 256 MiB per stream. Here every item
//! carries permits of byte budgets, taken before it is queued; a producer that runs ahead
//! of its reader waits. Three budgets count each item:
//!
//! - the stream's own ([`channel`]'s `budget_bytes`): one slow reader cannot hold more;
//! - its client's, shared by every stream of one certificate ([`StreamLimiter`]): a
//!   client's many streams together hold at most that much;
//! - the node's, shared by every stream of the service: a thousand never-reading streams
//!   from many clients together hold at most that much, so the node's memory stays
//!   bounded whatever the number of readers ([`BudgetSender::share`] joins the last two).
//!
//! An item's permits are returned when the client's side of the stream asks for the item
//! *after* it, not when it takes the item: the transport (tonic's encoder, HTTP/2's send
//! buffer) still holds an item it has taken until it wants the next one, and a stream
//! whose peer stopped reading stops asking. So the budgets count what sits in the
//! transport too.
//!
//! An item larger than a whole budget takes the whole budget, so it still goes through,
//! alone.
//!
//! **The trade-off.** Once never-reading streams of enough clients hold the whole node
//! budget, every other stream of the service waits for them to read or go. Each client's
//! share is its budget, so it takes node budget ÷ client budget misbehaving identities
//! (32 with the defaults) — each an accountable member of the consortium — to stall other
//! readers, and never memory beyond the node budget.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;

/// The receiving side went away: nobody reads the stream any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A byte budget several streams draw from.
#[derive(Debug, Clone)]
pub struct SharedBudget {
    permits: Arc<Semaphore>,
    max_permits: usize,
}

impl SharedBudget {
    /// A budget of `bytes` bytes.
    pub fn new(bytes: usize) -> Self {
        let max_permits = bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(max_permits)),
            max_permits,
        }
    }

    /// Bytes not held by any queued item.
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits()
    }

    /// The budget's size.
    pub fn total_bytes(&self) -> usize {
        self.max_permits
    }

    /// Bytes held by queued items (for metrics).
    pub fn held_bytes(&self) -> usize {
        self.max_permits.saturating_sub(self.available_bytes())
    }

    async fn acquire(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Closed> {
        let want = u32::try_from(bytes.clamp(1, self.max_permits)).unwrap_or(u32::MAX);
        self.permits
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| Closed)
    }
}

/// The permits one queued item holds.
type Permits = Vec<OwnedSemaphorePermit>;

/// Queues items for one stream against its byte budgets.
pub struct BudgetSender<T> {
    tx: mpsc::Sender<(T, Permits)>,
    own: SharedBudget,
    shared: Vec<SharedBudget>,
}

/// The stream a service returns: yields the items, returning each one's bytes to the
/// budgets when the next one is asked for.
pub struct BudgetStream<T> {
    rx: mpsc::Receiver<(T, Permits)>,
    /// The permits of the item yielded last (see the module docs).
    last: Option<Permits>,
}

/// A stream of at most `budget_bytes` queued bytes (and at most `max_items` items).
pub fn channel<T>(budget_bytes: usize, max_items: usize) -> (BudgetSender<T>, BudgetStream<T>) {
    let (tx, rx) = mpsc::channel(max_items.max(1));
    (
        BudgetSender {
            tx,
            own: SharedBudget::new(budget_bytes),
            shared: Vec::new(),
        },
        BudgetStream { rx, last: None },
    )
}

impl<T> BudgetSender<T> {
    /// Counts this stream's items against `slot`'s client and node budgets too, from the
    /// next item on.
    pub fn share(&mut self, slot: &StreamSlot) {
        self.shared = vec![slot.client_budget.clone(), slot.node_budget.clone()];
    }

    /// Queues `item` of `bytes` bytes, waiting while the reader is too far behind (or the
    /// client's or node's budget is spent); fails once the reader is gone (also while
    /// waiting).
    pub async fn send(&self, item: T, bytes: usize) -> Result<(), Closed> {
        let acquire = async {
            let mut permits = Vec::with_capacity(1 + self.shared.len());
            for budget in std::iter::once(&self.own).chain(&self.shared) {
                permits.push(budget.acquire(bytes).await?);
            }
            Ok::<_, Closed>(permits)
        };
        let permits = tokio::select! {
            p = acquire => p?,
            _ = self.tx.closed() => return Err(Closed),
        };
        self.tx.send((item, permits)).await.map_err(|_| Closed)
    }

    /// Resolves once the reader is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Bytes that may still be queued on this stream before a sender waits.
    pub fn available_bytes(&self) -> usize {
        self.own.available_bytes()
    }
}

impl<T> Stream for BudgetStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        // Asked for the next item: the transport is done with the last one.
        self.last = None;
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((item, permits))) => {
                self.last = Some(permits);
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Counts the streams each client (a certificate hash) holds open, up to a cap, and
/// hands out the byte budgets their items share: one per client, one for the node.
#[derive(Debug, Clone)]
pub struct StreamLimiter {
    max_per_client: usize,
    client_bytes: usize,
    node: SharedBudget,
    open: Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], ClientStreams>>>,
}

#[derive(Debug)]
struct ClientStreams {
    count: usize,
    budget: SharedBudget,
}

/// One counted stream; the count drops with it.
#[derive(Debug)]
pub struct StreamSlot {
    open: Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], ClientStreams>>>,
    client: [u8; 32],
    client_budget: SharedBudget,
    node_budget: SharedBudget,
}

/// What every stream of one client may hold queued together, unless configured:
/// 8 MiB.
pub const DEFAULT_CLIENT_BYTES: usize = 8 * 1024 * 1024;

/// What every stream of one service may hold queued together, unless configured:
/// 256 MiB.
pub const DEFAULT_NODE_BYTES: usize = 256 * 1024 * 1024;

impl StreamLimiter {
    /// At most `max_per_client` streams per client, with the default byte budgets
    /// ([`DEFAULT_CLIENT_BYTES`] per client, [`DEFAULT_NODE_BYTES`] for the node).
    pub fn new(max_per_client: usize) -> Self {
        Self::with_budgets(max_per_client, DEFAULT_CLIENT_BYTES, DEFAULT_NODE_BYTES)
    }

    /// At most `max_per_client` streams per client, whose items hold at most
    /// `client_bytes` per client and `node_bytes` in all.
    pub fn with_budgets(max_per_client: usize, client_bytes: usize, node_bytes: usize) -> Self {
        Self {
            max_per_client,
            client_bytes,
            node: SharedBudget::new(node_bytes),
            open: Arc::default(),
        }
    }

    /// The most streams one client may hold.
    pub fn max_per_client(&self) -> usize {
        self.max_per_client
    }

    /// The node-wide budget (for metrics).
    pub fn node_budget(&self) -> &SharedBudget {
        &self.node
    }

    /// A slot for one more stream of `client`, or `None` when it holds the most already.
    pub fn admit(&self, client: [u8; 32]) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let entry = open.entry(client).or_insert_with(|| ClientStreams {
            count: 0,
            budget: SharedBudget::new(self.client_bytes),
        });
        if entry.count >= self.max_per_client {
            return None;
        }
        entry.count += 1;
        Some(StreamSlot {
            open: self.open.clone(),
            client,
            client_budget: entry.budget.clone(),
            node_budget: self.node.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = open.get_mut(&self.client) {
            c.count = c.count.saturating_sub(1);
            if c.count == 0 {
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
        assert_eq!(
            tx.available_bytes(),
            0,
            "the item taken last still counts until the next is asked for"
        );
        // Larger than the whole budget: it waits for all of it, then goes alone.
        let big = tokio::spawn(async move {
            tx.send(4, 1_000_000).await.expect("goes through");
            tx
        });
        assert_eq!(rx.next().await, Some(2));
        // Asking for the next item returns 2's bytes: the big one goes through, alone.
        assert_eq!(rx.next().await, Some(4));
        let tx = big.await.expect("task");
        assert_eq!(tx.available_bytes(), 0, "4 holds the whole budget");
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

    #[tokio::test]
    async fn streams_of_one_client_share_its_budget_and_all_share_the_nodes() {
        let limiter = StreamLimiter::with_budgets(8, 100, 150);
        let slot = |client: u8| limiter.admit([client; 32]).expect("admitted");
        let (a1, a2, b) = (slot(1), slot(1), slot(2));
        let stream = |s: &StreamSlot| {
            let (mut tx, rx) = channel::<u32>(1_000, 100);
            tx.share(s);
            (tx, rx)
        };
        let (tx_a1, mut rx_a1) = stream(&a1);
        let (tx_a2, _rx_a2) = stream(&a2);
        let (tx_b, _rx_b) = stream(&b);
        let short = std::time::Duration::from_millis(50);
        tx_a1.send(1, 60).await.expect("within every budget");
        // Client 1's second stream: 60 more would pass its own budget but not the client's.
        assert!(
            tokio::time::timeout(short, tx_a2.send(2, 60))
                .await
                .is_err(),
            "the client's streams share 100 bytes"
        );
        tx_a2
            .send(3, 40)
            .await
            .expect("the client's budget has 40 left");
        // Client 2: 100 left in the node's budget of 150 … 50 of them.
        assert!(
            tokio::time::timeout(short, tx_b.send(4, 60)).await.is_err(),
            "all streams share the node's 150 bytes"
        );
        tx_b.send(5, 50).await.expect("the node's last 50");
        assert_eq!(limiter.node_budget().held_bytes(), 150);
        // Client 1 reads: its bytes come back once it asks for what follows.
        assert_eq!(rx_a1.next().await, Some(1));
        drop(rx_a1);
        tokio::task::yield_now().await;
        assert_eq!(limiter.node_budget().held_bytes(), 90, "60 returned");
    }
}
