//! The Endorser service: checks a signed proposal, runs the chaincode as a simulation
//! over this peer's committed state, and signs the outcome.
//!
//! Checks, in order, each with its own gRPC status: the envelope unpacks and is a
//! PROPOSAL (INVALID_ARGUMENT); the channel is served here (NOT_FOUND); the proposal's
//! time is within [`MAX_PROPOSAL_CLOCK_SKEW_SECS`] of this peer's clock and its tx id is
//! the one its nonce and creator give (INVALID_ARGUMENT); the creator is a channel member
//! whose signature verifies and whom the Writers policy admits (PERMISSION_DENIED); the
//! transaction is not committed already (ALREADY_EXISTS); the arguments fit
//! [`MAX_ARGS_BYTES`] (INVALID_ARGUMENT); the chaincode is defined on the channel
//! (NOT_FOUND) and runnable here (FAILED_PRECONDITION): a built-in, or a chaincode
//! server (`external:<host:port>`, see [`crate::chaincode::external`]).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tonic::Status;

use ordo_proto::authz::authorize_by_policy;
use ordo_proto::cert::VerifiedCert;
use ordo_proto::envelope;
use ordo_proto::hash;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{ChaincodeDefinition, Envelope, HeaderType};
use ordo_proto::pb::gateway::ProposalResponse;
use ordo_proto::pb::peer::{ChaincodeResponse, TxRwSet};
use ordo_proto::replay::check_freshness;
use ordo_sdk::chaincode::{builtin, Chaincode};
use ordo_sdk::tx::{self, Proposal};

use super::channels::{PeerChannel, PeerChannels};
use crate::chaincode::external::ExternalChaincode;
use crate::chaincode::{simulate, Limits, Outcome};

/// How far a proposal's creation time may be from the peer's clock.
///
/// Wider than the 300 s window of other signed requests
/// ([`ordo_proto::replay::DEFAULT_FRESHNESS_WINDOW_MS`]) on purpose: the proposal's time
/// becomes its transaction's, which the orderer accepts up to
/// `ordo_consensus::filters::MAX_TX_CLOCK_SKEW_SECS` (600 s) away, so a proposal is judged
/// as its transaction will be — and refused, as there, as an invalid argument. Evaluate
/// shares this check, so a captured Evaluate request is useless after 600 s.
pub const MAX_PROPOSAL_CLOCK_SKEW_SECS: u64 = 600;
/// Largest total size of a proposal's arguments.
pub const MAX_ARGS_BYTES: usize = 1024 * 1024;

/// A proposal that passed every check, ready to simulate.
pub struct CheckedProposal {
    /// The channel.
    pub channel: Arc<PeerChannel>,
    /// The proposal (tx id, hash, invocation).
    pub proposal: Proposal,
    /// The chaincode's definition on the channel.
    pub definition: ChaincodeDefinition,
    /// The chaincode to run.
    pub chaincode: Arc<dyn Chaincode>,
    /// The creator, verified.
    pub creator: VerifiedCert,
    /// The proposal's creation time (the transaction keeps it).
    pub timestamp_ms: u64,
}

/// The endorsing side of a peer.
pub struct PeerEndorser {
    channels: Arc<PeerChannels>,
    identity: Identity,
    limits: Limits,
    bindings: RuntimeBindings,
}

impl PeerEndorser {
    /// An endorser signing with `identity`, running chaincodes as `bindings` say.
    pub fn new(
        channels: Arc<PeerChannels>,
        identity: Identity,
        limits: Limits,
        bindings: RuntimeBindings,
    ) -> Self {
        Self {
            channels,
            identity,
            limits,
            bindings,
        }
    }

    /// This peer's identity (the gateway checks its own endorsement with it).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The channels served here.
    pub fn channels(&self) -> &Arc<PeerChannels> {
        &self.channels
    }

    /// Every check of the module docs.
    pub fn check(&self, request: &Envelope) -> Result<CheckedProposal, Status> {
        let unpacked = envelope::unpack(request)
            .map_err(|e| Status::invalid_argument(format!("proposal: {e}")))?;
        if unpacked.header_type != HeaderType::Proposal {
            return Err(Status::invalid_argument(format!(
                "header type {} is not a PROPOSAL",
                unpacked.header_type.as_str_name()
            )));
        }
        let header = &unpacked.header;
        let channel = self.channels.get(&header.channel_id).ok_or_else(|| {
            Status::not_found(format!(
                "channel {:?} is not served by this peer",
                header.channel_id
            ))
        })?;
        let now_ms = ordo_proto::now_ms();
        let now_secs = now_ms / 1000;
        check_freshness(
            header.timestamp_ms,
            now_ms,
            MAX_PROPOSAL_CLOCK_SKEW_SECS * 1000,
        )
        .map_err(|e| Status::invalid_argument(format!("proposal time: {e}")))?;
        if header.tx_id != hash::tx_id(&header.nonce, &header.creator) {
            return Err(Status::invalid_argument(
                "tx id is not hex(SHA-256(nonce || creator))",
            ));
        }
        let status = channel.status();
        let msp = status
            .msp
            .as_ref()
            .ok_or_else(|| Status::internal("the channel configuration has no usable MSP"))?;
        let creator = authorize_by_policy(
            msp,
            status.config.writers.as_ref(),
            "Writers",
            request,
            &header.creator,
            now_secs,
        )
        .map_err(|e| Status::permission_denied(e.0))?;
        let ledger = channel.ledger();
        // As the validator judges it (check 8): an id signed below the expiry floor no
        // longer counts.
        if ledger
            .tx_location(&header.tx_id)
            .map_err(|e| Status::internal(e.to_string()))?
            .is_some_and(|l| l.timestamp_ms.unwrap_or(u64::MAX) >= ledger.expiry_floor_ms())
        {
            return Err(Status::already_exists(format!(
                "transaction {} is already committed",
                header.tx_id
            )));
        }
        let proposal = Proposal::from_parts(
            &header.channel_id,
            header.creator.clone(),
            header.nonce.clone(),
            unpacked.data.clone(),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let args_bytes: usize = proposal.invocation().args.iter().map(Bytes::len).sum();
        if args_bytes > MAX_ARGS_BYTES {
            return Err(Status::invalid_argument(format!(
                "arguments of {args_bytes} bytes exceed the limit of {MAX_ARGS_BYTES} bytes"
            )));
        }
        let name = &proposal.invocation().chaincode;
        let definition = status
            .config
            .chaincodes
            .iter()
            .find(|c| &c.name == name && !c.retired)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!(
                    "chaincode {name:?} is not defined on channel {:?}{}",
                    header.channel_id,
                    if status.config.chaincodes.iter().any(|c| &c.name == name) {
                        " (it was retired)"
                    } else {
                        ""
                    }
                ))
            })?;
        let chaincode = runnable(
            &definition,
            self.bindings.runtime(&definition),
            &header.channel_id,
            self.limits,
            &self.channels.settings().pool,
        )?;
        Ok(CheckedProposal {
            channel,
            proposal,
            definition,
            chaincode,
            creator,
            timestamp_ms: header.timestamp_ms,
        })
    }

    /// Simulates a checked proposal on this peer's committed state (on a blocking
    /// thread: chaincode code and state reads block).
    pub async fn simulate(&self, p: &CheckedProposal) -> Result<Outcome, Status> {
        let channel = p.channel.clone();
        let chaincode = p.chaincode.clone();
        let namespace = p.definition.name.clone();
        let tx_id = p.proposal.tx_id().to_string();
        let invocation = p.proposal.invocation().clone();
        let limits = self.limits;
        tokio::task::spawn_blocking(move || {
            simulate(
                chaincode.as_ref(),
                channel.ledger(),
                &namespace,
                &tx_id,
                &invocation.function,
                &invocation.args,
                &invocation.transient,
                limits,
            )
        })
        .await
        .map_err(|e| Status::internal(format!("the chaincode panicked: {e}")))
    }

    /// The signed outcome of a checked, simulated proposal: endorsed when the chaincode
    /// succeeded.
    pub fn respond(&self, p: &CheckedProposal, outcome: Outcome) -> ProposalResponse {
        let ok = outcome.is_ok();
        let response = outcome.response.clone();
        let payload = tx::response_payload(
            &p.proposal,
            tx::Simulation {
                chaincode_version: p.definition.version.clone(),
                definition_sequence: ordo_proto::config_change::effective_sequence(&p.definition),
                results: rwset(outcome.clone()),
                response: outcome.response,
                event: outcome.event,
            },
        );
        ProposalResponse {
            endorsement: ok.then(|| tx::endorse(&self.identity, &payload)),
            response_payload: payload,
            response: Some(response),
        }
    }

    /// Endorser.ProcessProposal.
    pub async fn process(&self, request: &Envelope) -> Result<ProposalResponse, Status> {
        let checked = self.check(request)?;
        let outcome = self.simulate(&checked).await?;
        Ok(self.respond(&checked, outcome))
    }
}

/// This peer's own runtimes for chaincodes (its config's `[chaincodes]`): each org binds a
/// chaincode to a built-in or to its own chaincode server without a channel change. A
/// chaincode it does not bind runs on its definition's runtime.
#[derive(Debug, Clone, Default)]
pub struct RuntimeBindings(HashMap<String, String>);

impl RuntimeBindings {
    /// Bindings by chaincode name (each runtime checked by the config loader).
    pub fn new(bindings: HashMap<String, String>) -> Self {
        Self(bindings)
    }

    /// The runtime this peer runs `definition` on: its binding, else the definition's
    /// (empty: none).
    pub fn runtime<'a>(&'a self, definition: &'a ChaincodeDefinition) -> &'a str {
        self.0
            .get(&definition.name)
            .map_or(definition.runtime.as_str(), String::as_str)
    }

    /// Whether this peer can run `definition`: a built-in it has, or a chaincode server
    /// (reached when called); never a retired one.
    pub fn runs(&self, definition: &ChaincodeDefinition) -> bool {
        if definition.retired {
            return false;
        }
        match self.runtime(definition).split_once(':') {
            Some(("builtin", name)) => builtin::by_name(name).is_some(),
            Some(("external", _)) => true,
            _ => false,
        }
    }
}

/// The chaincode a definition names on `runtime`, if this peer can run it. Chaincode
/// servers are reached through `pool`: the peer's transport (mutual TLS when the peer runs TLS) and one
/// kept connection per server.
fn runnable(
    definition: &ChaincodeDefinition,
    runtime: &str,
    channel_id: &str,
    limits: Limits,
    pool: &Arc<ordo_node::ClientPool>,
) -> Result<Arc<dyn Chaincode>, Status> {
    if runtime.is_empty() {
        return Err(Status::failed_precondition(format!(
            "chaincode {:?} has no runtime on this peer: its definition names none, and the \
             peer's [chaincodes] section does not bind it",
            definition.name
        )));
    }
    if let Some(name) = runtime.strip_prefix("builtin:") {
        return builtin::by_name(name).ok_or_else(|| {
            Status::failed_precondition(format!(
                "chaincode {:?} needs the built-in {name:?}, which this peer does not have (built-ins: {})",
                definition.name,
                builtin::NAMES.join(", ")
            ))
        });
    }
    if let Some(addr) = runtime.strip_prefix("external:") {
        return Ok(Arc::new(ExternalChaincode::new(
            addr,
            channel_id,
            tokio::runtime::Handle::current(),
            limits.time,
            pool.clone(),
        )));
    }
    Err(Status::failed_precondition(format!(
        "chaincode {:?} has an unknown runtime {runtime:?}",
        definition.name
    )))
}

/// The transaction's read/write set: the chaincode's namespace, when it read or wrote.
fn rwset(outcome: Outcome) -> TxRwSet {
    let ns = outcome.rwset;
    TxRwSet {
        ns_rwsets: if ns.reads.is_empty() && ns.writes.is_empty() && ns.range_reads.is_empty() {
            Vec::new()
        } else {
            vec![ns]
        },
    }
}

/// A chaincode response as the gateway reports a failure.
pub fn describe(response: &ChaincodeResponse) -> String {
    format!("status {}: {}", response.status, response.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, runtime: &str) -> ChaincodeDefinition {
        ChaincodeDefinition {
            name: name.into(),
            version: "1".into(),
            runtime: runtime.into(),
            sequence: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_peers_own_binding_wins_over_the_definitions_runtime() {
        let bindings = RuntimeBindings::new(HashMap::from([
            (
                "bank".to_string(),
                "external:cc.banka.example:9999".to_string(),
            ),
            ("notes".to_string(), "builtin:kv".to_string()),
        ]));
        let bank = def("bank", "builtin:bank");
        assert_eq!(bindings.runtime(&bank), "external:cc.banka.example:9999");
        assert!(bindings.runs(&bank));
        // Unbound: the definition's runtime; none at all: not runnable here.
        assert_eq!(bindings.runtime(&def("kv", "builtin:kv")), "builtin:kv");
        assert!(bindings.runs(&def("kv", "builtin:kv")));
        assert!(!bindings.runs(&def("orphan", "")), "no runtime anywhere");
        assert!(bindings.runs(&def("notes", "")), "bound by this peer alone");
        assert!(
            !bindings.runs(&def("x", "builtin:nope")),
            "no such built-in"
        );
        let mut retired = def("notes", "");
        retired.retired = true;
        assert!(
            !bindings.runs(&retired),
            "a retired chaincode is run nowhere"
        );
    }
}
