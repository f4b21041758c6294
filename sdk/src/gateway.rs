//! Using chaincode through a peer's Gateway: connect with an identity, pick a channel and
//! a chaincode ([`Contract`]), then `evaluate` (read-only, one peer) or `submit` (endorse
//! across orgs, sign, order, wait for the commit).
//!
//! Each step is also available alone, for clients that sign elsewhere:
//! [`signed_proposal`] → `Gateway.Endorse` (returns the payload to sign) →
//! [`crate::tx::attach_signature`] → `Gateway.Submit` → [`commit_status_request`] →
//! `Gateway.CommitStatus`.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use thiserror::Error;
use tonic::transport::Channel;

use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Envelope, HeaderType};
use ordo_proto::pb::gateway::events_client::EventsClient;
use ordo_proto::pb::gateway::gateway_client::GatewayClient;
use ordo_proto::pb::gateway::{
    ChaincodeEventsRequest, ChaincodeEventsResponse, CommitStatusRequest, CommitStatusResponse,
};
use ordo_proto::pb::peer::TxValidationCode;

use crate::tx::{self, Proposal};

/// Why a gateway call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GatewayError {
    /// The peer could not be reached.
    #[error("cannot reach the gateway at {addr}: {reason}")]
    Connect {
        /// The peer's address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The gateway refused the request (bad input, a chaincode error, an unmet
    /// endorsement policy, no orderer available, …).
    #[error("{step} refused ({code:?}): {message}")]
    Refused {
        /// Evaluate, Endorse, Submit or CommitStatus.
        step: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The gateway's explanation (it names the node that failed).
        message: String,
    },
    /// The transaction was ordered and committed, but not as VALID.
    #[error("transaction {tx_id} committed in block {block} as {code:?}")]
    NotValid {
        /// The transaction.
        tx_id: String,
        /// Its validation code.
        code: TxValidationCode,
        /// The block that holds it.
        block: u64,
    },
}

impl GatewayError {
    /// Whether submitting again (a fresh proposal) can succeed: an MVCC conflict (another
    /// transaction changed what this one read) or a peer or orderer that was unavailable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NotValid { code, .. } => *code == TxValidationCode::MvccReadConflict,
            Self::Refused { code, .. } => {
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                )
            }
            Self::Connect { .. } => true,
        }
    }
}

fn refused(step: &'static str) -> impl Fn(tonic::Status) -> GatewayError {
    move |s| GatewayError::Refused {
        step,
        code: s.code(),
        message: s.message().to_string(),
    }
}

/// The signed PROPOSAL envelope for `proposal`, by its creator.
pub fn signed_proposal(creator: &Identity, proposal: &Proposal, timestamp_ms: u64) -> Envelope {
    envelope::create_signed_with_nonce(
        creator,
        proposal.channel_id(),
        HeaderType::Proposal,
        proposal.proposal_bytes().clone(),
        timestamp_ms,
        proposal.nonce(),
    )
    .0
}

/// A signed CommitStatus request for `tx_id` on `channel`.
pub fn commit_status_request(identity: &Identity, channel: &str, tx_id: &str) -> Envelope {
    envelope::create_signed(
        identity,
        channel,
        HeaderType::Message,
        CommitStatusRequest {
            tx_id: tx_id.to_string(),
        }
        .encode_to_vec()
        .into(),
        ordo_proto::now_ms(),
    )
    .0
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
    envelope::create_signed(
        identity,
        channel,
        HeaderType::Message,
        ChaincodeEventsRequest {
            chaincode: chaincode.to_string(),
            start_block,
            after_tx_id: after_tx_id.to_string(),
        }
        .encode_to_vec()
        .into(),
        ordo_proto::now_ms(),
    )
    .0
}

/// Where an event consumer stands: the last event it handled. Resuming from a checkpoint
/// repeats nothing and skips nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Block of the last event handled.
    pub block: u64,
    /// Its transaction; empty before the first event.
    pub tx_id: String,
}

/// A committed, VALID transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Its id.
    pub tx_id: String,
    /// The chaincode's response payload.
    pub result: Bytes,
    /// The block that holds it.
    pub block: u64,
    /// The orderer that took it.
    pub orderer: String,
}

/// One chaincode on one channel, through one peer's gateway, as one identity.
#[derive(Clone)]
pub struct Contract {
    conn: Channel,
    client: GatewayClient<Channel>,
    identity: Identity,
    channel: String,
    chaincode: String,
}

impl Contract {
    /// Connects to the gateway at `addr` over `transport`, signing as `identity`.
    pub async fn connect(
        addr: &str,
        transport: &crate::transport::Transport,
        identity: Identity,
        channel: &str,
        chaincode: &str,
    ) -> Result<Self, GatewayError> {
        let conn = crate::orderer::connect(addr, transport)
            .await
            .map_err(|e| GatewayError::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            client: GatewayClient::new(conn.clone()),
            conn,
            identity,
            channel: channel.to_string(),
            chaincode: chaincode.to_string(),
        })
    }

    fn proposal(&self, function: &str, args: Vec<Bytes>) -> Proposal {
        Proposal::new(
            &self.identity,
            &self.channel,
            tx::invocation(&self.chaincode, function, args),
        )
    }

    /// Runs `function` on the gateway's peer without ordering anything; its response
    /// payload.
    pub async fn evaluate(
        &mut self,
        function: &str,
        args: Vec<Bytes>,
    ) -> Result<Bytes, GatewayError> {
        let proposal = self.proposal(function, args);
        let request = signed_proposal(&self.identity, &proposal, ordo_proto::now_ms());
        let resp = self
            .client
            .evaluate(request)
            .await
            .map_err(refused("Evaluate"))?
            .into_inner();
        let result = resp.result.unwrap_or_default();
        if !(200..400).contains(&result.status) {
            return Err(GatewayError::Refused {
                step: "Evaluate",
                code: tonic::Code::Aborted,
                message: format!(
                    "chaincode answered status {}: {}",
                    result.status, result.message
                ),
            });
        }
        Ok(result.payload)
    }

    /// Endorses, signs, submits and waits for the commit of `function(args)`.
    pub async fn submit(
        &mut self,
        function: &str,
        args: Vec<Bytes>,
    ) -> Result<Submitted, GatewayError> {
        let proposal = self.proposal(function, args);
        let request = signed_proposal(&self.identity, &proposal, ordo_proto::now_ms());
        let endorsed = self
            .client
            .endorse(request)
            .await
            .map_err(refused("Endorse"))?
            .into_inner();
        let signature = self.identity.sign(&endorsed.payload);
        let transaction = tx::attach_signature(endorsed.payload, &signature);
        let orderer = self
            .client
            .submit(transaction)
            .await
            .map_err(refused("Submit"))?
            .into_inner()
            .orderer;
        let status = self.commit_status(proposal.tx_id()).await?;
        let code = TxValidationCode::try_from(status.code as i32)
            .unwrap_or(TxValidationCode::NotValidated);
        if code != TxValidationCode::Valid {
            return Err(GatewayError::NotValid {
                tx_id: proposal.tx_id().to_string(),
                code,
                block: status.block,
            });
        }
        Ok(Submitted {
            tx_id: proposal.tx_id().to_string(),
            result: endorsed.result.unwrap_or_default().payload,
            block: status.block,
            orderer,
        })
    }

    /// [`Contract::submit`], again with a fresh proposal while the failure is retryable
    /// (an MVCC conflict, an unavailable node), up to `attempts` times in all, with a
    /// short growing pause between tries.
    pub async fn submit_with_retry(
        &mut self,
        function: &str,
        args: Vec<Bytes>,
        attempts: u32,
    ) -> Result<Submitted, GatewayError> {
        let mut pause = Duration::from_millis(20);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.submit(function, args.clone()).await {
                Err(e) if e.is_retryable() && tries < attempts.max(1) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// The chaincode's events, from `checkpoint` on (from block 0 with a default one), as
    /// blocks commit; the stream never ends by itself.
    pub async fn events(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<tonic::Streaming<ChaincodeEventsResponse>, GatewayError> {
        let request = chaincode_events_request(
            &self.identity,
            &self.channel,
            &self.chaincode,
            checkpoint.block,
            &checkpoint.tx_id,
        );
        Ok(EventsClient::new(self.conn.clone())
            .chaincode_events(request)
            .await
            .map_err(refused("ChaincodeEvents"))?
            .into_inner())
    }

    /// Waits until `tx_id` is committed on the gateway's peer.
    pub async fn commit_status(
        &mut self,
        tx_id: &str,
    ) -> Result<CommitStatusResponse, GatewayError> {
        let request = commit_status_request(&self.identity, &self.channel, tx_id);
        Ok(self
            .client
            .commit_status(request)
            .await
            .map_err(refused("CommitStatus"))?
            .into_inner())
    }
}
