//! Test support shared by Ordo's crates, so that every test builds its consortium, its
//! channel, its envelopes, its misbehaving orderer and its node processes the same way.
//!
//! Before this crate each test crate carried its own copies (six channel-config
//! fixtures, three fake orderers, two process harnesses) which drifted apart: a fixture
//! fixed in one place stayed wrong in the others. What lives here:
//!
//! - [`keys`]: keys from fixed seeds, so engine transcripts and simulations are
//!   reproducible to the byte;
//! - [`org`]: an organization with its CA, enrolling members and consenters;
//! - [`channel`]: a channel-config builder with documented defaults;
//! - [`envelopes`], [`admin`] and [`blocks`]: signed envelopes, admin requests and
//!   signed chains;
//! - [`answer`]: a call's outcome as a client sees it (a gRPC code and a reason);
//! - [`fake_orderer`]: one AtomicBroadcast server that relays or orders, with a fault
//!   enum for what it does wrong;
//! - [`process`] and [`node_config`]: real `ordo` node processes (start, SIGKILL,
//!   SIGTERM, SIGSTOP, restart) and the config sections tests write for them.
//!
//! It depends only on `ordo-proto` and `ordo-sdk`: the consensus, ledger, orderer and
//! peer crates use it in their unit tests, which would otherwise see two copies of their
//! own types.

pub mod admin;
pub mod answer;
pub mod blocks;
pub mod channel;
pub mod envelopes;
pub mod fake_orderer;
pub mod keys;
pub mod node_config;
pub mod org;
pub mod process;

pub use channel::ChannelBuilder;
pub use org::TestOrg;
