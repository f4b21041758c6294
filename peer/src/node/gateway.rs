//! The Gateway: what a chaincode application asks of its peer.
//!
//! - **Evaluate** runs a signed proposal here and answers the chaincode's response.
//! - **Endorse** simulates here, then asks the other orgs' peers (`[gateway] endorsers`)
//!   until the chaincode's endorsement policy is met; every endorsement must be over the
//!   very same response payload (same read/write set, response and event), or the
//!   endorsers disagree. It answers the transaction payload for the client to sign.
//! - **Submit** sends the signed transaction to the channel's orderers, one at a time
//!   with a per-orderer timeout, until one accepts it.
//! - **CommitStatus** waits until the transaction is committed on this peer.
//!
//! Every error names the node that failed and why. Admission control: at most
//! `max_concurrent` requests at once; beyond that RESOURCE_EXHAUSTED.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::Semaphore;
use tonic::Status;

use ordo_proto::cert::VerifiedCert;
use ordo_proto::crypto;
use ordo_proto::envelope;
use ordo_proto::pb::common::{Envelope, HeaderType, Status as Code};
use ordo_proto::pb::gateway::{
    CommitStatusRequest, CommitStatusResponse, EndorseResponse, EvaluateResponse, ProposalResponse,
    SubmitResponse,
};
use ordo_proto::pb::peer::{Endorsement, TxValidationCode};
use ordo_proto::policy;
use ordo_sdk::tx;

use super::admin::reader_request;
use super::endorser::{describe, CheckedProposal, PeerEndorser};

/// Gateway tunables (the peer config's `[gateway]` section).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Other peers to ask for endorsements (`host:port`).
    pub endorsers: Vec<String>,
    /// Per-peer wait for an endorsement.
    pub endorse_timeout: Duration,
    /// Per-orderer wait for Submit.
    pub submit_timeout: Duration,
    /// Longest CommitStatus wait.
    pub commit_timeout: Duration,
    /// Requests handled at once.
    pub max_concurrent: usize,
}

/// The Gateway handler.
pub struct PeerGateway {
    endorser: Arc<PeerEndorser>,
    settings: GatewaySettings,
    /// Orderer endpoints from the peer's configuration (the channel's consenters are
    /// used when empty).
    orderers: Vec<String>,
    admission: Semaphore,
    /// Cached connections to endorsers and orderers (no dial per call).
    pool: Arc<ordo_node::ClientPool>,
}

impl PeerGateway {
    /// A gateway over this peer's endorser.
    pub fn new(
        endorser: Arc<PeerEndorser>,
        settings: GatewaySettings,
        orderers: Vec<String>,
        pool: Arc<ordo_node::ClientPool>,
    ) -> Self {
        Self {
            admission: Semaphore::new(settings.max_concurrent.max(1)),
            endorser,
            settings,
            orderers,
            pool,
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

    /// Gateway.Endorse.
    pub async fn endorse(&self, request: &Envelope) -> Result<EndorseResponse, Status> {
        let _permit = self.admit()?;
        let checked = self.endorser.check(request)?;
        let outcome = self.endorser.simulate(&checked).await?;
        let local = self.endorser.respond(&checked, outcome);
        let result = local.response.clone().unwrap_or_default();
        let Some(own) = local.endorsement.clone() else {
            return Err(Status::aborted(format!(
                "chaincode {:?} refused on this peer: {}",
                checked.definition.name,
                describe(&result)
            )));
        };
        let mut collected = Collected::default();
        self.accept(
            &checked,
            &local.response_payload,
            own,
            "this peer",
            &mut collected,
        )?;
        let mut failures: Vec<String> = Vec::new();
        for addr in &self.settings.endorsers {
            if self.satisfied(&checked, &collected) {
                break;
            }
            match self.remote(addr, request).await {
                Ok(resp) => {
                    if resp.response_payload != local.response_payload {
                        failures.push(format!(
                            "{addr}: its simulation differs from this peer's ({}); the state may be changing — retry",
                            resp.response
                                .as_ref()
                                .map(describe)
                                .unwrap_or_else(|| "no response".into())
                        ));
                        continue;
                    }
                    match resp.endorsement {
                        Some(e) => {
                            if let Err(why) = self.accept(
                                &checked,
                                &resp.response_payload,
                                e,
                                addr,
                                &mut collected,
                            ) {
                                failures.push(format!("{addr}: {}", why.message()));
                            }
                        }
                        None => failures.push(format!("{addr}: returned no endorsement")),
                    }
                }
                Err(e) => failures.push(format!("{addr}: {}", e.message())),
            }
        }
        if let Some(missing) = self.unmet(&checked, &collected) {
            return Err(Status::unavailable(format!(
                "endorsement policy of chaincode {:?} not satisfied: endorsed by {} ({missing}); {}",
                checked.definition.name,
                if collected.orgs.is_empty() {
                    "nobody".to_string()
                } else {
                    collected.orgs.join(", ")
                },
                if failures.is_empty() {
                    "no other endorsing peers are configured ([gateway] endorsers)".to_string()
                } else {
                    format!("failures: {}", failures.join("; "))
                }
            )));
        }
        let payload = tx::transaction_payload(
            &checked.proposal,
            local.response_payload,
            collected.endorsements,
            checked.timestamp_ms,
        );
        Ok(EndorseResponse {
            payload,
            result: Some(result),
            endorsing_orgs: collected.orgs,
        })
    }

    /// Checks one endorsement (signature over the payload, a channel member's certificate,
    /// an org not yet counted) and keeps it.
    fn accept(
        &self,
        checked: &CheckedProposal,
        payload: &[u8],
        endorsement: Endorsement,
        from: &str,
        collected: &mut Collected,
    ) -> Result<(), Status> {
        let status = checked.channel.status();
        let msp = status
            .msp
            .as_ref()
            .ok_or_else(|| Status::internal("the channel configuration has no usable MSP"))?;
        let cert = msp
            .verify(&endorsement.endorser, checked.timestamp_ms / 1000)
            .map_err(|e| Status::permission_denied(format!("endorser certificate: {e}")))?;
        crypto::verify(&cert.public_key, payload, &endorsement.signature).map_err(|_| {
            Status::permission_denied(format!("the endorsement of {from} does not verify"))
        })?;
        let org = cert.org.to_string();
        if collected.orgs.contains(&org) {
            return Ok(());
        }
        collected.orgs.push(org);
        collected.certs.push(cert);
        collected.endorsements.push(endorsement);
        Ok(())
    }

    fn satisfied(&self, checked: &CheckedProposal, collected: &Collected) -> bool {
        self.unmet(checked, collected).is_none()
    }

    /// What the endorsement policy still lacks, if anything.
    fn unmet(&self, checked: &CheckedProposal, collected: &Collected) -> Option<String> {
        let status = checked.channel.status();
        let org_names: Vec<String> = status.config.orgs.iter().map(|o| o.name.clone()).collect();
        match &checked.definition.endorsement_policy {
            Some(p) => policy::evaluate(p, &collected.certs, &org_names)
                .err()
                .map(|e| e.to_string()),
            None => Some("the chaincode has no endorsement policy".into()),
        }
    }

    async fn remote(&self, addr: &str, request: &Envelope) -> Result<ProposalResponse, Status> {
        let call = async {
            let ch = self
                .pool
                .get(addr)
                .map_err(|e| Status::unavailable(format!("cannot connect: {e}")))?;
            let mut client = ordo_proto::pb::gateway::endorser_client::EndorserClient::new(ch);
            client
                .process_proposal(request.clone())
                .await
                .map(tonic::Response::into_inner)
        };
        tokio::time::timeout(self.settings.endorse_timeout, call)
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no answer within {:?}",
                    self.settings.endorse_timeout
                ))
            })?
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
                broadcast_one(&self.pool, addr, request),
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
        let _permit = self.admit()?;
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

#[derive(Default)]
struct Collected {
    orgs: Vec<String>,
    certs: Vec<VerifiedCert>,
    endorsements: Vec<Endorsement>,
}

/// Why an orderer did not take a transaction.
enum Refused {
    /// The transaction itself was refused: every orderer would say the same.
    Final(Status),
    /// This orderer could not take it now: try the next.
    TryNext(String),
}

async fn broadcast_one(
    pool: &ordo_node::ClientPool,
    addr: &str,
    env: &Envelope,
) -> Result<(), Refused> {
    use tokio_stream::StreamExt;
    let ch = pool
        .get(addr)
        .map_err(|e| Refused::TryNext(format!("cannot connect: {e}")))?;
    let mut client = ordo_sdk::orderer::broadcast_client(ch);
    let mut responses = client
        .broadcast(tokio_stream::iter([env.clone()]))
        .await
        .map_err(|e| Refused::TryNext(e.message().to_string()))?
        .into_inner();
    let resp = match responses.next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(Refused::TryNext(e.message().to_string())),
        None => {
            return Err(Refused::TryNext(
                "the stream ended without an answer".into(),
            ))
        }
    };
    let why = format!("orderer {addr}: {}", resp.info);
    match Code::try_from(resp.status) {
        Ok(Code::Success) => Ok(()),
        Ok(Code::ServiceUnavailable | Code::InternalServerError) => {
            Err(Refused::TryNext(resp.info))
        }
        Ok(Code::BadRequest | Code::RequestEntityTooLarge) => {
            Err(Refused::Final(Status::invalid_argument(why)))
        }
        Ok(Code::Forbidden) => Err(Refused::Final(Status::permission_denied(why))),
        Ok(Code::NotFound) => Err(Refused::Final(Status::not_found(why))),
        Ok(Code::Conflict) => Err(Refused::Final(Status::already_exists(why))),
        _ => Err(Refused::TryNext(resp.info)),
    }
}
