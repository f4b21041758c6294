//! The Kafka chain: the IO around [`KafkaCore`] — producing to the channel's partition,
//! consuming it in offset order, the batch timer and the block writer.
//!
//! Three tasks and a thread per channel:
//! - the **connector** produces a `Connect` message until the brokers acknowledge one,
//!   and again after any failed delivery; the chain takes envelopes only once the
//!   consumer has read past this orderer's latest `Connect` (it is then connected *and*
//!   caught up with everything ordered before it), and answers SERVICE_UNAVAILABLE with
//!   the reason until then;
//! - [`Chain::order`] produces `Regular` messages and answers after the broker's
//!   delivery report (acks=all: the message is on every in-sync replica);
//! - the **consumer** feeds every message of the partition to the core, from the offset
//!   after the last block's, and carries out its actions: blocks go to the writer, the
//!   batch timer produces `TimeToCut`, refused envelopes' waiters are told why;
//! - the **writer** thread signs and appends blocks (one fsync each). A config block is
//!   written before the consumer reads on, so every later message is checked against
//!   the configuration it brings.
//!
//! A graceful halt stops taking envelopes, then lets the consumer run until everything
//! this orderer had acknowledged is in a written block (bounded by
//! [`KafkaOptions::halt_timeout`]); a crash loses nothing either, because the partition
//! keeps it and the restarted orderer reads on from its last block's offset.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::broker::{BrokerError, PartitionConfig, PartitionConsumer, PartitionProducer};
use super::core::{KafkaCore, KafkaMessage};
use super::wire;
use crate::chain::{BoxFuture, Chain, ChainError, ChainStatus, OrderRequest, Pending};
use crate::support::ChainSupport;

mod consume;
use consume::consume_loop;

/// How a Kafka chain reaches its partition and how patient it is.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// The channel's partition.
    pub partition: PartitionConfig,
    /// This orderer's name, carried in its `Connect` messages (for operators reading
    /// the topic).
    pub orderer: String,
    /// Wait between attempts to reach the brokers.
    pub retry_backoff: Duration,
    /// How long a graceful halt waits for this orderer's acknowledged envelopes to be
    /// cut and written (they are safe in the partition either way).
    pub halt_timeout: Duration,
    /// Most messages this orderer may have produced (or have in flight) beyond what its
    /// consumer has handled: past it, `order` waits. Bounds the backlog between taking
    /// an envelope and writing its block, so an orderer short of CPU slows its clients
    /// instead of falling ever further behind the partition.
    pub max_lag: u64,
}

impl KafkaOptions {
    /// Options with Ordo's defaults for `partition`.
    pub fn new(partition: PartitionConfig, orderer: impl Into<String>) -> Self {
        Self {
            partition,
            orderer: orderer.into(),
            retry_backoff: Duration::from_millis(500),
            halt_timeout: Duration::from_secs(10),
            max_lag: 2_000,
        }
    }
}

/// The Kafka topic of `channel` when the channel config names none.
pub fn default_topic(channel: &str) -> String {
    format!("ordo.{channel}")
}

/// Whether the chain can take envelopes, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Readiness {
    /// No `Connect` acknowledged yet (or a delivery failed since): why.
    Connecting(String),
    /// Connected; reading up to this orderer's `Connect` at this offset.
    CatchingUp(i64),
    /// Taking envelopes.
    Ready,
    /// Stopped for good (ledger failure, partition lost its data): why.
    Failed(String),
}

/// What the producing side and the tasks share. It holds no ledger: a delivery report
/// or a control message still in flight after a halt must not keep the channel's ledger
/// open (the consumer and the writer, which hold it, are waited for by `halt`).
struct Link {
    channel: String,
    opts: KafkaOptions,
    producer: RwLock<Arc<PartitionProducer>>,
    readiness: watch::Sender<Readiness>,
    /// Woken when a delivery failed: the connector reconnects.
    reconnect: Notify,
    /// Woken as the consumer moves on (producers held back by `max_lag` look again).
    consumer_moved: Notify,
    /// The highest offset of a message this orderer produced and had acknowledged.
    produced: AtomicI64,
    /// The last offset the consumer has handled.
    consumed: AtomicI64,
    /// The partition's high watermark as the consumer last heard it (-1: not yet).
    high_watermark: Arc<AtomicI64>,
    /// Produces whose delivery report is outstanding.
    inflight: AtomicUsize,
    /// Deliveries that failed (the chain reconnects after each).
    delivery_failures: AtomicU64,
    /// Set by `halt`: no more envelopes taken.
    halting: CancellationToken,
    /// Every task stops.
    stop: CancellationToken,
    failed: AtomicBool,
}

/// A running Kafka chain.
pub struct KafkaChain {
    link: Arc<Link>,
    stopped: Mutex<watch::Receiver<bool>>,
}

impl KafkaChain {
    /// Starts the chain's tasks on the current Tokio runtime, resuming after the ledger's
    /// last block.
    pub fn start(support: Arc<ChainSupport>, opts: KafkaOptions) -> Result<Arc<Self>, ChainError> {
        // The last block, or the config block a node joined after (kept in the base).
        let last = support
            .ledger()
            .tip_block()
            .map_err(|e| ChainError::Storage(e.to_string()))?;
        let resume = wire::resume_point(last.as_ref())
            .map_err(|e| ChainError::Unsupported(e.to_string()))?;
        let producer = PartitionProducer::new(&opts.partition)
            .map_err(|e| ChainError::Unsupported(e.to_string()))?;
        let consumer = PartitionConsumer::new(&opts.partition, resume.last_offset + 1)
            .map_err(|e| ChainError::Unsupported(e.to_string()))?;
        let core = KafkaCore::resume(support.state().limits, resume);
        let (readiness, _) = watch::channel(Readiness::Connecting(format!(
            "connecting to kafka brokers {}",
            opts.partition.brokers
        )));
        let link = Arc::new(Link {
            channel: support.channel_id().to_string(),
            producer: RwLock::new(Arc::new(producer)),
            readiness,
            reconnect: Notify::new(),
            consumer_moved: Notify::new(),
            produced: AtomicI64::new(-1),
            consumed: AtomicI64::new(resume.last_offset),
            high_watermark: consumer.high_watermark(),
            inflight: AtomicUsize::new(0),
            delivery_failures: AtomicU64::new(0),
            halting: CancellationToken::new(),
            stop: CancellationToken::new(),
            failed: AtomicBool::new(false),
            opts,
        });
        info!(
            channel = support.channel_id(),
            topic = %link.opts.partition.topic,
            from_offset = resume.last_offset + 1,
            next_block = resume.next_block,
            "kafka chain starting"
        );
        let (wtx, wrx) = mpsc::channel(8);
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let (writer_done_tx, writer_done_rx) = oneshot::channel();
        {
            let link = link.clone();
            let support = support.clone();
            std::thread::Builder::new()
                .name(format!("kafka-writer-{}", support.channel_id()))
                .spawn(move || {
                    crate::writer::run(&support, wrx, |e| {
                        link.fail(&support, format!("writing a block failed: {e}"))
                    });
                    // Release the ledger before reporting the stop, so that whoever
                    // waits on `halt` can reopen it.
                    drop(support);
                    let _ = writer_done_tx.send(());
                })
                .map_err(|e| ChainError::Storage(format!("cannot start the writer: {e}")))?;
        }
        tokio::spawn(connector(link.clone()));
        tokio::spawn({
            let link = link.clone();
            async move {
                consume_loop(&link, support, consumer, core, wtx).await;
                link.stop.cancel();
                let _ = writer_done_rx.await;
                let _ = stopped_tx.send(true);
            }
        });
        Ok(Arc::new(Self {
            link,
            stopped: Mutex::new(stopped_rx),
        }))
    }

    fn check_ready(&self) -> Result<(), ChainError> {
        if self.link.halting.is_cancelled() || self.link.stop.is_cancelled() {
            if self.link.failed.load(Ordering::Acquire) {
                return Err(ChainError::Storage(
                    "the chain stopped after a failure".into(),
                ));
            }
            return Err(ChainError::ShuttingDown);
        }
        match &*self.link.readiness.borrow() {
            Readiness::Ready => Ok(()),
            Readiness::Connecting(reason) => Err(ChainError::NotReady {
                reason: reason.clone(),
            }),
            Readiness::CatchingUp(offset) => Err(ChainError::NotReady {
                reason: format!("catching up with the kafka partition (up to offset {offset})"),
            }),
            Readiness::Failed(reason) => Err(ChainError::NotReady {
                reason: reason.clone(),
            }),
        }
    }

    /// Produces `message` once the chain is ready; the returned future resolves with the
    /// broker's delivery report.
    async fn produce(
        &self,
        message: &KafkaMessage,
    ) -> Result<BoxFuture<'static, Result<(), ChainError>>, ChainError> {
        self.check_ready()?;
        self.wait_for_consumer().await?;
        let bytes = wire::encode(message, &self.link.opts.orderer);
        let delivery = loop {
            let producer = self.link.producer();
            match producer.enqueue(&bytes) {
                Ok(d) => break d,
                Err(BrokerError::QueueFull) => {
                    // Backpressure: librdkafka's queue drains as the brokers acknowledge.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                        _ = self.link.halting.cancelled() => return Err(ChainError::ShuttingDown),
                    }
                    self.check_ready()?;
                }
                Err(e) => {
                    self.link.delivery_failed(&e);
                    return Err(ChainError::NotReady {
                        reason: e.to_string(),
                    });
                }
            }
        };
        let guard = Inflight::new(self.link.clone());
        Ok(Box::pin(async move {
            let result = delivery.await;
            let link = guard.link.clone();
            drop(guard);
            match result {
                Ok(offset) => {
                    link.produced.fetch_max(offset, Ordering::AcqRel);
                    Ok(())
                }
                Err(e) => {
                    link.delivery_failed(&e);
                    Err(ChainError::NotReady {
                        reason: e.to_string(),
                    })
                }
            }
        }))
    }

    /// Waits while this orderer's produced-but-unconsumed backlog is at
    /// [`KafkaOptions::max_lag`].
    async fn wait_for_consumer(&self) -> Result<(), ChainError> {
        let link = &self.link;
        loop {
            let ahead =
                link.produced.load(Ordering::Acquire) - link.consumed.load(Ordering::Acquire);
            let backlog = ahead.max(0) as u64 + link.inflight.load(Ordering::Acquire) as u64;
            if backlog < link.opts.max_lag {
                return Ok(());
            }
            // Woken as the consumer moves on; the short timer re-checks what moves
            // without a wake-up (deliveries finishing, the chain losing its brokers).
            tokio::select! {
                _ = link.consumer_moved.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                _ = link.halting.cancelled() => return Err(ChainError::ShuttingDown),
            }
            self.check_ready()?;
        }
    }

    fn regular(req: OrderRequest, is_config: bool) -> KafkaMessage {
        KafkaMessage::Regular {
            envelope: req.envelope,
            config_seq: req.config_seq,
            original_offset: 0,
            is_config,
        }
    }
}

/// What a Kafka chain reports to the metrics endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaMetrics {
    /// Taking envelopes (connected and caught up).
    pub ready: bool,
    /// The last partition offset the consumer handled.
    pub consumed_offset: i64,
    /// The partition's high watermark — the offset the next produced message gets — as
    /// librdkafka last reported it (every [`super::broker::STATS_INTERVAL`]); -1 until
    /// a broker reported it.
    pub high_watermark: i64,
    /// The highest offset of a message this orderer produced and had acknowledged.
    pub produced_offset: i64,
    /// Produces waiting for their delivery report.
    pub inflight: u64,
    /// Deliveries that failed since start.
    pub delivery_failures: u64,
}

impl KafkaChain {
    /// Counters for the metrics endpoint (cheap: atomics only).
    pub fn metrics(&self) -> KafkaMetrics {
        let l = &self.link;
        KafkaMetrics {
            ready: matches!(*l.readiness.borrow(), Readiness::Ready),
            consumed_offset: l.consumed.load(Ordering::Relaxed),
            high_watermark: l.high_watermark.load(Ordering::Relaxed),
            produced_offset: l.produced.load(Ordering::Relaxed),
            inflight: l.inflight.load(Ordering::Relaxed) as u64,
            delivery_failures: l.delivery_failures.load(Ordering::Relaxed),
        }
    }
}

impl KafkaMetrics {
    /// Messages in the partition this orderer has not handled yet: the high watermark
    /// minus the next offset to consume; `None` while the high watermark is unknown. The
    /// two values are read at slightly different times, so a lag that would be negative
    /// (the consumer read past a stale watermark) is 0.
    pub fn consumer_lag(&self) -> Option<i64> {
        (self.high_watermark >= 0)
            .then(|| (self.high_watermark - self.consumed_offset.saturating_add(1)).max(0))
    }
}

/// Counts a produce until its delivery report (or until its future is dropped).
struct Inflight {
    link: Arc<Link>,
}

impl Inflight {
    fn new(link: Arc<Link>) -> Self {
        link.inflight.fetch_add(1, Ordering::AcqRel);
        Self { link }
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.link.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Link {
    fn producer(&self) -> Arc<PartitionProducer> {
        self.producer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_readiness(&self, next: Readiness) {
        self.readiness.send_if_modified(|r| {
            if matches!(r, Readiness::Failed(_)) || *r == next {
                return false;
            }
            *r = next;
            true
        });
    }

    /// This orderer's `Connect` is at `offset`: the chain is ready once the consumer has
    /// handled it (which may already be the case).
    fn connected(&self, offset: i64) {
        self.readiness.send_if_modified(|r| {
            if matches!(r, Readiness::Failed(_)) {
                return false;
            }
            *r = if self.consumed.load(Ordering::SeqCst) >= offset {
                info!(channel = %self.channel, offset, "kafka chain connected and caught up; taking envelopes");
                Readiness::Ready
            } else {
                Readiness::CatchingUp(offset)
            };
            true
        });
    }

    /// The consumer handled `offset`: a chain catching up to its `Connect` there is
    /// ready. (Recorded first and checked second, and `connected` the other way round,
    /// so that neither can miss the other.)
    fn consumed(&self, offset: i64, height: u64) {
        self.consumed.store(offset, Ordering::SeqCst);
        self.consumer_moved.notify_waiters();
        self.readiness.send_if_modified(|r| match r {
            Readiness::CatchingUp(target) if offset >= *target => {
                info!(channel = %self.channel, offset, height, "kafka chain caught up; taking envelopes");
                *r = Readiness::Ready;
                true
            }
            _ => false,
        });
    }

    /// A produce failed: unless the message itself was at fault, the brokers are not
    /// reachable as they should be, so the chain stops taking envelopes until the
    /// connector has a `Connect` acknowledged and the consumer has read up to it.
    fn delivery_failed(&self, e: &BrokerError) {
        self.delivery_failures.fetch_add(1, Ordering::Relaxed);
        if matches!(e, BrokerError::TooLarge(_)) {
            return;
        }
        if matches!(*self.readiness.borrow(), Readiness::Ready) {
            warn!(channel = %self.channel, error = %e, "kafka delivery failed; reconnecting");
        }
        self.set_readiness(Readiness::Connecting(format!(
            "kafka brokers unreachable: {e}"
        )));
        self.reconnect.notify_one();
    }

    /// Stops the chain for good; committed-mode waiters learn why.
    fn fail(&self, support: &ChainSupport, reason: String) {
        error!(channel = %self.channel, %reason, "kafka chain stops");
        self.failed.store(true, Ordering::Release);
        self.readiness
            .send_replace(Readiness::Failed(reason.clone()));
        support.fail_all_waiters(&reason);
        self.stop.cancel();
    }
}

impl Chain for KafkaChain {
    fn order(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async move { self.produce(&Self::regular(req, false)).await?.await })
    }

    fn order_pipelined(&self, req: OrderRequest) -> BoxFuture<'_, Result<Pending, ChainError>> {
        Box::pin(async move { Ok(Some(self.produce(&Self::regular(req, false)).await?)) })
    }

    fn configure(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async move { self.produce(&Self::regular(req, true)).await?.await })
    }

    fn wait_ready(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async move { self.check_ready() })
    }

    fn status(&self) -> ChainStatus {
        let role = match &*self.link.readiness.borrow() {
            Readiness::Ready => "kafka",
            Readiness::Connecting(_) => "kafka-connecting",
            Readiness::CatchingUp(_) => "kafka-catching-up",
            Readiness::Failed(_) => "kafka-failed",
        };
        ChainStatus {
            role: role.into(),
            leader: None,
            term: 0,
        }
    }

    fn metrics(&self) -> Vec<crate::chain::MetricSample> {
        KafkaChain::metrics(self).samples()
    }

    fn halt(&self) -> BoxFuture<'_, ()> {
        self.link.halting.cancel();
        let mut rx = self
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
    }
}

/// Has a `Connect` acknowledged, then waits for a delivery failure and starts over.
async fn connector(link: Arc<Link>) {
    let channel = link.channel.clone();
    let connect = wire::encode(&KafkaMessage::Connect, &link.opts.orderer);
    loop {
        let offset = loop {
            let producer = link.producer();
            let timeout = link.opts.partition.delivery_timeout + Duration::from_secs(1);
            let sent = tokio::select! {
                r = producer.send(&connect, timeout) => r,
                _ = link.stop.cancelled() => return,
            };
            match sent {
                Ok(offset) => break offset,
                Err(e) => {
                    debug!(%channel, error = %e, "kafka connect failed");
                    link.set_readiness(Readiness::Connecting(format!(
                        "cannot reach kafka brokers {}: {e}",
                        link.opts.partition.brokers
                    )));
                    if let Some(fatal) = producer.fatal_error() {
                        replace_producer(&link, &fatal);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(link.opts.retry_backoff) => {}
                        _ = link.stop.cancelled() => return,
                    }
                }
            }
        };
        debug!(%channel, offset, "kafka connect acknowledged");
        link.connected(offset);
        tokio::select! {
            _ = link.reconnect.notified() => {}
            _ = link.stop.cancelled() => return,
        }
    }
}

/// An idempotent producer that hit a fatal error can send nothing more: a new one
/// takes its place (messages it had not delivered were reported failed).
fn replace_producer(link: &Link, fatal: &str) {
    warn!(channel = %link.channel, error = %fatal, "kafka producer failed fatally; replacing it");
    match PartitionProducer::new(&link.opts.partition) {
        Ok(p) => *link.producer.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p),
        Err(e) => warn!(error = %e, "cannot create a new kafka producer"),
    }
}

#[cfg(test)]
mod tests {
    use super::KafkaMetrics;

    fn at(consumed_offset: i64, high_watermark: i64) -> KafkaMetrics {
        KafkaMetrics {
            ready: true,
            consumed_offset,
            high_watermark,
            produced_offset: -1,
            inflight: 0,
            delivery_failures: 0,
        }
    }

    #[test]
    fn consumer_lag_counts_the_messages_not_yet_handled() {
        // Offsets 0..=9 handled, 15 messages in the partition: 10..=14 wait.
        assert_eq!(at(9, 15).consumer_lag(), Some(5));
        assert_eq!(at(14, 15).consumer_lag(), Some(0));
        // Nothing consumed yet (last offset -1) in an empty partition.
        assert_eq!(at(-1, 0).consumer_lag(), Some(0));
        // A watermark older than what was consumed is not a negative lag.
        assert_eq!(at(20, 15).consumer_lag(), Some(0));
        assert_eq!(at(9, -1).consumer_lag(), None, "watermark not known yet");
    }
}
