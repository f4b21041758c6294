//! # ordo-bench: the end-to-end load generator behind `ordo bench`
//!
//! `ordo bench orderer` ([`run_orderer_bench`]) measures how fast one orderer node orders
//! transactions, end to end, from a client's point of view:
//!
//! 1. **Signing happens before the clock starts.** All `txs` envelopes (type `MESSAGE`,
//!    random payloads of `payload_bytes`) are built and signed with the first org's
//!    `client` identity on every CPU core, and a map from tx id to envelope index is built,
//!    so the measurement is of the orderer, not of the client's Ed25519 speed.
//! 2. **One Deliver stream is opened first**, seeking from the newest block and following
//!    forever; the bench waits for its first block so that no block ordered afterwards can
//!    be missed. Every block is decoded down to each envelope's tx id; ids that are ours
//!    record their delivery time, other envelopes (someone else's load) are ignored.
//! 3. **`clients` Broadcast streams** (each on its own connection, opened before the clock)
//!    then send their share of the envelopes while reading the answers, one per envelope,
//!    in order. At most [`BROADCAST_WINDOW`] envelopes per stream are unanswered at any
//!    time, so the client cannot queue without bound and latency stays meaningful. The
//!    submit time of each envelope is taken just before it is handed to its stream.
//! 4. **Drain.** Once every response is in, the bench waits until every accepted envelope
//!    has been delivered, or until no new delivery of ours arrived for `drain_timeout`.
//!
//! What the report's numbers mean ([`OrdererBenchReport`]):
//!
//! - *accepted* / *rejected*: Broadcast answered SUCCESS / anything else (counted by status
//!   name). What SUCCESS promises depends on the channel's ack mode: enqueued for ordering,
//!   or already in a durable block.
//! - *delivered*: distinct envelopes of ours seen in delivered blocks.
//! - *lost*: accepted but never delivered before the drain gave up. Any lost envelope is a
//!   broken promise of the orderer (or a drain timeout too short for the backend).
//! - *duplicated*: deliveries of an envelope beyond its first, i.e. the same transaction
//!   ordered twice. Any duplicate is a bug.
//! - *latency*: submit → delivered, per envelope, in milliseconds (p50, p99, max).
//! - *tx/s*: delivered envelopes per second from the first submit to the last delivery;
//!   *accepted/s*: accepted envelopes per second from the first submit to the last SUCCESS.
//!
//! Layout: `prepare` signs, `broadcast` drives one Broadcast stream, `deliver` follows
//! blocks (its tracker owns the delivery times), `txid` reads tx ids without copying,
//! `progress` prints the live line, `orderer` runs the whole thing, [`stats`] computes
//! percentiles and [`report`] formats the result.
//!
//! Memory: every envelope is kept from signing to the end of the run (about
//! `payload_bytes` + 400 bytes each), so a run of a million 1 KiB envelopes needs ~1.5 GB.

mod broadcast;
mod deliver;
mod orderer;
mod prepare;
mod progress;
pub mod report;
pub mod stats;
mod txid;

pub use orderer::{run_orderer_bench, OrdererBenchOptions, BROADCAST_WINDOW};
pub use report::OrdererBenchReport;
