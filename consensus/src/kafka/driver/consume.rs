//! The consumer side of a Kafka chain: every message of the partition, in offset order,
//! through [`KafkaCore`], and the core's actions carried out — blocks to the writer, the
//! batch timer, `TimeToCut` produced, refused envelopes' waiters told.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use ordo_proto::{config, envelope};

use super::super::broker::{BrokerError, PartitionConsumer};
use super::super::core::{Action, KafkaCore, KafkaMessage};
use super::super::{revalidate, wire};
use super::{Link, Readiness};
use crate::support::ChainSupport;
use crate::writer::WriteJob;

/// The batch timer: armed for one block; when it fires a `TimeToCut` for that block is
/// produced, and it re-arms until the block is cut (a lost or failed `TimeToCut` is
/// sent again; extra ones are stale and ignored by every core).
struct Timer {
    block: u64,
    deadline: Instant,
}

pub(super) async fn consume_loop(
    link: &Arc<Link>,
    support: Arc<ChainSupport>,
    mut consumer: PartitionConsumer,
    mut core: KafkaCore,
    wtx: mpsc::Sender<WriteJob>,
) {
    let channel = support.channel_id().to_string();
    let mut timeout = support.state().batch_timeout;
    let mut timer: Option<Timer> = None;
    let mut halt_deadline: Option<Instant> = None;
    loop {
        if let Some(deadline) = halt_deadline {
            let drained = link.inflight.load(Ordering::Acquire) == 0
                && core.last_offset() >= link.produced.load(Ordering::Acquire)
                && core.pending() == 0;
            let stuck = matches!(
                *link.readiness.borrow(),
                Readiness::Connecting(_) | Readiness::Failed(_)
            );
            if drained || stuck || Instant::now() >= deadline {
                if !drained {
                    warn!(%channel, "halting with envelopes not yet in a block; the partition keeps them for the next start");
                }
                break;
            }
        }
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            biased;
            _ = link.stop.cancelled() => break,
            _ = link.halting.cancelled(), if halt_deadline.is_none() => {
                halt_deadline = Some(Instant::now() + link.opts.halt_timeout);
            }
            _ = tokio::time::sleep_until(halt_deadline.unwrap_or(far)), if halt_deadline.is_some() => {}
            _ = tokio::time::sleep_until(timer.as_ref().map(|t| t.deadline).unwrap_or(far)), if timer.is_some() => {
                if let Some(t) = timer.as_mut() {
                    t.deadline = Instant::now() + timeout;
                    let message = KafkaMessage::TimeToCut { block_number: t.block };
                    spawn_produce(link, message);
                }
            }
            next = consumer.next() => {
                let (offset, payload) = match next {
                    Ok(m) => m,
                    Err(e @ BrokerError::OffsetGone(_)) => {
                        link.fail(&support, e.to_string());
                        break;
                    }
                    Err(e) => {
                        debug!(%channel, error = %e, "kafka consume error; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let message = decode(&channel, offset, payload);
                let state = support.state();
                let check = |env: &[u8], is_config: bool| revalidate::check(&state, env, is_config);
                let actions = match core.on_message(offset, message, state.sequence(), &check) {
                    Ok(a) => a,
                    Err(e) => {
                        link.fail(&support, format!("the kafka partition cannot be followed at offset {offset}: {e}"));
                        break;
                    }
                };
                for action in actions {
                    match action {
                        Action::Block { envelopes, last_offset, last_original_offset, config } => {
                            let metadata = wire::metadata(last_offset, last_original_offset);
                            if !write(&wtx, envelopes, metadata, config).await {
                                break;
                            }
                            if config {
                                let state = support.state();
                                core.set_limits(state.limits);
                                timeout = state.batch_timeout;
                                info!(%channel, sequence = state.sequence(), "configuration updated");
                            }
                        }
                        Action::StartTimer { block } => {
                            timer = Some(Timer { block, deadline: Instant::now() + timeout });
                        }
                        Action::StopTimer => timer = None,
                        Action::Refused { envelope, reason } => {
                            let tx_id = envelope::tx_id_of(&envelope).unwrap_or_default();
                            debug!(%channel, %tx_id, %reason, "envelope refused on re-validation");
                            support.notify_rejected(&tx_id, reason);
                        }
                    }
                }
                if link.stop.is_cancelled() {
                    break;
                }
                link.consumed(offset, support.height());
            }
        }
    }
    info!(%channel, height = support.height(), last_offset = core.last_offset(), "kafka chain stopped");
}

/// Decodes a consumed message; one that does not decode orders nothing (every orderer
/// skips it alike) and is reported.
fn decode(channel: &str, offset: i64, payload: Bytes) -> KafkaMessage {
    match wire::decode(payload) {
        Ok(KafkaMessage::Regular {
            envelope,
            config_seq,
            original_offset,
            is_config,
        }) => KafkaMessage::Regular {
            // A config envelope is treated as one whatever the producer said, so that it
            // is always checked as a config change and always alone in its block.
            is_config: is_config || config::is_config_envelope(&envelope),
            envelope,
            config_seq,
            original_offset,
        },
        Ok(m) => m,
        Err(e) => {
            warn!(%channel, offset, error = %e, "skipping a message that is not Ordo's");
            KafkaMessage::Connect
        }
    }
}

fn spawn_produce(link: &Arc<Link>, message: KafkaMessage) {
    let link = link.clone();
    tokio::spawn(async move {
        let producer = link.producer();
        let bytes = wire::encode(&message, &link.opts.orderer);
        let timeout = link.opts.partition.delivery_timeout + Duration::from_secs(1);
        if let Err(e) = producer.send(&bytes, timeout).await {
            debug!(channel = %link.channel, error = %e, "producing a control message failed");
            link.delivery_failed(&e);
        }
    });
}

/// Hands a block to the writer; a config block is waited for, so that the next message
/// is checked against the configuration it brings. `false` when the chain must stop.
async fn write(
    wtx: &mpsc::Sender<WriteJob>,
    envelopes: Vec<Bytes>,
    metadata: Bytes,
    config: bool,
) -> bool {
    let (done_tx, done_rx) = if config {
        let (t, r) = oneshot::channel();
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let job = WriteJob {
        envelopes,
        metadata,
        config_done: done_tx,
    };
    if wtx.send(job).await.is_err() {
        return false;
    }
    match done_rx {
        Some(rx) => matches!(rx.await, Ok(Ok(()))),
        None => true,
    }
}
