//! The Kafka backend's core: from the ordered `(offset, message)` sequence of a channel's
//! partition to blocks, with no broker, clock or disk in sight.
//!
//! Every orderer consumes the same partition and feeds this core in offset order, so all
//! of them cut identical blocks. The rules (Fabric 1.x's, tightened):
//!
//! - A **regular** envelope goes through the block cutter. A config envelope, and any
//!   envelope validated against an older config sequence, is validated again first;
//!   normal envelopes are then ordered or refused where they stand. A config envelope
//!   validated against an older config sequence is **refused** (as raft refuses it): it
//!   was computed from a config that is no longer in force, and applying it would undo
//!   the update that came between. The administrator submits the update again. (Earlier
//!   versions re-submitted such envelopes to the partition; every orderer did, and when
//!   a copy went stale again the copies carried different original offsets, so one update
//!   could be applied twice — found by the seeded simulation in `chaos-tests/`. Messages
//!   with an `original_offset` that such versions wrote are still read correctly.)
//! - A **time-to-cut** for the block being built cuts it; one for an earlier block is stale
//!   and ignored (another orderer's timer fired after a cut); one for a later block cannot
//!   happen in a correct partition and is an error.
//! - **Connect** messages only prove that an orderer can produce; they order nothing.
//!
//! Each block records the offset of the last envelope it holds; a restarted orderer
//! resumes right after it with [`KafkaCore::resume`] and builds the same blocks again.
//! Time enters only as the driver's batch timer: the core asks for it
//! ([`Action::StartTimer`]) and the driver produces a time-to-cut when it fires.

use bytes::Bytes;
use thiserror::Error;

use crate::cutter::{BatchItem, BatchLimits, BlockCutter, CutterError};

/// Checks an envelope (and whether it is a config envelope) against the config in force;
/// must give every orderer the same verdict (no clock, no local state).
pub type Revalidate<'a> = dyn Fn(&[u8], bool) -> Result<(), String> + 'a;

/// A message of a channel's partition, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaMessage {
    /// An envelope to order.
    Regular {
        /// The encoded envelope.
        envelope: Bytes,
        /// The config sequence it was validated against.
        config_seq: u64,
        /// Set only by earlier versions, which re-submitted stale config envelopes: the
        /// offset of the first submission (a copy at or below the last one applied is
        /// skipped). 0 otherwise.
        original_offset: i64,
        /// Whether it is a config envelope (alone in its block).
        is_config: bool,
    },
    /// Cut block `block_number` now (its batch timer fired on some orderer).
    TimeToCut {
        /// The block the timer was started for.
        block_number: u64,
    },
    /// An orderer announcing that it can produce to the partition.
    Connect,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the next block (its number is the ledger height) with these envelopes and
    /// `last_offset` as its consenter metadata.
    Block {
        /// The envelopes, in partition order.
        envelopes: Vec<Bytes>,
        /// Offset of the last envelope in the block: the resume point.
        last_offset: i64,
        /// The highest `original_offset` of a re-submitted config applied up to and
        /// including this block (recorded with the block, so a replay skips it).
        last_original_offset: i64,
        /// A config block (one config envelope).
        config: bool,
    },
    /// Start the batch timer for `block`; when it fires, produce `TimeToCut{block}`.
    StartTimer {
        /// The block being built.
        block: u64,
    },
    /// The pending batch was cut: stop the timer.
    StopTimer,
    /// This envelope was refused (re-validation failed or it is too large); its
    /// committed-mode waiter, if any, learns why.
    Refused {
        /// The envelope.
        envelope: Bytes,
        /// Why.
        reason: String,
    },
}

/// A partition the core cannot follow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KafkaCoreError {
    /// A time-to-cut for a block after the one being built: the partition holds messages
    /// this orderer never saw, or orderers disagree on the chain.
    #[error("time-to-cut for block {got} while building block {building}")]
    FutureTimeToCut {
        /// The block the message names.
        got: u64,
        /// The block this orderer is building.
        building: u64,
    },
    /// Offsets went backwards.
    #[error("offset {got} after offset {last}")]
    OffsetOrder {
        /// The offset received.
        got: i64,
        /// The last offset seen.
        last: i64,
    },
}

/// An envelope waiting in the cutter, with the offset it came from.
#[derive(Debug, Clone)]
struct Pending {
    envelope: Bytes,
    offset: i64,
}

impl BatchItem for Pending {
    fn size_bytes(&self) -> usize {
        self.envelope.len()
    }
}

/// The state of one channel's block building from its partition.
#[derive(Debug)]
pub struct KafkaCore {
    cutter: BlockCutter<Pending>,
    /// Number of the block being built (the ledger height).
    building: u64,
    /// Block the batch timer runs for, if any.
    timer: Option<u64>,
    /// Last offset seen.
    last_seen: i64,
    /// Highest `original_offset` of a re-submitted config envelope applied.
    last_original_offset: i64,
}

/// Where a restarted core resumes: from the ledger's last block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// The ledger height (the next block's number).
    pub next_block: u64,
    /// The last offset held by a block (-1 when no block came from the partition).
    pub last_offset: i64,
    /// The highest `original_offset` of a re-submitted config applied (0 if none).
    pub last_original_offset: i64,
}

impl KafkaCore {
    /// A core that resumes after `at`.
    pub fn resume(limits: BatchLimits, at: ResumePoint) -> Self {
        Self {
            cutter: BlockCutter::new(limits),
            building: at.next_block,
            timer: None,
            last_seen: at.last_offset,
            last_original_offset: at.last_original_offset,
        }
    }

    /// The first offset to consume.
    pub fn start_offset(&self) -> i64 {
        self.last_seen + 1
    }

    /// The number of the block being built.
    pub fn building(&self) -> u64 {
        self.building
    }

    /// Envelopes waiting for the next cut (a graceful halt waits for them to be cut).
    pub fn pending(&self) -> usize {
        self.cutter.pending_count()
    }

    /// The last offset fed to the core.
    pub fn last_offset(&self) -> i64 {
        self.last_seen
    }

    /// New batch limits (after a config block).
    pub fn set_limits(&mut self, limits: BatchLimits) {
        self.cutter.set_limits(limits);
    }

    /// Feeds the message at `offset`. `config_seq` is the sequence of the config in force
    /// (after every block the previous actions wrote); `revalidate` checks an envelope
    /// against it, deterministically (every orderer must reach the same verdict).
    pub fn on_message(
        &mut self,
        offset: i64,
        message: KafkaMessage,
        config_seq: u64,
        revalidate: &Revalidate<'_>,
    ) -> Result<Vec<Action>, KafkaCoreError> {
        if offset <= self.last_seen {
            return Err(KafkaCoreError::OffsetOrder {
                got: offset,
                last: self.last_seen,
            });
        }
        self.last_seen = offset;
        let mut actions = Vec::new();
        match message {
            KafkaMessage::Connect => {}
            KafkaMessage::TimeToCut { block_number } => {
                if block_number > self.building {
                    return Err(KafkaCoreError::FutureTimeToCut {
                        got: block_number,
                        building: self.building,
                    });
                }
                if block_number == self.building && self.cutter.pending_count() > 0 {
                    let batch = self.cutter.cut();
                    self.block(batch, false, &mut actions);
                    self.stop_timer(&mut actions);
                }
            }
            KafkaMessage::Regular {
                envelope,
                config_seq: validated_at,
                original_offset,
                is_config,
            } => {
                if original_offset != 0 && original_offset <= self.last_original_offset {
                    // A re-submission applied before a restart.
                    return Ok(actions);
                }
                // Config envelopes are always checked again: anyone who can write to the
                // partition could otherwise rewrite the channel.
                if is_config && validated_at < config_seq {
                    actions.push(Action::Refused {
                        envelope,
                        reason: format!(
                            "config update validated at config sequence {validated_at}, but the channel is at {config_seq}: submit it again"
                        ),
                    });
                    return Ok(actions);
                }
                if validated_at < config_seq || is_config {
                    if let Err(reason) = revalidate(&envelope, is_config) {
                        actions.push(Action::Refused { envelope, reason });
                        return Ok(actions);
                    }
                }
                let item = Pending {
                    envelope: envelope.clone(),
                    offset,
                };
                match self.cutter.ordered(item, is_config) {
                    Ok(ordered) => {
                        let n = ordered.batches.len();
                        for (i, batch) in ordered.batches.into_iter().enumerate() {
                            let config_block = is_config && i + 1 == n;
                            if config_block && original_offset != 0 {
                                self.last_original_offset = original_offset;
                            }
                            self.block(batch, config_block, &mut actions);
                        }
                        if ordered.pending {
                            if self.timer != Some(self.building) {
                                self.timer = Some(self.building);
                                actions.push(Action::StartTimer {
                                    block: self.building,
                                });
                            }
                        } else {
                            self.stop_timer(&mut actions);
                        }
                    }
                    Err(e @ CutterError::TooLarge { .. }) => actions.push(Action::Refused {
                        envelope,
                        reason: e.to_string(),
                    }),
                }
            }
        }
        Ok(actions)
    }

    fn block(&mut self, batch: Vec<Pending>, config: bool, actions: &mut Vec<Action>) {
        let last_offset = batch.last().map(|p| p.offset).unwrap_or(self.last_seen);
        actions.push(Action::Block {
            envelopes: batch.into_iter().map(|p| p.envelope).collect(),
            last_offset,
            last_original_offset: self.last_original_offset,
            config,
        });
        self.building += 1;
        if self.timer.is_some_and(|t| t < self.building) {
            // The timer ran for a block that is now written; a pending rest gets its own.
            self.timer = None;
            actions.push(Action::StopTimer);
        }
    }

    fn stop_timer(&mut self, actions: &mut Vec<Action>) {
        if self.timer.take().is_some() {
            actions.push(Action::StopTimer);
        }
    }
}

#[cfg(test)]
mod tests;
