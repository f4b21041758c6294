//! Using chaincode through a peer's Gateway.
//!
//! Connect once ([`Gateway`]: one connection to one peer, as one identity), pick a
//! channel and a chaincode ([`Contract`]), then:
//!
//! - [`Contract::evaluate`]: run a function on the gateway's peer without ordering
//!   anything (a query);
//! - [`Contract::submit`]: endorse across orgs, sign, order and wait until it commits;
//!   [`Contract::submit_with_retry`] proposes again after an MVCC conflict, with jittered
//!   backoff ([`RetryPolicy`]);
//! - [`Contract::call`] for the same with transient data, a choice of endorsing orgs,
//!   or in two steps ([`Call::submit_async`] returns as soon as an orderer took the
//!   transaction; [`Pending::committed`] waits for the commit);
//! - [`Contract::events`]: the chaincode's events one by one, from the next block or a
//!   [`Checkpoint`] ([`Checkpointer`] keeps one in memory or in a file).
//!
//! A [`Contract`] is `Clone + Send + Sync` and every method takes `&self`: share one
//! among tasks (clones share the connection). Failures are [`GatewayError`]s: a
//! chaincode's refusal carries its status and message as fields
//! ([`GatewayError::chaincode_status`]), a transaction that committed but not as VALID its
//! [`TxValidationCode`] ([`GatewayError::validation_code`]).
//!
//! ```no_run
//! use ordo_sdk::gateway::{Gateway, StartAt};
//! use ordo_sdk::network::Network;
//!
//! # async fn bank() -> Result<(), Box<dyn std::error::Error>> {
//! // The network file `ordo up` wrote; connect to BankA's peer as BankA's client.
//! let network = Network::load("net/network.json".as_ref())?;
//! let gateway = Gateway::for_org(&network, "BankA", "client").await?;
//! let bank = gateway.contract("ordo-channel", "bank");
//!
//! // Listen first, so the events of what follows are seen.
//! let mut events = bank.events(StartAt::NextBlock).await?;
//!
//! let opened = bank.submit("open", ["alice", "100"]).await?;
//! println!("opened in block {}", opened.block);
//! bank.submit("open", ["bob", "0"]).await?;
//! bank.submit_with_retry("transfer", ["alice", "bob", "30"]).await?;
//!
//! let balance = bank.evaluate("balance", ["bob"]).await?;
//! assert_eq!(balance, "30");
//!
//! while let Some(event) = events.next().await {
//!     let event = event?;
//!     println!("{} in block {}: {:?}", event.name, event.block, event.payload);
//!     if event.name == "transfer" {
//!         break;
//!     }
//! }
//! events.close();
//! # Ok(())
//! # }
//! ```
//!
//! Each step is also available alone, for clients that sign elsewhere:
//! [`signed_proposal`] → `Gateway.Endorse` (returns the payload to sign) →
//! [`crate::tx::attach_signature`] → `Gateway.Submit` → [`commit_status_request`] →
//! `Gateway.CommitStatus`.

mod contract;
mod error;
mod events;
mod retry;

use std::sync::Arc;

use prost::Message;
use tonic::transport::Channel;

use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Envelope, HeaderType};
use ordo_proto::pb::discovery::discovery_client::DiscoveryClient;
use ordo_proto::pb::discovery::PeersRequest;
use ordo_proto::pb::gateway::{ChaincodeEventsRequest, CommitStatusRequest};
use ordo_proto::pb::query::query_client::QueryClient;
use ordo_proto::pb::query::{query_request, GetHeight, QueryRequest};

pub use contract::{Call, Commit, Contract, Endorsed, Pending, Submitted};
pub use error::GatewayError;
pub use events::{
    ChaincodeEvent, ChaincodeEvents, Checkpoint, CheckpointError, Checkpointer, StartAt,
};
pub use ordo_proto::pb::peer::TxValidationCode;
pub use retry::RetryPolicy;

use crate::tx::Proposal;

/// One connection to one peer's Gateway, as one identity. Cheap to clone (clones share
/// the connection); make [`Contract`]s from it.
#[derive(Clone)]
pub struct Gateway {
    conn: Channel,
    identity: Arc<Identity>,
    addr: Arc<str>,
}

impl Gateway {
    /// Connects to the gateway at `addr` over `transport`, signing as `identity`.
    pub async fn connect(
        addr: &str,
        transport: &crate::transport::Transport,
        identity: Identity,
    ) -> Result<Self, GatewayError> {
        let conn = crate::transport::connect(addr, transport)
            .await
            .map_err(|e| GatewayError::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            conn,
            identity: Arc::new(identity),
            addr: Arc::from(addr),
        })
    }

    /// Connects to the peer of `org` in a network file (as `ordo up` writes it), as that
    /// org's `member` (`client`, `admin`, …), with the member's transport.
    pub async fn for_org(
        network: &crate::network::Network,
        org: &str,
        member: &str,
    ) -> Result<Self, GatewayError> {
        let not_found = |reason: String| GatewayError::Connect {
            addr: format!("the peer of {org}"),
            reason,
        };
        let peer = network
            .nodes_with_role("peer")
            .find(|p| p.org == org)
            .ok_or_else(|| not_found(format!("the network has no peer of org {org:?}")))?;
        let member = network
            .member(Some(org), member)
            .map_err(|e| not_found(e.to_string()))?;
        Self::connect(&peer.grpc_addr, &member.transport, member.identity).await
    }

    /// The `chaincode` on `channel`, through this gateway.
    pub fn contract(&self, channel: &str, chaincode: &str) -> Contract {
        Contract::new(self.clone(), channel, chaincode)
    }

    /// The identity requests are signed with.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How many blocks the peer has committed on `channel` (the next block's number).
    pub async fn height(&self, channel: &str) -> Result<u64, GatewayError> {
        let resp = QueryClient::new(self.conn.clone())
            .query(height_request(&self.identity, channel))
            .await
            .map_err(error::from_status("Query"))?
            .into_inner();
        Ok(resp.height)
    }

    /// The peers of `channel` this gateway's discovery sees (itself included), as they
    /// announced themselves: which org, where, which chaincodes, how far along. The peer
    /// verified each announcement's signature and certificate before keeping it.
    pub async fn peers(&self, channel: &str) -> Result<Vec<DiscoveredPeer>, GatewayError> {
        let resp = DiscoveryClient::new(self.conn.clone())
            .peers(peers_request(&self.identity, channel))
            .await
            .map_err(error::from_status("Peers"))?
            .into_inner();
        Ok(resp.peers.iter().filter_map(DiscoveredPeer::read).collect())
    }
}

/// A peer as it announced itself on a channel ([`Gateway::peers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredPeer {
    /// Its org (from its certificate).
    pub org: String,
    /// Its name (the certificate's subject).
    pub subject: String,
    /// Where it is reached, `host:port`.
    pub endpoint: String,
    /// The chaincodes it can run.
    pub chaincodes: Vec<String>,
    /// Its ledger height when it announced.
    pub height: u64,
    /// When it announced, ms since the Unix epoch (its clock).
    pub issued_ms: u64,
}

impl DiscoveredPeer {
    /// Reads an announcement (skipped when it does not decode: the peer verified it, so
    /// that would be a peer of another version).
    fn read(signed: &ordo_proto::pb::discovery::SignedPeerInfo) -> Option<Self> {
        let info = ordo_proto::pb::discovery::PeerInfo::decode(signed.info.as_ref()).ok()?;
        let (_, body) = ordo_proto::cert::decode(&info.certificate).ok()?;
        Some(Self {
            org: body.org,
            subject: body.subject,
            endpoint: info.endpoint,
            chaincodes: info.chaincodes,
            height: info.height,
            issued_ms: info.issued_ms,
        })
    }
}

/// The signed PROPOSAL envelope for `proposal`, by its creator: the invocation with its
/// transient data ([`Proposal::signed_bytes`]).
pub fn signed_proposal(creator: &Identity, proposal: &Proposal, timestamp_ms: u64) -> Envelope {
    envelope::create_signed_with_nonce(
        creator,
        proposal.channel_id(),
        HeaderType::Proposal,
        proposal.signed_bytes().clone(),
        timestamp_ms,
        proposal.nonce(),
    )
    .0
}

/// A signed CommitStatus request for `tx_id` on `channel`.
pub fn commit_status_request(identity: &Identity, channel: &str, tx_id: &str) -> Envelope {
    message(
        identity,
        channel,
        CommitStatusRequest {
            tx_id: tx_id.to_string(),
        },
    )
}

/// A signed ChaincodeEvents request: `chaincode`'s events on `channel` from block
/// `start_block` on, after transaction `after_tx_id` of that block when not empty (a
/// checkpoint).
pub fn chaincode_events_request(
    identity: &Identity,
    channel: &str,
    chaincode: &str,
    start_block: u64,
    after_tx_id: &str,
) -> Envelope {
    message(
        identity,
        channel,
        ChaincodeEventsRequest {
            chaincode: chaincode.to_string(),
            start_block,
            after_tx_id: after_tx_id.to_string(),
        },
    )
}

/// A signed Query for the peer's height on `channel`.
pub fn height_request(identity: &Identity, channel: &str) -> Envelope {
    message(
        identity,
        channel,
        QueryRequest {
            query: Some(query_request::Query::Height(GetHeight {})),
        },
    )
}

/// A signed Discovery.Peers request for `channel`.
pub fn peers_request(identity: &Identity, channel: &str) -> Envelope {
    message(identity, channel, PeersRequest {})
}

/// A signed MESSAGE envelope carrying `data`, stamped now.
fn message(identity: &Identity, channel: &str, data: impl Message) -> Envelope {
    envelope::create_signed(
        identity,
        channel,
        HeaderType::Message,
        data.encode_to_vec().into(),
        ordo_proto::now_ms(),
    )
    .0
}
