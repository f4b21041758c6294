//! # ordo-chaos: breaking Ordo on purpose
//!
//! Two halves, one goal — show that no fault forks a channel's chain or loses an
//! acknowledged transaction:
//!
//! **Real processes under a nemesis.** [`net::Net`] builds a network of real `ordo`
//! processes on 127.0.0.1 (solo; raft with each consenter behind a fault-injecting
//! [`proxy`]; kafka on librdkafka's mock cluster; optionally peers). [`load`] clients
//! submit over Broadcast, [`observe`] follows every orderer with Deliver and polls the
//! peers, the [`nemesis`] kills, pauses, partitions, slows, fills disks and takes brokers
//! down according to a [`scenario`], then heals everything. Every submit, answer, block,
//! peer state and fault lands in one [`history::History`]; the [`check`]ers (one property
//! per file) read it and report violations with their evidence. A failing run leaves its
//! history and the nodes' logs under `target/chaos/`. Every link of a test network —
//! clients, peers, consenters, the lying orderer — runs over mutual TLS, and the
//! [`rotate`] scenario renews certificates while the faults go on.
//!
//! **Seeded simulations of the cores.** [`sim`] runs the cores — the block cutter, the
//! kafka core with several orderers on one simulated partition, and the orderer's raft
//! loop turn by turn over real ledgers — under a deterministic simulator: message loss,
//! duplication and reordering where the protocol allows them, crashes that keep only what
//! was durable (between turns, and for `raft-torn` inside a turn, between two writes), a
//! safety phase then a liveness phase. A failure names its seed; the same seed replays it
//! exactly.
//!
//! The checkers can fail: the `ordo-orderer/test-faults` feature (turned on by this
//! crate's dev-dependency) compiles in faults that break one promise each, switched on by
//! `ORDO_TEST_FAULT`; a test runs one and asserts that the checker reports it.

pub mod check;
pub mod evil;
pub mod history;
pub mod load;
pub mod nemesis;
pub mod net;
pub mod observe;
/// Real `ordo` processes, from the shared test kit.
pub use ordo_testkit::process as proc;
pub mod proxy;
pub mod rotate;
pub mod scenario;
pub mod sim;
