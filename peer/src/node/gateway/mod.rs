//! The Gateway: what a chaincode application asks of its peer.
//!
//! - **Evaluate** runs a signed proposal here and answers the chaincode's response.
//! - **Endorse** simulates here, then asks the other orgs' peers that run the chaincode
//!   (found by discovery, `super::discovery`, plus any `[gateway] endorsers`), in parallel
//!   and only as many as needed, reachable ones first, until the chaincode's endorsement
//!   policy is met (`endorse.rs`); every endorsement must be over the very same response payload
//!   (same read/write set, response and event), or the endorsers disagree. It answers the
//!   transaction payload for the client to sign. A client may choose the endorsing orgs
//!   (`EndorseRequest.endorsing_orgs`): then exactly those endorse, the gateway's own
//!   among them (INVALID_ARGUMENT otherwise), and FAILED_PRECONDITION when they all did
//!   and the policy still wants more. A chaincode's refusal is ABORTED with a
//!   `ChaincodeRefusal` (status, message, payload) in the status details.
//!
//!   Discovered endorsers come with their org, so a choice of orgs is asked of those orgs'
//!   peers only. A configured `[gateway] endorsers` entry's org is learned from its first
//!   endorsement: until then it may be asked even under a choice of orgs (its endorsement
//!   is then dropped), so transient data can reach it that way.
//! - **Submit** sends the signed transaction to the channel's orderers, one at a time
//!   with a per-orderer timeout, until one accepts it — over one kept Broadcast stream per
//!   orderer that every Submit shares (`submit.rs`).
//! - **CommitStatus** waits until the transaction is committed on this peer.
//!
//! Every error names the node that failed and why. Admission control: at most
//! `max_concurrent` Evaluate, Endorse and Submit requests at once and at most
//! `max_commit_waiters` CommitStatus waits; beyond either, RESOURCE_EXHAUSTED at once
//! rather than a timeout later.

mod endorse;
mod submit;

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::Semaphore;
use tonic::Status;

use ordo_proto::envelope;
use ordo_proto::pb::common::{Envelope, HeaderType};
use ordo_proto::pb::gateway::{
    CommitStatusRequest, CommitStatusResponse, EvaluateResponse, SubmitResponse,
};
use ordo_proto::pb::peer::TxValidationCode;

use super::admin::reader_request;
use super::endorser::PeerEndorser;
use endorse::EndorserDirectory;
pub use endorse::{MISMATCH_RETRIES, MISMATCH_WAIT, UNHEALTHY_FOR};
pub use submit::LANE_IN_FLIGHT;
use submit::{OrdererLanes, Refused};

/// Gateway tunables (the peer config's `[gateway]` section).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Peers to ask for endorsements besides the discovered ones (`host:port`).
    pub endorsers: Vec<String>,
    /// Per-peer wait for an endorsement.
    pub endorse_timeout: Duration,
    /// Per-orderer wait for Submit.
    pub submit_timeout: Duration,
    /// Longest CommitStatus wait.
    pub commit_timeout: Duration,
    /// Evaluate, Endorse and Submit requests handled at once.
    pub max_concurrent: usize,
    /// CommitStatus calls waiting at once.
    pub max_commit_waiters: usize,
}

/// The Gateway handler.
pub struct PeerGateway {
    endorser: Arc<PeerEndorser>,
    settings: GatewaySettings,
    /// Orderer endpoints from the peer's configuration (the channel's consenters are
    /// used when empty).
    orderers: Vec<String>,
    admission: Semaphore,
    /// Admission of CommitStatus waiters.
    waiters: Semaphore,
    /// Cached connections to endorsers and orderers (no dial per call).
    pool: Arc<ordo_node::ClientPool>,
    /// The endorsers' orgs as learned, and where the next plan starts.
    directory: EndorserDirectory,
    /// One kept Broadcast stream per orderer.
    lanes: OrdererLanes,
    /// The channels' peers as announced.
    discovery: Arc<super::discovery::Discovery>,
}

impl PeerGateway {
    /// A gateway over this peer's endorser.
    pub fn new(
        endorser: Arc<PeerEndorser>,
        settings: GatewaySettings,
        orderers: Vec<String>,
        pool: Arc<ordo_node::ClientPool>,
        discovery: Arc<super::discovery::Discovery>,
    ) -> Self {
        Self {
            admission: Semaphore::new(settings.max_concurrent.max(1)),
            waiters: Semaphore::new(settings.max_commit_waiters.max(1)),
            endorser,
            settings,
            orderers,
            directory: EndorserDirectory::default(),
            lanes: OrdererLanes::new(pool.clone()),
            pool,
            discovery,
        }
    }

    fn admit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Status> {
        self.admission.try_acquire().map_err(|_| {
            Status::resource_exhausted(format!(
                "the gateway is handling {} requests; retry shortly",
                self.settings.max_concurrent
            ))
        })
    }

    /// Gateway.Evaluate.
    pub async fn evaluate(&self, request: &Envelope) -> Result<EvaluateResponse, Status> {
        let _permit = self.admit()?;
        let checked = self.endorser.check(request)?;
        let outcome = self.endorser.simulate(&checked).await?;
        Ok(EvaluateResponse {
            result: Some(outcome.response),
        })
    }

    /// Gateway.Submit.
    pub async fn submit(&self, request: &Envelope) -> Result<SubmitResponse, Status> {
        let _permit = self.admit()?;
        let unpacked = envelope::unpack(request)
            .map_err(|e| Status::invalid_argument(format!("transaction: {e}")))?;
        if unpacked.header_type != HeaderType::EndorserTransaction {
            return Err(Status::invalid_argument(format!(
                "header type {} is not an ENDORSER_TRANSACTION",
                unpacked.header_type.as_str_name()
            )));
        }
        let channel = self
            .endorser
            .channels()
            .get(&unpacked.header.channel_id)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "channel {:?} is not served by this peer",
                    unpacked.header.channel_id
                ))
            })?;
        let orderers = if self.orderers.is_empty() {
            channel
                .status()
                .config
                .orderer
                .as_ref()
                .map(|o| o.consenters.iter().map(|c| c.endpoint.clone()).collect())
                .unwrap_or_default()
        } else {
            self.orderers.clone()
        };
        let mut failures = Vec::new();
        for addr in &orderers {
            match tokio::time::timeout(
                self.settings.submit_timeout,
                self.lanes.broadcast(addr, request, &unpacked.header.tx_id),
            )
            .await
            {
                Ok(Ok(())) => {
                    return Ok(SubmitResponse {
                        orderer: addr.clone(),
                    })
                }
                Ok(Err(Refused::Final(status))) => return Err(status),
                Ok(Err(Refused::TryNext(why))) => failures.push(format!("{addr}: {why}")),
                Err(_) => failures.push(format!(
                    "{addr}: no answer within {:?}",
                    self.settings.submit_timeout
                )),
            }
        }
        Err(Status::unavailable(format!(
            "no orderer took the transaction: {}",
            if failures.is_empty() {
                "the channel names no orderers".to_string()
            } else {
                failures.join("; ")
            }
        )))
    }

    /// Gateway.CommitStatus.
    pub async fn commit_status(&self, request: &Envelope) -> Result<CommitStatusResponse, Status> {
        let _permit = self.waiters.try_acquire().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} CommitStatus calls are waiting already; retry shortly",
                self.settings.max_commit_waiters
            ))
        })?;
        let (channel, data) = reader_request(self.endorser.channels(), request)?;
        let req = CommitStatusRequest::decode(data)
            .map_err(|e| Status::invalid_argument(format!("commit status request: {e}")))?;
        let deadline = tokio::time::Instant::now() + self.settings.commit_timeout;
        loop {
            let height = channel.ledger().height();
            if let Some(loc) = channel
                .ledger()
                .tx_location(&req.tx_id)
                .map_err(|e| Status::internal(e.to_string()))?
            {
                let code = loc.code.unwrap_or(TxValidationCode::NotValidated as u8);
                return Ok(CommitStatusResponse {
                    code: u32::from(code),
                    code_name: TxValidationCode::try_from(i32::from(code))
                        .map(|c| c.as_str_name().to_string())
                        .unwrap_or_default(),
                    block: loc.block,
                });
            }
            let wait = channel.ledger().wait_for_height(height + 1);
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                return Err(Status::deadline_exceeded(format!(
                    "transaction {} not committed on this peer within {:?}",
                    req.tx_id, self.settings.commit_timeout
                )));
            }
        }
    }
}
