//! # ordo-proto: the wire types and every rule two Ordo nodes must agree on
//!
//! Everything here is deterministic and free of IO, because a difference between two
//! nodes in any of it is a fork: a block hash computed differently, a signature accepted
//! by one node and refused by another, a policy read two ways.
//!
//! - [`authz`]: who may make a signed request to a node (its org's admins, a channel policy).
//! - [`pb`]: the prost/tonic types generated from `proto/*.proto`.
//! - [`hash`]: SHA-256, transaction ids and the block header hash.
//! - [`merkle`]: the RFC 6962 Merkle tree over a block's envelopes, with inclusion proofs.
//! - [`crypto`]: Ed25519 signing, verification and batch verification.
//! - [`cert`]: org CA certificates (issue, verify, expiry) and the per-channel [`cert::Msp`].
//! - [`policy`]: the policy language (any member, n-out-of, majority) and its evaluation.
//! - [`identity`]: a signing identity (key and certificate) and its files.
//! - [`envelope`]: building and checking signed envelopes.
//! - [`block`]: building, hashing, signing and verifying blocks.
//! - [`config`]: channel configuration validation and genesis blocks.
//! - [`verify`]: checking a chain block by block as an untrusting reader.
//! - [`status`]: the gRPC code of every refusal (one table for every service).
//!
//! Rule of the crate: sign and hash the exact bytes carried. No function here re-encodes a
//! decoded message in order to check a signature or a hash.

pub mod authz;
pub mod block;
pub mod cert;
pub mod cluster_auth;
pub mod config;
pub mod config_change;
pub mod crypto;
pub mod discovery;
pub mod envelope;
pub mod hash;
pub mod identity;
pub mod merkle;
pub mod policy;
pub mod replay;
pub mod status;
pub mod verify;

/// Generated protobuf and gRPC code.
#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod pb {
    /// `ordo.common`: envelopes, identities, blocks, channel configuration.
    pub mod common {
        include!(concat!(env!("OUT_DIR"), "/ordo.common.rs"));
    }
    /// `ordo.orderer`: the AtomicBroadcast service (Broadcast, Deliver).
    pub mod orderer {
        include!(concat!(env!("OUT_DIR"), "/ordo.orderer.rs"));
    }
    /// `ordo.admin`: channel participation and node status.
    pub mod admin {
        include!(concat!(env!("OUT_DIR"), "/ordo.admin.rs"));
    }
    /// `ordo.cluster`: orderer to orderer (raft messages, forwarded envelopes).
    pub mod cluster {
        include!(concat!(env!("OUT_DIR"), "/ordo.cluster.rs"));
    }
    /// `ordo.kafka`: what a kafka channel's partition holds, and a block's resume point.
    pub mod kafka {
        include!(concat!(env!("OUT_DIR"), "/ordo.kafka.rs"));
    }
    /// `ordo.query`: the peer's ledger queries.
    pub mod query {
        include!(concat!(env!("OUT_DIR"), "/ordo.query.rs"));
    }
    /// `ordo.peer`: endorser transactions (proposal, read/write set, endorsements) and
    /// validation codes.
    pub mod peer {
        include!(concat!(env!("OUT_DIR"), "/ordo.peer.rs"));
    }
    /// `ordo.chaincode`: chaincode as a service (peer to chaincode server).
    pub mod chaincode {
        include!(concat!(env!("OUT_DIR"), "/ordo.chaincode.rs"));
    }
    /// `ordo.gateway`: endorsement (peer to peer) and the Gateway for applications.
    pub mod gateway {
        include!(concat!(env!("OUT_DIR"), "/ordo.gateway.rs"));
    }
    /// `ordo.discovery`: peers announcing themselves per channel, and what a peer sees.
    pub mod discovery {
        include!(concat!(env!("OUT_DIR"), "/ordo.discovery.rs"));
    }
}

pub use pb::common::{Block, Envelope, Status};

/// The encoded `FileDescriptorSet` of every Ordo `.proto` file, for gRPC server
/// reflection: tools such as grpcurl discover the services from the node itself.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ordo_descriptor.bin"));

/// Milliseconds since the Unix epoch from the system clock.
///
/// Only for the edges (stamping a new envelope, checking certificate expiry against the
/// wall clock); deterministic code takes the time as an argument instead.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
