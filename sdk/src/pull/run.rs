//! The driver: streams, timers, the verifier and the sink around the pure cores.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use thiserror::Error;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use ordo_proto::block;
use ordo_proto::pb::common::Block;
use ordo_proto::verify::ChainVerifier;

use super::outage::Outage;
use super::{
    channel_endpoints, Backoff, BlockOpener, BlockSink, EndpointSet, Finished, PullError,
    PullPolicy, PullStats, SinkError, Until, OUTAGE_REMINDER,
};

/// Pulls blocks from `sources` (asked in turn through `opener`), verifies each with
/// `verifier` and hands it to `sink`, until `until` holds or `halt` is cancelled; see the
/// module docs for the flow and the failover rules. `label` names the chain in logs (a
/// channel id). `verifier` must be at the sink's height, and is left after the last
/// block the sink took.
#[allow(clippy::too_many_arguments)] // each is one independent input of the loop
pub async fn pull(
    label: &str,
    opener: &impl BlockOpener,
    sources: Vec<String>,
    verifier: &mut ChainVerifier,
    sink: &mut impl BlockSink,
    until: Until,
    policy: &PullPolicy,
    stats: &PullStats,
    halt: &CancellationToken,
) -> Result<Finished, PullError> {
    if sink.next_number() != verifier.next_number() {
        return Err(PullError::SinkOutOfStep {
            sink: sink.next_number(),
            verifier: verifier.next_number(),
        });
    }
    let mut endpoints = EndpointSet::new(sources, policy.avoid_ms);
    if policy.endpoints_from_config {
        if let Some(cfg) = verifier.config() {
            endpoints.set_channel_endpoints(channel_endpoints(cfg));
        }
    }
    let mut puller = Puller {
        label,
        opener,
        verifier,
        sink,
        until,
        policy,
        stats,
        halt,
        endpoints,
        backoff: Backoff::new(
            policy.backoff_base_ms,
            policy.backoff_max_ms,
            StdRng::seed_from_u64(policy.jitter_seed),
        ),
        started: Instant::now(),
        outage: Outage::default(),
        failures: HashMap::new(),
        failed_in_a_row: 0,
        logged_height: 0,
    };
    let outcome = puller.run().await;
    let flushed = sink.flush().await;
    match (outcome, flushed) {
        (Err(e), _) => Err(e),
        (Ok(finished), Ok(())) => Ok(finished),
        (Ok(_), Err(SinkError::Closed)) => Ok(Finished::SinkClosed),
        (Ok(_), Err(source)) => Err(PullError::Sink {
            number: sink.next_number().saturating_sub(1),
            source,
        }),
    }
}

/// Why a stream ended without ending the pull.
#[derive(Debug, Error)]
enum Interrupted {
    #[error("{0}")]
    Open(String),
    #[error("opening a stream took over {0} ms")]
    OpenTimeout(u128),
    #[error("no block for {0} ms")]
    Idle(u128),
    #[error("{0}")]
    Source(String),
    #[error("served no block")]
    Empty,
    #[error("the stream ended")]
    Ended,
}

/// How one stream ended.
enum StreamEnd {
    /// The halt token was cancelled.
    Halted,
    /// The sink closed.
    SinkClosed,
    /// The sink holds the target.
    Reached,
    /// The source failed or ran dry: try the next one.
    Interrupted(Interrupted),
    /// The source served a block that failed verification.
    Refused { number: u64, reason: String },
}

struct Puller<'a, O, S> {
    label: &'a str,
    opener: &'a O,
    verifier: &'a mut ChainVerifier,
    sink: &'a mut S,
    until: Until,
    policy: &'a PullPolicy,
    stats: &'a PullStats,
    halt: &'a CancellationToken,
    endpoints: EndpointSet,
    backoff: Backoff<StdRng>,
    /// The origin of the cores' millisecond clock.
    started: Instant,
    outage: Outage,
    /// What each source said last since the last verified block.
    failures: HashMap<String, String>,
    /// Streams in a row that ended without a verified block.
    failed_in_a_row: u32,
    logged_height: u64,
}

impl<O: BlockOpener, S: BlockSink> Puller<'_, O, S> {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn reached(&self) -> bool {
        match self.until {
            Until::Forever => false,
            Until::Block(t) => self.sink.next_number() > t.number,
        }
    }

    async fn run(&mut self) -> Result<Finished, PullError> {
        self.logged_height = self.sink.next_number();
        let mut wait = false;
        loop {
            if self.reached() {
                return Ok(Finished::Reached);
            }
            if wait {
                let delay_ms = if self.policy.jitter {
                    self.backoff.next_delay_ms()
                } else {
                    self.backoff.next_ceiling_ms()
                };
                debug!(chain = %self.label, delay_ms, "backing off before the next source");
                tokio::select! {
                    biased;
                    _ = self.halt.cancelled() => return Ok(Finished::Halted),
                    _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
                }
            }
            let now_ms = self.now_ms();
            let source = self
                .endpoints
                .next(now_ms)
                .ok_or(PullError::NoSources)?
                .to_string();
            let height_before = self.sink.next_number();
            let end = self.stream_from(&source).await?;
            let progressed = self.sink.next_number() > height_before;
            match end {
                StreamEnd::Halted => return Ok(Finished::Halted),
                StreamEnd::SinkClosed => return Ok(Finished::SinkClosed),
                StreamEnd::Reached => return Ok(Finished::Reached),
                StreamEnd::Interrupted(why) => self.interrupted(&source, why, progressed),
                StreamEnd::Refused { number, reason } => {
                    self.refused(&source, number, reason)?;
                }
            }
            self.stats.reconnecting();
            // A stream that served blocks and then ended is resumed at once; every
            // other end waits a backoff delay.
            wait = !progressed;
            if progressed {
                self.failures.clear();
                self.failed_in_a_row = 0;
                continue;
            }
            self.failed_in_a_row = self.failed_in_a_row.saturating_add(1);
            let sources = self.endpoints.endpoints().len().max(1) as u32;
            let rounds = self.failed_in_a_row / sources;
            if let Some(max) = self.policy.give_up_after_rounds {
                if rounds >= max && self.failed_in_a_row % sources == 0 {
                    return Err(PullError::Unavailable {
                        height: self.sink.next_number(),
                        rounds,
                        failures: self.failure_summary(),
                    });
                }
            }
        }
    }

    /// Logs a stream's end: the first failure of an outage at WARN, repeats at DEBUG
    /// with a WARN reminder (see [`Outage`]).
    fn interrupted(&mut self, source: &str, why: Interrupted, progressed: bool) {
        let next_block = self.verifier.next_number();
        if progressed || matches!(why, Interrupted::Idle(_)) {
            info!(chain = %self.label, source, next_block, "stream ended ({why}); going on");
        } else if self.outage.failed(Instant::now()) {
            warn!(
                chain = %self.label,
                source,
                next_block,
                failures = self.outage.failures(),
                "stream ended ({why}); trying the sources again with backoff (repeats are \
                 logged at debug level, and again here every {} s until a stream serves)",
                OUTAGE_REMINDER.as_secs()
            );
        } else {
            debug!(chain = %self.label, source, next_block, "stream ended ({why}); retrying");
        }
        if !progressed {
            self.failures.insert(source.to_string(), why.to_string());
        }
    }

    /// A source served a bad block: the pull ends (fatal policy) or the source is avoided.
    fn refused(&mut self, source: &str, number: u64, reason: String) -> Result<(), PullError> {
        self.stats.verification_failed();
        if self.policy.bad_block_is_fatal {
            return Err(PullError::BadBlock {
                number,
                source_name: source.to_string(),
                reason,
            });
        }
        let now_ms = self.now_ms();
        self.endpoints.avoid(source, now_ms);
        warn!(
            chain = %self.label,
            source,
            block = number,
            reason = %reason,
            avoid_ms = self.policy.avoid_ms,
            "block failed verification: not delivered; trying another source"
        );
        self.failures
            .insert(source.to_string(), format!("block {number} {reason}"));
        Ok(())
    }

    /// What each source said last, in rotation order.
    fn failure_summary(&self) -> String {
        self.endpoints
            .endpoints()
            .iter()
            .filter_map(|s| self.failures.get(s).map(|why| format!("{s}: {why}")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One stream from `source`, from the verifier's next block, until it ends.
    async fn stream_from(&mut self, source: &str) -> Result<StreamEnd, PullError> {
        if self.halt.is_cancelled() {
            return Ok(StreamEnd::Halted);
        }
        let start = self.verifier.next_number();
        let end = match self.until {
            Until::Forever => None,
            Until::Block(t) => Some(t.number),
        };
        let open = self.opener.open(source, start, end);
        let mut stream = tokio::select! {
            biased;
            _ = self.halt.cancelled() => return Ok(StreamEnd::Halted),
            r = tokio::time::timeout(self.policy.open_timeout, open) => match r {
                Err(_) => {
                    let why = Interrupted::OpenTimeout(self.policy.open_timeout.as_millis());
                    return Ok(StreamEnd::Interrupted(why));
                }
                Ok(Err(why)) => return Ok(StreamEnd::Interrupted(Interrupted::Open(why))),
                Ok(Ok(stream)) => stream,
            },
        };
        match self.outage.recovered() {
            Some((failures, since)) => info!(
                chain = %self.label,
                source,
                start,
                failures,
                "stream open again after {failures} failed attempts over {} s",
                since.elapsed().as_secs()
            ),
            None => debug!(chain = %self.label, source, start, "stream open"),
        }
        let mut served = 0u64;
        loop {
            let next = tokio::select! {
                biased;
                _ = self.halt.cancelled() => return Ok(StreamEnd::Halted),
                r = tokio::time::timeout(self.policy.idle_timeout, stream.next()) => r,
            };
            let b = match next {
                Err(_) => {
                    let why = Interrupted::Idle(self.policy.idle_timeout.as_millis());
                    return Ok(StreamEnd::Interrupted(why));
                }
                Ok(Some(Err(why))) => return Ok(StreamEnd::Interrupted(Interrupted::Source(why))),
                Ok(None) if served == 0 => return Ok(StreamEnd::Interrupted(Interrupted::Empty)),
                Ok(None) => return Ok(StreamEnd::Interrupted(Interrupted::Ended)),
                Ok(Some(Ok(b))) => b,
            };
            served += 1;
            if let Some(end) = self.take(b).await? {
                return Ok(end);
            }
            if self.reached() {
                return Ok(StreamEnd::Reached);
            }
        }
    }

    /// Verifies a block and, if it verifies, hands it to the sink. `Some` ends the stream.
    async fn take(&mut self, b: Block) -> Result<Option<StreamEnd>, PullError> {
        self.stats.block_received();
        let number = block::number(&b);
        if let Until::Block(t) = self.until {
            // The target's hash first: a forked target must leave the verifier where it
            // was for the next source.
            if number == t.number && block::hash(&b) != t.hash {
                let reason = "is another block than the expected one: the chains forked";
                return Ok(Some(StreamEnd::Refused {
                    number,
                    reason: reason.into(),
                }));
            }
        }
        let sequence_before = self.verifier.config().map(|c| c.sequence);
        // The verifier moves to the blocking pool and back; a refused block leaves it
        // unchanged.
        let mut verifier = std::mem::take(self.verifier);
        let now_secs = ordo_proto::now_ms() / 1000;
        let started = Instant::now();
        let (verifier, b, verdict) = tokio::task::spawn_blocking(move || {
            let verdict = verifier.check(&b, now_secs);
            (verifier, b, verdict)
        })
        .await
        .map_err(|e| PullError::VerifierTask(e.to_string()))?;
        self.stats.verify_took(started.elapsed());
        *self.verifier = verifier;
        if let Err(error) = verdict {
            return Ok(Some(StreamEnd::Refused {
                number,
                reason: format!("refused: {error}"),
            }));
        }
        self.stats.block_verified();
        self.backoff.reset();
        if let Some(config) = self.verifier.config() {
            if Some(config.sequence) != sequence_before && self.policy.endpoints_from_config {
                self.endpoints
                    .set_channel_endpoints(channel_endpoints(config));
                info!(
                    chain = %self.label,
                    block = number,
                    sequence = config.sequence,
                    endpoints = ?self.endpoints.endpoints(),
                    "configuration in force changed"
                );
            }
        }
        match self.sink.deliver(b).await {
            Ok(()) => {}
            Err(SinkError::Closed) => return Ok(Some(StreamEnd::SinkClosed)),
            Err(source) => return Err(PullError::Sink { number, source }),
        }
        let (sink, verifier) = (self.sink.next_number(), self.verifier.next_number());
        if sink != verifier {
            return Err(PullError::SinkOutOfStep { sink, verifier });
        }
        debug!(chain = %self.label, block = number, "block delivered");
        if let Until::Block(t) = self.until {
            if sink >= self.logged_height + 1_000 {
                self.logged_height = sink;
                info!(chain = %self.label, height = sink, target = t.number, "pulling blocks");
            }
        }
        Ok(None)
    }
}
