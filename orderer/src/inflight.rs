//! Bytes of Broadcast envelopes a node holds before it answers them, bounded per node.
//!
//! tonic reads a message's declared length and buffers its bytes until all of them have
//! arrived; decoded envelopes then queue on their stream until they are checked. A client
//! that declares large envelopes and sends them slowly, or never finishes one, or sends
//! thousands and never reads an answer, would otherwise make the node hold up to
//! `max_grpc_message_bytes` per partial message and a queue of envelopes per stream, on
//! as many streams as it opens (the fuzz and hostile-client work found the gap).
//!
//! So every byte a Broadcast stream's body yields takes room in one node-wide budget
//! (`[limits] broadcast_buffer_bytes`), and keeps it:
//! - while it belongs to a message not yet complete (the stream's [`StreamShare`]);
//! - once its message is decoded, with the envelope ([`HeldBytes`], in
//!   `ReceivedEnvelope`), until the envelope's checks begin (its bytes then belong to the
//!   batch being verified, bounded by the batch size);
//! - and all of it returns when the stream ends.
//!
//! A stream whose next bytes do not fit waits for room; after [`ROOM_WAIT`] without room
//! it ends with RESOURCE_EXHAUSTED (the envelopes it sent before are answered). Memory
//! for received envelopes is therefore at most the budget, whatever clients do. The
//! trade-off: clients that fill the budget and stall delay everyone's Broadcasts (they
//! cannot make the node hold more); the budget holds a few of the largest messages at
//! once, and in normal traffic envelopes leave it within milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// How long a Broadcast stream waits for room in the budget before it is ended.
pub const ROOM_WAIT: Duration = Duration::from_secs(10);

/// The node-wide budget.
#[derive(Debug, Clone)]
pub struct BroadcastBuffers {
    room: Arc<Semaphore>,
    limit: usize,
    /// `broadcast_buffered_bytes`: what is held, for the operator.
    gauge: Gauge,
}

impl BroadcastBuffers {
    /// A budget of `limit` bytes (at least one of the largest messages must fit: the
    /// config checks `limit >= max_grpc_message_bytes`), reported on `gauge`.
    pub fn new(limit: usize, gauge: Gauge) -> Self {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Self {
            room: Arc::new(Semaphore::new(limit)),
            limit,
            gauge,
        }
    }

    /// Bytes held now (for the metrics).
    pub fn held(&self) -> usize {
        self.limit.saturating_sub(self.room.available_permits())
    }

    /// The budget.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.room.add_permits(bytes);
            self.gauge.dec_by(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
}

/// One stream's bytes of messages not yet complete.
#[derive(Debug)]
pub struct StreamShare {
    buffers: BroadcastBuffers,
    held: AtomicUsize,
}

impl StreamShare {
    /// A stream's share of `buffers`, holding nothing yet.
    pub fn new(buffers: BroadcastBuffers) -> Arc<Self> {
        Arc::new(Self {
            buffers,
            held: AtomicUsize::new(0),
        })
    }

    /// A message of `len` bytes (its 5-byte gRPC prefix included) was decoded: its room
    /// moves to the envelope.
    pub fn decoded(&self, len: usize) -> HeldBytes {
        let mut moved = 0;
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                moved = held.min(len);
                Some(held - moved)
            });
        HeldBytes {
            buffers: self.buffers.clone(),
            bytes: moved,
        }
    }
}

impl Drop for StreamShare {
    fn drop(&mut self) {
        self.buffers.give_back(*self.held.get_mut());
    }
}

/// A decoded envelope's room in the budget, given back when dropped.
#[derive(Debug)]
pub struct HeldBytes {
    buffers: BroadcastBuffers,
    bytes: usize,
}

impl HeldBytes {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.buffers.give_back(self.bytes);
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A data frame waiting for room, and until when it may wait.
struct Waiting {
    frame: Frame<Bytes>,
    room: Acquire,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// A Broadcast request body whose data takes room in the budget before tonic sees it.
pub struct BudgetedBody {
    inner: tonic::body::Body,
    share: Arc<StreamShare>,
    waiting: Option<Waiting>,
}

impl BudgetedBody {
    /// Wraps a Broadcast request's body; the stream's decoder moves the room of each
    /// decoded message out of `share`.
    pub fn new(inner: tonic::body::Body, share: Arc<StreamShare>) -> Self {
        Self {
            inner,
            share,
            waiting: None,
        }
    }

    fn took(&self, bytes: usize, permit: OwnedSemaphorePermit) {
        permit.forget();
        self.share.held.fetch_add(bytes, Ordering::AcqRel);
        self.share
            .buffers
            .gauge
            .inc_by(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

fn no_room(bytes: usize, limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "the node's Broadcast buffers ({limit} bytes) had no room for {bytes} more bytes \
         within {}s: envelopes already received wait for their checks",
        ROOM_WAIT.as_secs()
    ))
}

impl Body for BudgetedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(w) = this.waiting.as_mut() {
            let bytes = w.frame.data_ref().map_or(0, Bytes::len);
            return match w.room.as_mut().poll(cx) {
                Poll::Ready(Ok(permit)) => {
                    let Some(w) = this.waiting.take() else {
                        return Poll::Pending;
                    };
                    this.took(bytes, permit);
                    Poll::Ready(Some(Ok(w.frame)))
                }
                Poll::Ready(Err(_)) => {
                    Poll::Ready(Some(Err(Status::unavailable("the node is stopping"))))
                }
                Poll::Pending => match w.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.waiting = None;
                        Poll::Ready(Some(Err(no_room(bytes, this.share.buffers.limit))))
                    }
                    Poll::Pending => Poll::Pending,
                },
            };
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let bytes = frame.data_ref().map_or(0, Bytes::len);
        if bytes == 0 {
            return Poll::Ready(Some(Ok(frame)));
        }
        let buffers = &this.share.buffers;
        let Ok(want) = u32::try_from(bytes) else {
            return Poll::Ready(Some(Err(no_room(bytes, buffers.limit))));
        };
        if bytes > buffers.limit {
            return Poll::Ready(Some(Err(no_room(bytes, buffers.limit))));
        }
        if let Ok(permit) = buffers.room.clone().try_acquire_many_owned(want) {
            this.took(bytes, permit);
            return Poll::Ready(Some(Ok(frame)));
        }
        this.waiting = Some(Waiting {
            frame,
            room: Box::pin(buffers.room.clone().acquire_many_owned(want)),
            deadline: Box::pin(tokio::time::sleep(ROOM_WAIT)),
        });
        // Registers the waker with the semaphore and the timer.
        Pin::new(this).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body of the given data frames, then its end.
    fn body(frames: Vec<&'static [u8]>) -> tonic::body::Body {
        let stream = tokio_stream::iter(
            frames
                .into_iter()
                .map(|f| Ok::<_, Status>(Frame::data(Bytes::from_static(f)))),
        );
        tonic::body::Body::new(http_body_util::StreamBody::new(stream))
    }

    #[tokio::test]
    async fn room_is_held_until_the_envelope_goes_and_given_back_when_the_stream_ends() {
        let buffers = BroadcastBuffers::new(10, Gauge::default());
        let share = StreamShare::new(buffers.clone());
        let mut b = BudgetedBody::new(body(vec![b"abcd", b"efgh"]), share.clone());
        assert!(b.frame().await.is_some());
        assert!(b.frame().await.is_some());
        assert_eq!(buffers.held(), 8);
        // A message of 6 bytes decoded: its room moves to the envelope.
        let held = share.decoded(6);
        assert_eq!((held.bytes(), buffers.held()), (6, 8));
        drop(held);
        assert_eq!(buffers.held(), 2);
        // The stream ends with a partial message: its room comes back too.
        drop(b);
        drop(share);
        assert_eq!((buffers.held(), buffers.gauge.get()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_without_room_waits_then_ends_resource_exhausted() {
        let buffers = BroadcastBuffers::new(6, Gauge::default());
        let holder = StreamShare::new(buffers.clone());
        let mut first = BudgetedBody::new(body(vec![b"abcd"]), holder.clone());
        assert!(first.frame().await.is_some());
        let envelope = holder.decoded(4);

        let share = StreamShare::new(buffers.clone());
        let mut second = BudgetedBody::new(body(vec![b"efgh"]), share.clone());
        // Room comes back before the deadline: the frame goes through.
        let (frame, ()) = tokio::join!(second.frame(), async {
            tokio::time::sleep(ROOM_WAIT / 2).await;
            drop(envelope);
        });
        assert!(frame.expect("a frame").is_ok());
        assert_eq!(buffers.held(), 4);

        // No room for the deadline: RESOURCE_EXHAUSTED, and nothing more is held.
        let mut third = BudgetedBody::new(body(vec![b"ijkl"]), StreamShare::new(buffers.clone()));
        let refused = third
            .frame()
            .await
            .expect("an answer")
            .expect_err("no room");
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert_eq!(buffers.held(), 4);
    }
}
