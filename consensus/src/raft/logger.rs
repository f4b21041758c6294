//! raft-rs logs through `slog`; Ordo logs through `tracing`. This drain forwards raft's
//! records as `tracing` events (target `raft`), one level down — raft-rs logs every
//! election at info, which is debug detail for an orderer operator.

use slog::{Drain, Level, Never, OwnedKVList, Record};

/// A `slog` drain that emits `tracing` events.
struct TracingDrain {
    channel: String,
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, _values: &OwnedKVList) -> Result<(), Never> {
        let channel = self.channel.as_str();
        match record.level() {
            Level::Critical | Level::Error => {
                tracing::error!(target: "raft", channel, "{}", record.msg())
            }
            Level::Warning => tracing::warn!(target: "raft", channel, "{}", record.msg()),
            Level::Info => tracing::debug!(target: "raft", channel, "{}", record.msg()),
            Level::Debug | Level::Trace => {
                tracing::trace!(target: "raft", channel, "{}", record.msg())
            }
        }
        Ok(())
    }
}

/// The logger raft-rs gets for `channel`.
pub(super) fn for_channel(channel: &str) -> slog::Logger {
    slog::Logger::root(
        TracingDrain {
            channel: channel.to_string(),
        }
        .fuse(),
        slog::o!(),
    )
}
