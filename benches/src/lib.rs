//! # ordo-bench: the end-to-end load generators behind `ordo bench`
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
//! `ordo bench peer` ([`run_peer_bench`]) measures how fast the peers of a network
//! validate and commit endorser transactions fed to them by a live orderer:
//!
//! 1. **Before the clock**, `txs` ENDORSER_TRANSACTION envelopes for chaincode `bank` are
//!    built on every core: proposed and signed by the first org's client, each with a
//!    read/write set that reads one key as absent and writes it, response status 200, and
//!    endorsed by the peer identities of the fewest orgs (in channel order) that satisfy
//!    `bank`'s endorsement policy. Keys and tx ids carry a random run id, so runs never
//!    collide. `conflict_percent`% of them share their key with the transaction before
//!    them: exactly that many get MVCC_READ_CONFLICT (see `endorse`). Then the Deliver
//!    stream from the orderer is opened at its newest block, and every peer must have
//!    caught up with that block.
//! 2. **The load** goes out exactly as in the orderer bench (same streams, same window);
//!    the orderer's Deliver stream tells which blocks hold our transactions, so the
//!    *final height* — one past the last of them — is known once every accepted
//!    transaction has been delivered.
//! 3. **Every peer** is polled every 10 ms for its height (Admin `GetChannelInfo`, signed
//!    by that peer's org admin), by one task per peer; the time a peer reached the final
//!    height is the first poll that saw it there.
//! 4. **After the clock**, every peer's height and commit hash are read again (they agree
//!    when the world states agree), and the blocks holding our transactions are read back
//!    from one peer (Query `GetBlock`) to count the validation codes in their metadata.
//!
//! What its report's numbers mean ([`PeerBenchReport`]): *tx/s* is committed
//! transactions (of any code) divided by the time from the first submit until the
//! slowest peer reached the final height — validated and committed, on every peer; per
//! peer the same over its own time; *codes* counts our transactions per validation code;
//! *commit_hashes_agree* says every peer reached the final height and all report the same
//! height and commit hash. The load generator, the orderer and the peers share the
//! machine's cores when run with `ordo up`.
//!
//! `ordo bench e2e` ([`run_e2e_bench`]) measures what a chaincode application sees:
//! `bank` transfers endorsed, ordered, validated and committed through the peers'
//! Gateways by concurrent clients that each wait for their commit status; the method and
//! the report's fields are in the `e2e` module's docs and on [`E2eBenchReport`].
//!
//! Every report also carries throughput over time (a [`stats::ThroughputSeries`], counted
//! after the run from the times it already recorded) and its whole latency distribution
//! (a [`stats::PercentileCurve`]); [`plot`] draws both into one SVG for `--plot FILE.svg`.
//!
//! For endurance, `ordo bench e2e --duration S` also cuts the run into windows
//! (`--window-s`, a minute by default: VALID tx/s, p50 and p99 of each), compares its
//! first 10 minutes with its last 10 ([`windows::Drift`]), and with `--watch-disk DIR`
//! samples the disk use of each directory every 10 s ([`disk::DiskSeries`]); `--plot`
//! then adds latency per window and disk use over time below the two panels.
//!
//! Layout: `prepare` signs, `endorse` builds endorser transactions, `broadcast` drives one
//! Broadcast stream, `deliver` follows blocks (its tracker owns the delivery times),
//! `peers` polls and reads the peers, `txid` reads tx ids without copying, `progress`
//! prints the live line, `orderer`, `peer` and `e2e` run the three benches, [`stats`] computes
//! percentiles and throughput over time, [`windows`] cuts a run into windows, [`disk`]
//! samples disk use, [`report`] formats the results and [`plot`] draws them.
//!
//! Memory: every envelope is kept from signing to the end of the run (about
//! `payload_bytes` + 400 bytes each for the orderer bench, about 1.2 KB each for the peer
//! bench), so a run of a million 1 KiB envelopes needs ~1.5 GB.

mod broadcast;
mod deliver;
pub mod disk;
mod e2e;
mod endorse;
mod orderer;
mod peer;
mod peers;
pub mod plot;
mod prepare;
mod progress;
pub mod report;
pub mod stats;
mod txid;
pub mod windows;

pub use e2e::{run_e2e_bench, E2eBenchOptions, E2eBenchReport, E2E_CHAINCODE, OPENING_BALANCE};
pub use orderer::{run_orderer_bench, OrdererBenchOptions, BROADCAST_WINDOW};
pub use peer::{run_peer_bench, PeerBenchOptions, PEER_BENCH_CHAINCODE};
pub use report::{OrdererBenchReport, PeerBenchReport, PeerFigures};
