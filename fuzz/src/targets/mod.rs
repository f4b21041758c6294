//! One module per fuzz target; each has `run(data)`, the whole target, and `seeds()`, the
//! inputs its committed corpus starts from (real, valid messages from the fixture, so
//! the fuzzer starts deep inside the checks rather than at the first decode).
//!
//! Every target asserts what must hold for any input — no panic, and the invariants
//! named in its docs — so a crash is a bug in Ordo, never in the harness.

pub mod admin;
pub mod broadcast;
pub mod chain_verifier;
pub mod cluster_auth;
pub mod config_update;
pub mod deliver;
pub mod discovery;
pub mod envelope;
pub mod kafka_wire;
pub mod node_config;
pub mod proposal;
pub mod query;
pub mod raft_message;
pub mod shim;
pub mod validator;

/// A target: its name (as `cargo fuzz` knows it), its body and its seed inputs.
pub struct Target {
    /// The name of its `fuzz_targets/` file and corpus directory.
    pub name: &'static str,
    /// Runs one input.
    pub run: fn(&[u8]),
    /// The seed corpus.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target.
pub const ALL: &[Target] = &[
    Target {
        name: "admin",
        run: admin::run,
        seeds: admin::seeds,
    },
    Target {
        name: "broadcast",
        run: broadcast::run,
        seeds: broadcast::seeds,
    },
    Target {
        name: "chain_verifier",
        run: chain_verifier::run,
        seeds: chain_verifier::seeds,
    },
    Target {
        name: "cluster_auth",
        run: cluster_auth::run,
        seeds: cluster_auth::seeds,
    },
    Target {
        name: "config_update",
        run: config_update::run,
        seeds: config_update::seeds,
    },
    Target {
        name: "deliver",
        run: deliver::run,
        seeds: deliver::seeds,
    },
    Target {
        name: "discovery",
        run: discovery::run,
        seeds: discovery::seeds,
    },
    Target {
        name: "envelope",
        run: envelope::run,
        seeds: envelope::seeds,
    },
    Target {
        name: "kafka_wire",
        run: kafka_wire::run,
        seeds: kafka_wire::seeds,
    },
    Target {
        name: "node_config",
        run: node_config::run,
        seeds: node_config::seeds,
    },
    Target {
        name: "proposal",
        run: proposal::run,
        seeds: proposal::seeds,
    },
    Target {
        name: "query",
        run: query::run,
        seeds: query::seeds,
    },
    Target {
        name: "raft_message",
        run: raft_message::run,
        seeds: raft_message::seeds,
    },
    Target {
        name: "shim",
        run: shim::run,
        seeds: shim::seeds,
    },
    Target {
        name: "validator",
        run: validator::run,
        seeds: validator::seeds,
    },
];
