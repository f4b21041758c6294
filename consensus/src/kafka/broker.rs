//! A channel's partition over rdkafka: an idempotent, acks=all producer, and a consumer
//! that reads the one partition from a given offset.
//!
//! The consumer is assigned the partition directly and seeks to the offset the ledger
//! says comes next (as Fabric's Kafka orderer did) instead of joining a consumer group:
//! every orderer reads everything, no offsets are committed to the broker (the ledger is
//! the only record of progress), and there is no group rebalance to wait for.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message as _;
use rdkafka::producer::Producer as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;

/// The partition every channel uses (one per topic).
pub const PARTITION: i32 = 0;

/// Where a channel's partition is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionConfig {
    /// `host:port,...` of the brokers.
    pub brokers: String,
    /// The channel's topic.
    pub topic: String,
    /// Client properties passed through to librdkafka (security.protocol, sasl.*,
    /// ssl.*, ...), applied after Ordo's own so that an operator can override them.
    pub properties: Vec<(String, String)>,
    /// How long a produced message may wait for the in-sync replicas' acknowledgement
    /// (librdkafka's `message.timeout.ms`) before its delivery is reported failed.
    pub delivery_timeout: Duration,
}

impl PartitionConfig {
    /// The partition of `topic` on `brokers`, with Ordo's defaults.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            properties: Vec::new(),
            delivery_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the broker side failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BrokerError {
    /// The client could not be created (bad property, unreachable configuration).
    #[error("kafka client: {0}")]
    Client(String),
    /// A message was not acknowledged by the in-sync replicas in time.
    #[error("kafka delivery failed: {0}")]
    Delivery(String),
    /// The broker refused a message as larger than its `message.max.bytes`.
    #[error("kafka broker refused the message as too large ({0}): raise the topic's max.message.bytes above the channel's absolute_max_bytes")]
    TooLarge(String),
    /// librdkafka's local queue is full (more than `queue.buffering.max.messages`
    /// waiting): wait and retry.
    #[error("kafka producer queue full")]
    QueueFull,
    /// The partition no longer holds the offset this orderer must read next (retention
    /// deleted it, or the topic was recreated): the chain cannot continue.
    #[error("kafka partition no longer holds the offsets this orderer needs ({0}): the topic must keep every message (retention.ms=-1)")]
    OffsetGone(String),
    /// Reading the partition failed.
    #[error("kafka consume failed: {0}")]
    Consume(String),
}

fn client_config(cfg: &PartitionConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    // Reconnect within a second once a broker is back (librdkafka backs off up to 10 s
    // by default, which would keep the channel unavailable that long).
    c.set("bootstrap.servers", &cfg.brokers)
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000");
    c
}

fn apply_properties(c: &mut ClientConfig, cfg: &PartitionConfig) {
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
}

/// The offsets the partition holds, asked of the brokers: its low watermark (where
/// retention has left it starting) and its high watermark (the next offset to be
/// written). Blocks for up to `timeout`.
pub fn watermarks(cfg: &PartitionConfig, timeout: Duration) -> Result<(i64, i64), BrokerError> {
    let mut c = client_config(cfg);
    c.set("group.id", format!("ordo-{}", cfg.topic));
    apply_properties(&mut c, cfg);
    let consumer: BaseConsumer = c.create().map_err(|e| BrokerError::Client(e.to_string()))?;
    consumer
        .fetch_watermarks(&cfg.topic, PARTITION, timeout)
        .map_err(|e| BrokerError::Consume(e.to_string()))
}

/// Produces to a channel's partition.
pub struct PartitionProducer {
    producer: FutureProducer,
    topic: String,
}

impl PartitionProducer {
    /// A producer that waits for every in-sync replica (acks=all) and never duplicates
    /// or reorders a message on retry (idempotence).
    pub fn new(cfg: &PartitionConfig) -> Result<Self, BrokerError> {
        let mut c = client_config(cfg);
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", "1")
            .set(
                "message.timeout.ms",
                cfg.delivery_timeout.as_millis().max(1).to_string(),
            );
        apply_properties(&mut c, cfg);
        let producer: FutureProducer =
            c.create().map_err(|e| BrokerError::Client(e.to_string()))?;
        Ok(Self {
            producer,
            topic: cfg.topic.clone(),
        })
    }

    /// Sends `payload` and resolves once the brokers acknowledged it, with its offset.
    /// `timeout` bounds the whole wait (queueing and delivery). A send that failed by
    /// timing out may still be delivered later (librdkafka keeps retrying until its own
    /// `message.timeout.ms`): the caller must treat the outcome as unknown, not as "not
    /// ordered" — the tx id de-duplication catches a client's resubmission.
    pub async fn send(&self, payload: &[u8], timeout: Duration) -> Result<i64, BrokerError> {
        let delivery = self.enqueue(payload)?;
        match tokio::time::timeout(timeout, delivery).await {
            Ok(result) => result,
            Err(_) => Err(BrokerError::Delivery(format!(
                "not acknowledged within {timeout:?}"
            ))),
        }
    }

    /// Hands `payload` to librdkafka without waiting: the returned future resolves with
    /// the offset once the brokers acknowledged it, or with why not (at the latest after
    /// [`PartitionConfig::delivery_timeout`]). Many messages can so be in flight at once,
    /// and librdkafka batches them; idempotence keeps them in order.
    pub fn enqueue(
        &self,
        payload: &[u8],
    ) -> Result<
        impl std::future::Future<Output = Result<i64, BrokerError>> + Send + 'static,
        BrokerError,
    > {
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&self.topic)
            .partition(PARTITION)
            .payload(payload);
        let delivery = self.producer.send_result(record).map_err(|(e, _)| {
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
                BrokerError::QueueFull
            } else {
                BrokerError::Delivery(e.to_string())
            }
        })?;
        Ok(async move {
            match delivery.await {
                Ok(Ok(d)) => Ok(d.offset),
                Ok(Err((e, _))) => Err(
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) {
                        BrokerError::TooLarge(e.to_string())
                    } else {
                        BrokerError::Delivery(e.to_string())
                    },
                ),
                Err(_) => Err(BrokerError::Delivery("the producer was closed".into())),
            }
        })
    }

    /// The producer's fatal error, if it has one: it can send nothing more and must be
    /// replaced (an idempotent producer turns some broker failures into fatal errors).
    pub fn fatal_error(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code}: {reason}"))
    }
}

/// Reads a channel's partition in offset order from a starting offset.
///
/// A thread of its own polls librdkafka and hands messages over a bounded channel: the
/// reader's `next` is then cancel-safe (a `select!` may drop it without losing a
/// message), and no wake-up of an async consumer can be missed.
///
/// It also keeps the partition's high watermark (the offset the next produced message
/// will get), as librdkafka reports it in its statistics every [`STATS_INTERVAL`]: the
/// broker sends it with every fetch response, so knowing it costs no request of its own
/// (asking the broker for watermarks would be one round trip per scrape).
pub struct PartitionConsumer {
    rx: tokio::sync::mpsc::Receiver<Result<(i64, Bytes), BrokerError>>,
    high_watermark: Arc<AtomicI64>,
}

/// How often librdkafka reports the consumer's statistics (and with them the partition's
/// high watermark). Parsing the report costs tens of microseconds, once per interval.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// The consumer's librdkafka context: keeps the partition's high watermark from the
/// statistics; everything else as librdkafka's default.
struct WatermarkContext {
    topic: String,
    high_watermark: Arc<AtomicI64>,
}

impl ClientContext for WatermarkContext {
    fn stats(&self, statistics: Statistics) {
        let hi = statistics
            .topics
            .get(&self.topic)
            .and_then(|t| t.partitions.get(&PARTITION))
            .map(|p| p.hi_offset);
        // librdkafka reports -1 until a broker told it.
        if let Some(hi) = hi.filter(|h| *h >= 0) {
            self.high_watermark.store(hi, Ordering::Relaxed);
        }
    }
}

impl ConsumerContext for WatermarkContext {}

/// Messages read ahead of the chain (backpressure beyond it).
const READ_AHEAD: usize = 4096;

impl PartitionConsumer {
    /// A consumer of the partition starting at `start_offset`.
    pub fn new(cfg: &PartitionConfig, start_offset: i64) -> Result<Self, BrokerError> {
        let mut c = client_config(cfg);
        // librdkafka wants a group id even for a directly assigned partition; nothing is
        // ever committed under it.
        c.set("group.id", format!("ordo-{}", cfg.topic))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // Never skip ahead (or back) when the offset is gone: that would fork the
            // chain. The error stops the chain instead.
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "50")
            .set(
                "statistics.interval.ms",
                STATS_INTERVAL.as_millis().to_string(),
            );
        apply_properties(&mut c, cfg);
        let high_watermark = Arc::new(AtomicI64::new(-1));
        let context = WatermarkContext {
            topic: cfg.topic.clone(),
            high_watermark: high_watermark.clone(),
        };
        let consumer: BaseConsumer<WatermarkContext> = c
            .create_with_context(context)
            .map_err(|e| BrokerError::Client(e.to_string()))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&cfg.topic, PARTITION, Offset::Offset(start_offset))
            .map_err(|e| BrokerError::Client(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| BrokerError::Client(e.to_string()))?;
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        std::thread::Builder::new()
            .name(format!("kafka-read-{}", cfg.topic))
            .spawn(move || poll_loop(&consumer, &tx))
            .map_err(|e| BrokerError::Client(format!("cannot start the reader thread: {e}")))?;
        Ok(Self { rx, high_watermark })
    }

    /// The partition's high watermark as last reported (-1 until a broker reported it),
    /// shared: it keeps moving while the consumer runs.
    pub fn high_watermark(&self) -> Arc<AtomicI64> {
        self.high_watermark.clone()
    }

    /// The next message: its offset and payload (empty for a message without one).
    pub async fn next(&mut self) -> Result<(i64, Bytes), BrokerError> {
        self.rx
            .recv()
            .await
            .unwrap_or_else(|| Err(BrokerError::Consume("the reader thread stopped".into())))
    }
}

/// Polls until the reader is dropped.
fn poll_loop(
    consumer: &BaseConsumer<WatermarkContext>,
    tx: &tokio::sync::mpsc::Sender<Result<(i64, Bytes), BrokerError>>,
) {
    while !tx.is_closed() {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let item = polled
            .map(|m| {
                (
                    m.offset(),
                    Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                )
            })
            .map_err(|e| match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
                    BrokerError::OffsetGone(e.to_string())
                }
                _ => BrokerError::Consume(e.to_string()),
            });
        if tx.blocking_send(item).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;

    fn config(
        cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    ) -> PartitionConfig {
        PartitionConfig {
            delivery_timeout: Duration::from_secs(5),
            ..PartitionConfig::new(cluster.bootstrap_servers(), "ordo.test")
        }
    }

    async fn read(mut consumer: PartitionConsumer, n: usize) -> Vec<(i64, Bytes)> {
        let mut out = Vec::new();
        while out.len() < n {
            let next = tokio::time::timeout(Duration::from_secs(20), consumer.next())
                .await
                .expect("a message in time")
                .expect("consumed");
            out.push(next);
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn produced_messages_are_read_in_order_from_any_offset() {
        let cluster = MockCluster::new(3).expect("mock cluster");
        cluster.create_topic("ordo.test", 1, 3).expect("topic");
        let cfg = config(&cluster);
        let producer = PartitionProducer::new(&cfg).expect("producer");
        let mut offsets = Vec::new();
        for i in 0u32..100 {
            offsets.push(
                producer
                    .send(&i.to_be_bytes(), Duration::from_secs(10))
                    .await
                    .expect("acknowledged"),
            );
        }
        assert_eq!(offsets, (0..100).collect::<Vec<i64>>());
        let all = read(PartitionConsumer::new(&cfg, 0).expect("consumer"), 100).await;
        for (i, (offset, payload)) in all.iter().enumerate() {
            assert_eq!(*offset, i as i64);
            assert_eq!(payload.as_ref(), (i as u32).to_be_bytes());
        }
        // A restarted orderer resumes after its last block's offset.
        let tail = read(PartitionConsumer::new(&cfg, 90).expect("consumer"), 10).await;
        assert_eq!(tail.first().map(|m| m.0), Some(90));
        assert_eq!(tail.last().map(|m| m.0), Some(99));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_consumer_learns_the_high_watermark_while_it_reads_behind_it() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("ordo.test", 1, 1).expect("topic");
        let cfg = config(&cluster);
        let producer = PartitionProducer::new(&cfg).expect("producer");
        for i in 0u32..50 {
            producer
                .send(&i.to_be_bytes(), Duration::from_secs(10))
                .await
                .expect("acknowledged");
        }
        let mut consumer = PartitionConsumer::new(&cfg, 0).expect("consumer");
        let hw = consumer.high_watermark();
        assert_eq!(hw.load(Ordering::Relaxed), -1, "unknown before any report");
        for want in 0..10 {
            let (offset, _) = tokio::time::timeout(Duration::from_secs(20), consumer.next())
                .await
                .expect("a message in time")
                .expect("consumed");
            assert_eq!(offset, want);
        }
        // Reported with the statistics, once per STATS_INTERVAL, while the consumer
        // (kept alive here) polls.
        let deadline = tokio::time::Instant::now() + 10 * STATS_INTERVAL;
        while hw.load(Ordering::Relaxed) != 50 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "high watermark {} after {:?}",
                hw.load(Ordering::Relaxed),
                10 * STATS_INTERVAL
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(consumer);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watermarks_say_where_the_partition_starts_and_ends_and_unreachable_brokers_say_so() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("ordo.test", 1, 1).expect("topic");
        let cfg = config(&cluster);
        let producer = PartitionProducer::new(&cfg).expect("producer");
        for i in 0u32..5 {
            producer
                .send(&i.to_be_bytes(), Duration::from_secs(10))
                .await
                .expect("acknowledged");
        }
        let marks = tokio::task::spawn_blocking(move || watermarks(&cfg, Duration::from_secs(10)))
            .await
            .expect("task");
        assert_eq!(
            marks,
            Ok((0, 5)),
            "a topic that keeps everything starts at offset 0"
        );
        let nowhere = PartitionConfig::new("127.0.0.1:1", "ordo.test");
        let refused =
            tokio::task::spawn_blocking(move || watermarks(&nowhere, Duration::from_millis(500)))
                .await
                .expect("task");
        assert!(
            matches!(refused, Err(BrokerError::Consume(_))),
            "{refused:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broker_outage_fails_sends_and_they_succeed_once_it_is_back() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("ordo.test", 1, 1).expect("topic");
        let cfg = PartitionConfig {
            delivery_timeout: Duration::from_secs(20),
            ..config(&cluster)
        };
        let producer = PartitionProducer::new(&cfg).expect("producer");
        producer
            .send(b"before", Duration::from_secs(10))
            .await
            .expect("acknowledged");
        cluster.broker_down(1).expect("down");
        let failed = producer.send(b"during", Duration::from_secs(2)).await;
        assert!(
            matches!(failed, Err(BrokerError::Delivery(_))),
            "{failed:?}"
        );
        cluster.broker_up(1).expect("up");
        let offset = producer
            .send(b"after", Duration::from_secs(20))
            .await
            .expect("acknowledged after the outage");
        let all = read(
            PartitionConsumer::new(&cfg, 0).expect("consumer"),
            (offset + 1) as usize,
        )
        .await;
        let payloads: Vec<&[u8]> = all.iter().map(|m| m.1.as_ref()).collect();
        assert_eq!(payloads.first(), Some(&&b"before"[..]));
        assert_eq!(payloads.last(), Some(&&b"after"[..]));
    }
}
