//! The solo engine: every decision of the solo backend — re-validation, cutting, the
//! batch timer, config blocks — as a pure function of its inputs, `step(Input) ->
//! Vec<Command>`, like the raft engine and the kafka core.
//!
//! Rules:
//! - A normal envelope validated at an older config sequence is re-validated against the
//!   configuration in force (at the time the driver last told); a refusal reaches its
//!   committed-mode waiter ([`Command::Reject`]), as does the cutter's (too large).
//! - A config envelope validated at another sequence than the channel's is refused. One
//!   that is taken cuts the pending batch into a block of its own, then goes alone in a
//!   config block; the engine then takes nothing until the driver reports the config
//!   block written ([`Input::ConfigWritten`]), so every later envelope is checked and
//!   cut under the configuration it brings.
//! - The batch timer starts with the first envelope pending after a cut and fires once
//!   ([`Command::ArmTimer`]); a cut by size disarms it.
//! - A halt cuts whatever is pending ([`SoloEngine::drain`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::chain::OrderRequest;
use crate::cutter::BlockCutter;
use crate::support::ConfigState;

/// Something that happened to the chain.
#[derive(Debug, Clone)]
pub enum Input {
    /// The time since the driver started, and the wall clock in Unix seconds (for
    /// re-validating envelope timestamps).
    Time {
        /// Monotonic time since the driver started.
        now: Duration,
        /// Wall-clock Unix seconds.
        unix_secs: u64,
    },
    /// An envelope to order.
    Envelope {
        /// The envelope as Broadcast checked it.
        request: OrderRequest,
        /// A config envelope.
        is_config: bool,
    },
    /// The config block asked for was written: its configuration is in force.
    ConfigWritten(Arc<ConfigState>),
}

/// What the engine asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Build, sign and append the next block of these envelopes. A config block must be
    /// reported with [`Input::ConfigWritten`] before anything else is stepped.
    Write {
        /// The block's envelopes.
        envelopes: Vec<Bytes>,
        /// Whether it is a config block.
        config: bool,
    },
    /// Tell the committed-mode waiter of `tx_id` its envelope will not be written.
    Reject {
        /// The envelope.
        tx_id: String,
        /// Why.
        reason: String,
    },
    /// Step [`Input::Time`] at this time at the latest; `None` disarms the timer.
    ArmTimer(Option<Duration>),
}

/// The solo engine of one channel.
pub struct SoloEngine {
    cutter: BlockCutter<Bytes>,
    state: Arc<ConfigState>,
    now: Duration,
    unix_secs: u64,
    deadline: Option<Duration>,
    /// A config block was asked for and is not reported written yet.
    awaiting_config: bool,
    out: Vec<Command>,
}

impl SoloEngine {
    /// An engine for a channel whose configuration in force is `state`.
    pub fn new(state: Arc<ConfigState>) -> Self {
        Self {
            cutter: BlockCutter::new(state.limits),
            state,
            now: Duration::ZERO,
            unix_secs: 0,
            deadline: None,
            awaiting_config: false,
            out: Vec::new(),
        }
    }

    /// Whether the engine waits for [`Input::ConfigWritten`].
    pub fn awaiting_config(&self) -> bool {
        self.awaiting_config
    }

    /// Steps one input; returns what the driver must do, in order.
    pub fn step(&mut self, input: Input) -> Vec<Command> {
        let armed = self.deadline;
        match input {
            Input::Time { now, unix_secs } => {
                self.now = self.now.max(now);
                self.unix_secs = unix_secs;
                if self.deadline.is_some_and(|d| self.now >= d) {
                    self.deadline = None;
                    self.cut();
                }
            }
            Input::Envelope { request, is_config } => {
                if is_config {
                    self.configure(request);
                } else {
                    self.order(request);
                }
            }
            Input::ConfigWritten(state) => {
                self.awaiting_config = false;
                self.cutter.set_limits(state.limits);
                self.state = state;
            }
        }
        if self.deadline != armed {
            self.out.push(Command::ArmTimer(self.deadline));
        }
        std::mem::take(&mut self.out)
    }

    /// Cuts whatever is pending (a halt: nothing acknowledged is left behind).
    pub fn drain(&mut self) -> Vec<Command> {
        self.deadline = None;
        self.cut();
        std::mem::take(&mut self.out)
    }

    fn cut(&mut self) {
        let batch = self.cutter.cut();
        if !batch.is_empty() {
            self.write(batch, false);
        }
    }

    fn write(&mut self, envelopes: Vec<Bytes>, config: bool) {
        self.out.push(Command::Write { envelopes, config });
    }

    fn reject(&mut self, tx_id: String, reason: String) {
        self.out.push(Command::Reject { tx_id, reason });
    }

    fn order(&mut self, req: OrderRequest) {
        if req.config_seq < self.state.sequence() {
            if let Err(e) = crate::filters::revalidate(&self.state, &req.envelope, self.unix_secs) {
                return self.reject(req.tx_id, e.to_string());
            }
        }
        match self.cutter.ordered(req.envelope, false) {
            Ok(o) => {
                for b in o.batches {
                    self.write(b, false);
                }
                self.deadline = if o.pending {
                    self.deadline.or(Some(self.now + self.state.batch_timeout))
                } else {
                    None
                };
            }
            Err(e) => self.reject(req.tx_id, e.to_string()),
        }
    }

    fn configure(&mut self, req: OrderRequest) {
        let sequence = self.state.sequence();
        if req.config_seq != sequence {
            let reason = format!(
                "config update validated at sequence {} but the channel is at {sequence}",
                req.config_seq
            );
            return self.reject(req.tx_id, reason);
        }
        let batches = match self.cutter.ordered(req.envelope, true) {
            Ok(o) => o.batches,
            Err(e) => return self.reject(req.tx_id, e.to_string()),
        };
        self.deadline = None;
        let n = batches.len();
        for (i, b) in batches.into_iter().enumerate() {
            let config = i + 1 == n;
            self.write(b, config);
        }
        self.awaiting_config = true;
    }
}

#[cfg(test)]
mod tests;
