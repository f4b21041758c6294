//! One chaincode on one channel through one gateway: evaluate, submit (at once, in two
//! steps, or with retries), events.

use bytes::Bytes;
use tonic::transport::Channel;

use ordo_proto::pb::gateway::events_client::EventsClient;
use ordo_proto::pb::gateway::gateway_client::GatewayClient;
use ordo_proto::pb::gateway::EndorseRequest;
use ordo_proto::pb::peer::{ChaincodeProposal, TxValidationCode};

use super::error::from_status;
use super::{
    chaincode_events_request, commit_status_request, signed_proposal, ChaincodeEvents, Gateway,
    GatewayError, RetryPolicy, StartAt,
};
use crate::chaincode::TransientMap;
use crate::tx::{self, Proposal};

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
    /// Proposals made to get here (1 unless retried after conflicts).
    pub attempts: u32,
}

/// Where a transaction ended up: its validation code and block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// The validator's verdict.
    pub code: TxValidationCode,
    /// The block that holds it.
    pub block: u64,
}

impl Commit {
    /// Whether it committed as VALID (its writes applied).
    pub fn is_valid(&self) -> bool {
        self.code == TxValidationCode::Valid
    }
}

/// One chaincode on one channel, through one peer's gateway, as one identity.
///
/// `Clone + Send + Sync`, and every method takes `&self`: share it among tasks (clones
/// share the gateway's one connection).
#[derive(Clone)]
pub struct Contract {
    gateway: Gateway,
    client: GatewayClient<Channel>,
    channel: String,
    chaincode: String,
    retry: RetryPolicy,
}

impl Contract {
    pub(super) fn new(gateway: Gateway, channel: &str, chaincode: &str) -> Self {
        Self {
            client: GatewayClient::new(gateway.conn.clone()),
            gateway,
            channel: channel.to_string(),
            chaincode: chaincode.to_string(),
            retry: RetryPolicy::default(),
        }
    }

    /// Connects to the gateway at `addr` and picks `chaincode` on `channel`: shorthand
    /// for [`Gateway::connect`] then [`Gateway::contract`].
    pub async fn connect(
        addr: &str,
        transport: &crate::transport::Transport,
        identity: ordo_proto::identity::Identity,
        channel: &str,
        chaincode: &str,
    ) -> Result<Self, GatewayError> {
        Ok(Gateway::connect(addr, transport, identity)
            .await?
            .contract(channel, chaincode))
    }

    /// A clone of this contract (same connection) with another retry policy for
    /// [`Contract::submit_with_retry`].
    pub fn with_retry_policy(&self, policy: RetryPolicy) -> Self {
        Self {
            retry: policy,
            ..self.clone()
        }
    }

    /// The retry policy [`Contract::submit_with_retry`] follows.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The gateway this contract goes through.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The chaincode.
    pub fn chaincode(&self) -> &str {
        &self.chaincode
    }

    /// A call of `function`, to give arguments, transient data or endorsing orgs before
    /// evaluating or submitting it.
    pub fn call(&self, function: &str) -> Call<'_> {
        Call {
            contract: self,
            invocation: tx::invocation(&self.chaincode, function, Vec::new()),
            endorsing_orgs: Vec::new(),
        }
    }

    /// Runs `function(args)` on the gateway's peer without ordering anything; the
    /// chaincode's response payload. A refusal is [`GatewayError::Chaincode`].
    pub async fn evaluate(
        &self,
        function: &str,
        args: impl IntoIterator<Item = impl AsRef<[u8]>>,
    ) -> Result<Bytes, GatewayError> {
        self.call(function).args(args).evaluate().await
    }

    /// Endorses, signs, submits and waits for the commit of `function(args)`. A
    /// transaction that commits but not as VALID is [`GatewayError::NotValid`].
    pub async fn submit(
        &self,
        function: &str,
        args: impl IntoIterator<Item = impl AsRef<[u8]>>,
    ) -> Result<Submitted, GatewayError> {
        self.call(function).args(args).submit().await
    }

    /// [`Contract::submit`] following the contract's [`RetryPolicy`]: while the failure
    /// is retryable (an MVCC conflict, an unavailable or overloaded node) a fresh
    /// proposal is made after a jittered, growing wait. [`Submitted::attempts`] (or
    /// [`GatewayError::attempts`]) says how many were made.
    pub async fn submit_with_retry(
        &self,
        function: &str,
        args: impl IntoIterator<Item = impl AsRef<[u8]>>,
    ) -> Result<Submitted, GatewayError> {
        self.call(function).args(args).submit_with_retry().await
    }

    /// The chaincode's events, one at a time, from `start` on.
    pub async fn events(&self, start: StartAt) -> Result<ChaincodeEvents, GatewayError> {
        let (start_block, after) = match start {
            StartAt::NextBlock => (self.gateway.height(&self.channel).await?, String::new()),
            StartAt::Block(b) => (b, String::new()),
            StartAt::After(c) => (c.block, c.tx_id),
        };
        let request = chaincode_events_request(
            self.gateway.identity(),
            &self.channel,
            &self.chaincode,
            start_block,
            &after,
        );
        let stream = EventsClient::new(self.gateway.conn.clone())
            .chaincode_events(request)
            .await
            .map_err(from_status("ChaincodeEvents"))?
            .into_inner();
        Ok(ChaincodeEvents::new(stream))
    }

    /// Waits until `tx_id` is committed on the gateway's peer; its code and block.
    pub async fn commit_status(&self, tx_id: &str) -> Result<Commit, GatewayError> {
        let request = commit_status_request(self.gateway.identity(), &self.channel, tx_id);
        let status = self
            .client
            .clone()
            .commit_status(request)
            .await
            .map_err(from_status("CommitStatus"))?
            .into_inner();
        Ok(Commit {
            code: TxValidationCode::try_from(status.code as i32)
                .unwrap_or(TxValidationCode::NotValidated),
            block: status.block,
        })
    }
}

/// A call being prepared: arguments, transient data, endorsing orgs; then evaluate or
/// submit it.
#[derive(Clone)]
pub struct Call<'a> {
    contract: &'a Contract,
    invocation: ChaincodeProposal,
    endorsing_orgs: Vec<String>,
}

impl Call<'_> {
    /// Appends arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Self {
        self.invocation
            .args
            .extend(args.into_iter().map(|a| Bytes::copy_from_slice(a.as_ref())));
        self
    }

    /// Adds transient data: seen by the endorsers' chaincode
    /// ([`crate::chaincode::Context::transient`]), never recorded in the ledger.
    pub fn transient(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        self.invocation
            .transient
            .insert(key.to_string(), Bytes::copy_from_slice(value.as_ref()));
        self
    }

    /// Replaces the transient data.
    pub fn transient_map(mut self, map: TransientMap) -> Self {
        self.invocation.transient = map;
        self
    }

    /// Exactly these orgs endorse (the gateway's own among them), instead of the fewest
    /// the endorsement policy needs — to keep transient data from other orgs, say.
    pub fn endorsing_orgs<S: AsRef<str>>(mut self, orgs: impl IntoIterator<Item = S>) -> Self {
        self.endorsing_orgs = orgs.into_iter().map(|o| o.as_ref().to_string()).collect();
        self
    }

    fn proposal(&self) -> Proposal {
        Proposal::new(
            self.contract.gateway.identity(),
            &self.contract.channel,
            self.invocation.clone(),
        )
    }

    /// Runs the call on the gateway's peer without ordering anything; the chaincode's
    /// response payload.
    pub async fn evaluate(&self) -> Result<Bytes, GatewayError> {
        let c = self.contract;
        let request = signed_proposal(c.gateway.identity(), &self.proposal(), ordo_proto::now_ms());
        let resp = c
            .client
            .clone()
            .evaluate(request)
            .await
            .map_err(from_status("Evaluate"))?
            .into_inner();
        let result = resp.result.unwrap_or_default();
        if !(200..400).contains(&result.status) {
            return Err(GatewayError::Chaincode {
                step: "Evaluate",
                status: result.status,
                message: result.message,
                payload: result.payload,
                peer: String::new(),
            });
        }
        Ok(result.payload)
    }

    /// Endorses and signs the transaction without submitting it: the first of two steps
    /// ([`Endorsed::submit`] is the second), for a client that decides between them.
    pub async fn endorse(&self) -> Result<Endorsed, GatewayError> {
        let c = self.contract;
        let identity = c.gateway.identity();
        let proposal = self.proposal();
        let request = EndorseRequest {
            proposal: Some(signed_proposal(identity, &proposal, ordo_proto::now_ms())),
            endorsing_orgs: self.endorsing_orgs.clone(),
        };
        let endorsed = c
            .client
            .clone()
            .endorse(request)
            .await
            .map_err(from_status("Endorse"))?
            .into_inner();
        let signature = identity.sign(&endorsed.payload);
        Ok(Endorsed {
            contract: c.clone(),
            tx_id: proposal.tx_id().to_string(),
            transaction: tx::attach_signature(endorsed.payload, &signature),
            result: endorsed.result.unwrap_or_default().payload,
            endorsing_orgs: endorsed.endorsing_orgs,
        })
    }

    /// Endorses, signs and hands the transaction to an orderer; returns once an orderer
    /// took it, with the chaincode's result. [`Pending::committed`] waits for the commit.
    pub async fn submit_async(&self) -> Result<Pending, GatewayError> {
        self.endorse().await?.submit().await
    }

    /// Endorses, signs, submits and waits for the commit.
    pub async fn submit(&self) -> Result<Submitted, GatewayError> {
        self.submit_async().await?.committed().await
    }

    /// [`Call::submit`] again with a fresh proposal while the failure is retryable,
    /// following the contract's [`RetryPolicy`].
    pub async fn submit_with_retry(&self) -> Result<Submitted, GatewayError> {
        let policy = self.contract.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.submit().await;
            match outcome {
                Ok(mut done) => {
                    done.attempts = attempt;
                    return Ok(done);
                }
                Err(e) if e.is_retryable() && attempt < policy.attempts() => {
                    let wait = policy.backoff(attempt, &mut rand::thread_rng());
                    tracing::debug!(attempt, ?wait, error = %e, "retrying a submission");
                    tokio::time::sleep(wait).await;
                }
                Err(e) if attempt == 1 => return Err(e),
                Err(e) => {
                    return Err(GatewayError::Retried {
                        attempts: attempt,
                        last: Box::new(e),
                    })
                }
            }
        }
    }
}

/// An endorsed, signed transaction not submitted yet ([`Call::endorse`]).
pub struct Endorsed {
    contract: Contract,
    tx_id: String,
    transaction: ordo_proto::pb::common::Envelope,
    result: Bytes,
    endorsing_orgs: Vec<String>,
}

impl Endorsed {
    /// The transaction's id.
    pub fn tx_id(&self) -> &str {
        &self.tx_id
    }

    /// The chaincode's response payload (what the endorsers agreed on).
    pub fn result(&self) -> &Bytes {
        &self.result
    }

    /// The orgs whose peers endorsed it.
    pub fn endorsing_orgs(&self) -> &[String] {
        &self.endorsing_orgs
    }

    /// Hands the transaction to an orderer through the gateway; returns once one took it.
    /// Validation judges it against the channel as it is then: a transaction endorsed
    /// under a chaincode definition upgraded meanwhile commits as DEFINITION_SUPERSEDED.
    pub async fn submit(self) -> Result<Pending, GatewayError> {
        let orderer = self
            .contract
            .client
            .clone()
            .submit(self.transaction)
            .await
            .map_err(from_status("Submit"))?
            .into_inner()
            .orderer;
        Ok(Pending {
            contract: self.contract,
            tx_id: self.tx_id,
            result: self.result,
            endorsing_orgs: self.endorsing_orgs,
            orderer,
        })
    }
}

/// A transaction an orderer has taken, not known to be committed yet.
pub struct Pending {
    contract: Contract,
    tx_id: String,
    result: Bytes,
    endorsing_orgs: Vec<String>,
    orderer: String,
}

impl Pending {
    /// The transaction's id.
    pub fn tx_id(&self) -> &str {
        &self.tx_id
    }

    /// The chaincode's response payload (what the endorsers agreed on).
    pub fn result(&self) -> &Bytes {
        &self.result
    }

    /// The orgs whose peers endorsed it.
    pub fn endorsing_orgs(&self) -> &[String] {
        &self.endorsing_orgs
    }

    /// The orderer that took it.
    pub fn orderer(&self) -> &str {
        &self.orderer
    }

    /// Waits until it is committed on the gateway's peer; its code and block, VALID or
    /// not.
    pub async fn status(&self) -> Result<Commit, GatewayError> {
        self.contract.commit_status(&self.tx_id).await
    }

    /// Waits for the commit; the transaction if VALID, [`GatewayError::NotValid`] if not.
    pub async fn committed(self) -> Result<Submitted, GatewayError> {
        let commit = self.status().await?;
        if !commit.is_valid() {
            return Err(GatewayError::NotValid {
                tx_id: self.tx_id,
                code: commit.code,
                block: commit.block,
            });
        }
        Ok(Submitted {
            tx_id: self.tx_id,
            result: self.result,
            block: commit.block,
            orderer: self.orderer,
            attempts: 1,
        })
    }
}
