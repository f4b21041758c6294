//! One fake orderer for every test that needs an orderer to misbehave: a real
//! AtomicBroadcast gRPC server on a local port, plaintext or mutual TLS, that either
//! relays Deliver from a real orderer or orders by itself, and does what its [`Faults`]
//! say wrong.
//!
//! - The peer's deliver client tests give it as an endpoint before the honest one and
//!   check that each tampered block is refused and the tamperer avoided.
//! - The chaos sweep puts a TLS one in front of the peers (a plaintext one would be
//!   refused at the handshake and prove nothing) and checks that peers end with the same
//!   state as those that never saw it.
//! - The orderer benchmark's tests run against a self-ordering one whose rejections,
//!   losses and duplicates follow a fixed schedule, so every count in the report has an
//!   exact expected value.
//!
//! TLS vouches only for who holds the socket; what a block says is checked against the
//! orderers' signatures, which no fake can forge.

mod cutter;
mod service;
mod tamper;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use ordo_proto::pb::orderer::atomic_broadcast_server::AtomicBroadcastServer;
use ordo_sdk::tls::{ServerTls, TlsError};
use ordo_sdk::transport::Transport;

pub use tamper::{tamper, Tamper, Which};

/// Where a fake orderer's blocks come from.
#[derive(Clone)]
pub enum Source {
    /// Deliver is relayed from the real orderer at `upstream` (the client's own signed
    /// request passed on unchanged), reached over `transport`; Broadcast is refused
    /// (UNIMPLEMENTED).
    Relay {
        /// The real orderer's address.
        upstream: String,
        /// How to reach it.
        transport: Transport,
    },
    /// The fake orders what it accepts itself: unsigned, headerless blocks of up to 500
    /// envelopes, or whatever arrived within 5 ms. Deliver answers an empty block (the
    /// "newest" at the start), then every block cut from then on, whatever was asked.
    Cutter,
}

/// What a fake orderer does to its Deliver streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeliverFault {
    /// Passes every block unchanged.
    #[default]
    Honest,
    /// Changes `Which` blocks as [`Tamper`] says.
    Tamper(Which, Tamper),
    /// Opens the stream and never sends anything (nor closes it).
    Silent,
    /// Answers NOT_FOUND ("channel not found") at once.
    Refuse,
}

/// Everything a fake orderer does wrong. Broadcast faults count envelopes from 1 and
/// apply to [`Source::Cutter`] only; 0 means never.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Answer FORBIDDEN to every n-th envelope received.
    pub reject_every: u64,
    /// Answer SUCCESS to every n-th accepted envelope and never order it.
    pub lose_every: u64,
    /// Order every n-th accepted (and not lost) envelope twice.
    pub duplicate_every: u64,
    /// What Deliver does.
    pub deliver: DeliverFault,
}

impl Faults {
    /// Only `deliver` wrong.
    pub fn deliver(deliver: DeliverFault) -> Self {
        Self {
            deliver,
            ..Self::default()
        }
    }
}

/// Why a fake orderer could not start.
#[derive(Debug, thiserror::Error)]
pub enum FakeOrdererError {
    /// No local port to listen on.
    #[error("fake orderer cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// The TLS files do not load.
    #[error("fake orderer TLS: {0}")]
    Tls(#[from] TlsError),
}

/// What a fake orderer has done so far.
#[derive(Debug, Default)]
pub struct Counters {
    received: AtomicU64,
    accepted: AtomicU64,
    tampered: AtomicU64,
}

/// A running fake orderer; stops when dropped.
pub struct FakeOrderer {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOrderer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeOrderer {
    /// Starts one on a free port of 127.0.0.1. With `tls`, it serves mutual TLS with that
    /// key pair (clients must chain to `tls.ca`) and, relaying, dials upstream however
    /// `source` says.
    pub async fn start(
        source: Source,
        faults: Faults,
        tls: Option<&ordo_sdk::tls::TlsFiles>,
    ) -> Result<Self, FakeOrdererError> {
        let server_tls = tls.map(ServerTls::from_files).transpose()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let service = service::Fake::new(source, faults, counters.clone());
        let server = tonic::transport::Server::builder().add_service(
            AtomicBroadcastServer::new(service)
                .max_decoding_message_size(ordo_sdk::orderer::MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(ordo_sdk::orderer::MAX_GRPC_MESSAGE_BYTES),
        );
        let task = match server_tls {
            Some(server_tls) => tokio::spawn(async move {
                let _ = server
                    .serve_with_incoming(tls::incoming(listener, server_tls))
                    .await;
            }),
            None => tokio::spawn(async move {
                let _ = server
                    .serve_with_incoming(TcpListenerStream::new(listener))
                    .await;
            }),
        };
        Ok(Self {
            addr,
            counters,
            task,
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its address as a channel config's endpoint or a client's target.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Blocks tampered with so far.
    pub fn tampered(&self) -> u64 {
        self.counters.tampered.load(Ordering::Relaxed)
    }

    /// Envelopes received so far (Broadcast).
    pub fn received(&self) -> u64 {
        self.counters.received.load(Ordering::Relaxed)
    }

    /// A shared handle on the counters, for a test that hands the orderer off.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

impl Counters {
    /// Blocks tampered with so far.
    pub fn tampered(&self) -> u64 {
        self.tampered.load(Ordering::Relaxed)
    }
}
