//! The driver: sockets, timers, the verifier and the sink around the pure cores.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tracing::{debug, info, warn};

use ordo_proto::block;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, Status as Code};
use ordo_proto::pb::orderer::{deliver_response, DeliverResponse, SeekBehavior};
use ordo_proto::verify::{ChainVerifier, VerifyError};

use super::{
    channel_endpoints, Backoff, BlockSink, DeliverConfig, DeliverError, DeliverStats, EndpointSet,
    FollowOptions, SinkError,
};

/// Follows `opts.channel_id` until `shutdown` is cancelled (then `Ok(())`), handing every
/// verified block to `sink` in order; see the module docs for the flow, the failover
/// rules and the sink's contract.
///
/// Returns an error only for what retrying cannot repair: an invalid configuration, no
/// endpoint at all, a sink that failed or got out of step with the verifier.
pub async fn follow(
    opts: FollowOptions,
    sink: impl BlockSink,
    shutdown: CancellationToken,
) -> Result<(), DeliverError> {
    opts.config.validate()?;
    let FollowOptions {
        channel_id,
        identity,
        verifier,
        static_endpoints,
        config,
        jitter_seed,
        stats,
        transport,
    } = opts;
    if sink.next_number() != verifier.next_number() {
        return Err(DeliverError::SinkOutOfStep {
            sink: sink.next_number(),
            verifier: verifier.next_number(),
        });
    }
    let mut endpoints = EndpointSet::new(static_endpoints, config.avoid_ms);
    if let Some(cfg) = verifier.config() {
        endpoints.set_channel_endpoints(channel_endpoints(cfg));
    }
    let backoff = Backoff::new(
        config.backoff_base_ms,
        config.backoff_max_ms,
        StdRng::seed_from_u64(jitter_seed),
    );
    let mut follower = Follower {
        channel_id,
        identity,
        transport,
        verifier,
        config,
        stats: &stats,
        endpoints,
        backoff,
        started: Instant::now(),
        outage: Outage::default(),
        sink,
        shutdown,
    };
    follower.run().await
}

/// How often a continuing outage is logged at WARN again.
const OUTAGE_REMINDER: Duration = Duration::from_secs(300);

/// Failed streams since the last one that opened. An orderer that is down makes the
/// follower retry every few seconds; logging each retry at WARN would bury the one line
/// that says what is wrong, so the first failure is a WARN, repeats are DEBUG with a WARN
/// reminder every [`OUTAGE_REMINDER`], and the stream that opens again says how long it
/// took.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
    failures: u32,
    last_warned: Option<Instant>,
}

impl Outage {
    /// Records a failure at `now`; whether to log it at WARN.
    fn failed(&mut self, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.since.get_or_insert(now);
        let warn = self
            .last_warned
            .is_none_or(|last| now.duration_since(last) >= OUTAGE_REMINDER);
        if warn {
            self.last_warned = Some(now);
        }
        warn
    }

    /// A stream opened: the outage's failure count and start, if there was one.
    fn recovered(&mut self) -> Option<(u32, Instant)> {
        let since = self.since.take()?;
        let failures = std::mem::take(&mut self.failures);
        self.last_warned = None;
        Some((failures, since))
    }
}

/// Why a stream ended without ending `follow`.
#[derive(Debug, Error)]
enum Interrupted {
    #[error("could not open a Deliver stream: {0}")]
    Open(String),
    #[error("opening the Deliver stream took over {0} ms")]
    OpenTimeout(u64),
    #[error("no message for {0} ms")]
    Idle(u64),
    #[error("the orderer ended the stream with {code}: {info}")]
    Status { code: String, info: String },
    #[error("transport: {0}")]
    Transport(String),
    #[error("the stream closed without a status")]
    Closed,
    #[error("an empty Deliver response")]
    Empty,
}

/// How one stream ended.
enum StreamEnd {
    /// The shutdown token was cancelled.
    Shutdown,
    /// The sink closed.
    SinkClosed,
    /// The endpoint failed: back off and try the next one.
    Interrupted(Interrupted),
    /// The endpoint served a block that failed verification: avoid it.
    Refused { number: u64, error: VerifyError },
}

struct Follower<'a, S> {
    channel_id: String,
    identity: Identity,
    transport: ordo_sdk::transport::Transport,
    verifier: ChainVerifier,
    config: DeliverConfig,
    stats: &'a DeliverStats,
    endpoints: EndpointSet,
    backoff: Backoff<StdRng>,
    /// The origin of the cores' millisecond clock.
    started: Instant,
    outage: Outage,
    sink: S,
    shutdown: CancellationToken,
}

impl<S: BlockSink> Follower<'_, S> {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn run(&mut self) -> Result<(), DeliverError> {
        let mut first = true;
        loop {
            if !first {
                self.stats.reconnecting();
                let delay_ms = self.backoff.next_delay_ms();
                debug!(channel = %self.channel_id, delay_ms, "backing off before reconnecting");
                tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
                }
            }
            first = false;
            let now_ms = self.now_ms();
            let endpoint = self
                .endpoints
                .next(now_ms)
                .ok_or_else(|| DeliverError::NoEndpoints {
                    channel: self.channel_id.clone(),
                })?
                .to_string();
            match self.stream_from(&endpoint).await? {
                StreamEnd::Shutdown | StreamEnd::SinkClosed => return Ok(()),
                StreamEnd::Interrupted(why @ Interrupted::Idle(_)) => info!(
                    channel = %self.channel_id,
                    endpoint = %endpoint,
                    next_block = self.verifier.next_number(),
                    "deliver stream idle ({why}); reconnecting"
                ),
                StreamEnd::Interrupted(why) => {
                    if self.outage.failed(Instant::now()) {
                        warn!(
                            channel = %self.channel_id,
                            endpoint = %endpoint,
                            next_block = self.verifier.next_number(),
                            failures = self.outage.failures,
                            "deliver stream ended ({why}); reconnecting to the channel's \
                             orderers with backoff (repeats are logged at debug level, and \
                             again here every {} s until a stream opens)",
                            OUTAGE_REMINDER.as_secs()
                        )
                    } else {
                        debug!(
                            channel = %self.channel_id,
                            endpoint = %endpoint,
                            failures = self.outage.failures,
                            "deliver stream ended ({why}); reconnecting"
                        )
                    }
                }
                StreamEnd::Refused { number, error } => {
                    self.stats.verification_failed();
                    let now_ms = self.now_ms();
                    self.endpoints.avoid(&endpoint, now_ms);
                    warn!(
                        channel = %self.channel_id,
                        endpoint = %endpoint,
                        block = number,
                        reason = %error,
                        avoid_ms = self.config.avoid_ms,
                        "block failed verification: not delivered; avoiding the endpoint"
                    );
                }
            }
        }
    }

    /// One stream from `endpoint`, from the verifier's next block, until it ends.
    async fn stream_from(&mut self, endpoint: &str) -> Result<StreamEnd, DeliverError> {
        let start = self.verifier.next_number();
        let open = open_stream(
            endpoint,
            &self.transport,
            &self.identity,
            &self.channel_id,
            start,
            self.config.max_message_bytes,
        );
        let connect_timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let mut stream = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => return Ok(StreamEnd::Shutdown),
            r = tokio::time::timeout(connect_timeout, open) => match r {
                Err(_) => {
                    let why = Interrupted::OpenTimeout(self.config.connect_timeout_ms);
                    return Ok(StreamEnd::Interrupted(why));
                }
                Ok(Err(why)) => return Ok(StreamEnd::Interrupted(Interrupted::Open(why))),
                Ok(Ok(stream)) => stream,
            },
        };
        match self.outage.recovered() {
            Some((failures, since)) => info!(
                channel = %self.channel_id,
                endpoint,
                start,
                failures,
                "deliver stream open again after {failures} failed attempts over {} s",
                since.elapsed().as_secs()
            ),
            None => debug!(channel = %self.channel_id, endpoint, start, "deliver stream open"),
        }
        let idle = Duration::from_millis(self.config.idle_timeout_ms);
        loop {
            let message = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(StreamEnd::Shutdown),
                r = tokio::time::timeout(idle, stream.message()) => r,
            };
            let response = match message {
                Err(_) => {
                    let why = Interrupted::Idle(self.config.idle_timeout_ms);
                    return Ok(StreamEnd::Interrupted(why));
                }
                Ok(Err(status)) => {
                    let why = Interrupted::Transport(status.to_string());
                    return Ok(StreamEnd::Interrupted(why));
                }
                Ok(Ok(None)) => return Ok(StreamEnd::Interrupted(Interrupted::Closed)),
                Ok(Ok(Some(response))) => response,
            };
            match response.r#type {
                Some(deliver_response::Type::Block(b)) => {
                    if let Some(end) = self.take(b).await? {
                        return Ok(end);
                    }
                }
                Some(deliver_response::Type::Status(code)) => {
                    let code = Code::try_from(code)
                        .map(|c| c.as_str_name().to_string())
                        .unwrap_or_else(|_| format!("status {code}"));
                    let why = Interrupted::Status {
                        code,
                        info: response.info,
                    };
                    return Ok(StreamEnd::Interrupted(why));
                }
                None => return Ok(StreamEnd::Interrupted(Interrupted::Empty)),
            }
        }
    }

    /// Verifies a block and, if it verifies, hands it to the sink. `Some` ends the stream.
    async fn take(&mut self, b: Block) -> Result<Option<StreamEnd>, DeliverError> {
        self.stats.block_received();
        let number = block::number(&b);
        let sequence_before = self.verifier.config().map(|c| c.sequence);
        // Hashing a block of tens of megabytes and checking its signatures takes long
        // enough to stall other tasks: verify on the blocking pool. The verifier moves
        // there and back; a refused block leaves it unchanged.
        let mut verifier = std::mem::take(&mut self.verifier);
        let now_secs = ordo_proto::now_ms() / 1000;
        let started = std::time::Instant::now();
        let (verifier, b, verdict) = tokio::task::spawn_blocking(move || {
            let verdict = verifier.check(&b, now_secs);
            (verifier, b, verdict)
        })
        .await
        .map_err(|e| DeliverError::VerifierTask(e.to_string()))?;
        self.stats.verify_took(started.elapsed());
        self.verifier = verifier;
        if let Err(error) = verdict {
            return Ok(Some(StreamEnd::Refused { number, error }));
        }
        self.stats.block_verified();
        self.backoff.reset();
        if let Some(config) = self.verifier.config() {
            if Some(config.sequence) != sequence_before {
                self.endpoints
                    .set_channel_endpoints(channel_endpoints(config));
                info!(
                    channel = %self.channel_id,
                    block = number,
                    sequence = config.sequence,
                    endpoints = ?self.endpoints.endpoints(),
                    "channel configuration in force changed"
                );
            }
        }
        match self.sink.deliver(b).await {
            Ok(()) => {}
            Err(SinkError::Closed) => return Ok(Some(StreamEnd::SinkClosed)),
            Err(source) => return Err(DeliverError::Sink { number, source }),
        }
        let (sink, verifier) = (self.sink.next_number(), self.verifier.next_number());
        if sink != verifier {
            return Err(DeliverError::SinkOutOfStep { sink, verifier });
        }
        debug!(channel = %self.channel_id, block = number, "block delivered");
        Ok(None)
    }
}

/// Connects to `endpoint` and opens a Deliver stream from block `start`, following.
async fn open_stream(
    endpoint: &str,
    transport: &ordo_sdk::transport::Transport,
    identity: &Identity,
    channel_id: &str,
    start: u64,
    max_message_bytes: usize,
) -> Result<Streaming<DeliverResponse>, String> {
    let channel = ordo_sdk::orderer::connect(endpoint, transport)
        .await
        .map_err(|e| error_chain(&e))?;
    let mut client = ordo_sdk::orderer::broadcast_client(channel)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let request = ordo_sdk::orderer::seek_request(
        identity,
        channel_id,
        ordo_sdk::orderer::position(Some(start)),
        None,
        SeekBehavior::BlockUntilReady,
    );
    let response = client
        .deliver(request)
        .await
        .map_err(|status| status.to_string())?;
    Ok(response.into_inner())
}

/// An error with its causes, `outer: inner: …` (tonic's transport errors say little at
/// the top level).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod outage_tests {
    use super::*;

    #[test]
    fn an_outage_warns_once_then_reminds_and_its_end_reports_its_length() {
        let t0 = Instant::now();
        let mut o = Outage::default();
        assert_eq!(o.recovered(), None, "no outage yet");
        assert!(o.failed(t0), "the first failure is a warning");
        for i in 1..10 {
            assert!(!o.failed(t0 + Duration::from_secs(i)), "repeats are not");
        }
        assert!(
            o.failed(t0 + OUTAGE_REMINDER),
            "a reminder after the interval"
        );
        assert!(!o.failed(t0 + OUTAGE_REMINDER + Duration::from_secs(1)));
        assert_eq!(o.recovered(), Some((12, t0)));
        assert_eq!(o.recovered(), None, "reported once");
        assert!(
            o.failed(t0 + OUTAGE_REMINDER * 2),
            "a new outage warns again"
        );
    }
}
