//! Building endorser transactions, one step at a time.
//!
//! The flow, each step a separate function so that the steps can run on different
//! machines (the client proposes, endorsing peers sign, the client assembles and signs,
//! possibly offline):
//!
//! 1. [`Proposal::new`] (or [`Proposal::with_nonce`]): the client's invocation on a
//!    channel, with its nonce, tx id (`hex(SHA-256(nonce ‖ creator))`) and proposal hash.
//! 2. [`response_payload`]: each endorser turns its simulation ([`Simulation`]: read/write
//!    set, chaincode response, event) into the encoded `ProposalResponsePayload` that it
//!    signs. Endorsers that simulated the same thing produce the same bytes; use
//!    [`RwSetBuilder`] so the read/write set is in a canonical order.
//! 3. [`endorse`]: an endorser's signature over those exact bytes.
//! 4. [`assemble`]: the signed `ENDORSER_TRANSACTION` envelope, signed by the proposal's
//!    creator with the proposal's nonce, so the envelope's tx id is the proposal's. For a
//!    creator key held elsewhere, [`transaction_payload`] gives the bytes to sign and
//!    [`attach_signature`] makes the envelope.
//!
//! [`endorse_known`] does steps 2 to 4 at once when the read/write set is known without
//! running the chaincode (load generators, benchmarks, tests).
//!
//! The peer's validator checks exactly what is built here: see `ordo-peer`'s `validator`.

use std::collections::BTreeMap;

use bytes::Bytes;
use ordo_proto::envelope::{self, MAX_NONCE_LEN, NONCE_LEN};
use ordo_proto::hash::{self, Hash};
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Envelope, Header, HeaderType, Payload};
use ordo_proto::pb::peer::{
    ChaincodeEvent, ChaincodeProposal, ChaincodeResponse, Endorsement, EndorserTransaction, KvRead,
    KvWrite, NsRwSet, ProposalResponsePayload, RangeRead, TxRwSet, Version,
};
use prost::Message;
use thiserror::Error;

/// Why a transaction could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    /// The nonce is empty or longer than [`MAX_NONCE_LEN`] bytes.
    #[error("nonce of {0} bytes (1..={MAX_NONCE_LEN} allowed)")]
    BadNonce(usize),
    /// The identity signing the envelope is not the proposal's creator, so the envelope's
    /// tx id would not be the one the endorsers signed for.
    #[error("the envelope signer is not the proposal's creator")]
    CreatorMismatch,
    /// Bytes received from elsewhere do not decode.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which part.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
}

/// The invocation `chaincode.function(args)`.
pub fn invocation(chaincode: &str, function: &str, args: Vec<Bytes>) -> ChaincodeProposal {
    ChaincodeProposal {
        chaincode: chaincode.to_string(),
        function: function.to_string(),
        args,
        transient: Default::default(),
    }
}

/// The `ChaincodeProposal` field that holds transient data.
const TRANSIENT_FIELD: u32 = 4;

/// An encoded `ChaincodeProposal` without its transient data: every field-4 entry cut out
/// on the wire and the other bytes kept exactly (nothing is re-encoded, so every node
/// derives the same transaction bytes from the same signed proposal). Without transient
/// data the bytes come back as they are.
pub fn strip_transient(proposal_bytes: &Bytes) -> Result<Bytes, TxError> {
    let malformed = |reason: String| TxError::Malformed {
        what: "chaincode proposal",
        reason,
    };
    let mut rest: &[u8] = proposal_bytes;
    let mut kept: Vec<std::ops::Range<usize>> = Vec::new();
    let mut stripped = false;
    while !rest.is_empty() {
        let start = proposal_bytes.len() - rest.len();
        let (tag, wire_type) =
            prost::encoding::decode_key(&mut rest).map_err(|e| malformed(e.to_string()))?;
        prost::encoding::skip_field(
            wire_type,
            tag,
            &mut rest,
            prost::encoding::DecodeContext::default(),
        )
        .map_err(|e| malformed(e.to_string()))?;
        let end = proposal_bytes.len() - rest.len();
        if tag == TRANSIENT_FIELD {
            stripped = true;
        } else {
            kept.push(start..end);
        }
    }
    if !stripped {
        return Ok(proposal_bytes.clone());
    }
    let mut out = Vec::with_capacity(kept.iter().map(|r| r.len()).sum());
    for range in kept {
        out.extend_from_slice(&proposal_bytes[range]);
    }
    Ok(out.into())
}

/// A proposal: an invocation on a channel by a creator, with the nonce and tx id the
/// final envelope will carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    channel_id: String,
    creator: Bytes,
    nonce: Bytes,
    tx_id: String,
    invocation: ChaincodeProposal,
    signed_bytes: Bytes,
    proposal_bytes: Bytes,
    proposal_hash: Hash,
}

impl Proposal {
    /// A proposal by `creator` with a fresh random nonce of [`NONCE_LEN`] bytes.
    pub fn new(creator: &Identity, channel_id: &str, invocation: ChaincodeProposal) -> Self {
        let nonce: [u8; NONCE_LEN] = rand_nonce();
        Self::encoded(
            channel_id,
            creator.cert_bytes().clone(),
            Bytes::copy_from_slice(&nonce),
            invocation,
        )
    }

    /// A proposal with the given nonce, for the creator whose encoded certificate is
    /// `creator_cert` (the secret key is not needed until [`assemble`]).
    pub fn with_nonce(
        creator_cert: Bytes,
        channel_id: &str,
        invocation: ChaincodeProposal,
        nonce: &[u8],
    ) -> Result<Self, TxError> {
        check_nonce(nonce)?;
        Ok(Self::encoded(
            channel_id,
            creator_cert,
            Bytes::copy_from_slice(nonce),
            invocation,
        ))
    }

    fn encoded(
        channel_id: &str,
        creator: Bytes,
        nonce: Bytes,
        invocation: ChaincodeProposal,
    ) -> Self {
        let signed_bytes: Bytes = invocation.encode_to_vec().into();
        let proposal_bytes = if invocation.transient.is_empty() {
            signed_bytes.clone()
        } else {
            let mut public = invocation.clone();
            public.transient.clear();
            public.encode_to_vec().into()
        };
        Self::build(
            channel_id,
            creator,
            nonce,
            signed_bytes,
            proposal_bytes,
            invocation,
        )
    }

    /// The proposal as an endorser or a gateway receives it: the creator's certificate,
    /// the nonce and the encoded `ChaincodeProposal` bytes of the signed PROPOSAL, kept
    /// exactly as received (the transaction's bytes are those without transient data,
    /// [`strip_transient`]).
    pub fn from_parts(
        channel_id: &str,
        creator_cert: Bytes,
        nonce: Bytes,
        signed_bytes: Bytes,
    ) -> Result<Self, TxError> {
        check_nonce(&nonce)?;
        let invocation =
            ChaincodeProposal::decode(signed_bytes.clone()).map_err(|e| TxError::Malformed {
                what: "chaincode proposal",
                reason: e.to_string(),
            })?;
        let proposal_bytes = strip_transient(&signed_bytes)?;
        Ok(Self::build(
            channel_id,
            creator_cert,
            nonce,
            signed_bytes,
            proposal_bytes,
            invocation,
        ))
    }

    fn build(
        channel_id: &str,
        creator: Bytes,
        nonce: Bytes,
        signed_bytes: Bytes,
        proposal_bytes: Bytes,
        invocation: ChaincodeProposal,
    ) -> Self {
        let tx_id = hash::tx_id(&nonce, &creator);
        let proposal_hash = hash::proposal_hash(&tx_id, channel_id, &proposal_bytes);
        Self {
            channel_id: channel_id.to_string(),
            creator,
            nonce,
            tx_id,
            invocation,
            signed_bytes,
            proposal_bytes,
            proposal_hash,
        }
    }

    /// The channel.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// The creator's encoded certificate.
    pub fn creator(&self) -> &Bytes {
        &self.creator
    }

    /// The nonce.
    pub fn nonce(&self) -> &Bytes {
        &self.nonce
    }

    /// The tx id: `hex(SHA-256(nonce ‖ creator))`.
    pub fn tx_id(&self) -> &str {
        &self.tx_id
    }

    /// The decoded invocation, with its transient data.
    pub fn invocation(&self) -> &ChaincodeProposal {
        &self.invocation
    }

    /// The encoded `ChaincodeProposal`, exactly as it goes into the transaction (without
    /// transient data).
    pub fn proposal_bytes(&self) -> &Bytes {
        &self.proposal_bytes
    }

    /// The encoded `ChaincodeProposal` the PROPOSAL envelope carries and its creator
    /// signs: with the transient data, which only the endorsers see.
    pub fn signed_bytes(&self) -> &Bytes {
        &self.signed_bytes
    }

    /// `ordo_proto::hash::proposal_hash(tx_id, channel_id, proposal_bytes)`.
    pub fn proposal_hash(&self) -> &Hash {
        &self.proposal_hash
    }
}

fn rand_nonce() -> [u8; NONCE_LEN] {
    // A fresh key's seed is 32 bytes from the operating system's RNG; borrowing it through
    // ordo_proto keeps the SDK free of an RNG dependency of its own.
    let key = ordo_proto::crypto::generate_signing_key();
    let mut nonce = [0u8; NONCE_LEN];
    let seed = key.to_bytes();
    nonce.copy_from_slice(&seed[..NONCE_LEN]);
    nonce
}

fn check_nonce(nonce: &[u8]) -> Result<(), TxError> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(TxError::BadNonce(nonce.len()));
    }
    Ok(())
}

/// What an endorser's simulation of a proposal produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Simulation {
    /// The version of the chaincode that ran (the channel's definition).
    pub chaincode_version: String,
    /// The sequence of the definition it ran under (0: unstated, taken as the first).
    pub definition_sequence: u64,
    /// The read/write set.
    pub results: TxRwSet,
    /// The chaincode's answer.
    pub response: ChaincodeResponse,
    /// The event it set, if any.
    pub event: Option<ChaincodeEvent>,
}

impl Simulation {
    /// A successful simulation (status 200; no message, payload or event) of chaincode
    /// version `chaincode_version` that produced `results`.
    pub fn succeeded(chaincode_version: &str, results: TxRwSet) -> Self {
        Self {
            chaincode_version: chaincode_version.to_string(),
            definition_sequence: 0,
            results,
            response: ChaincodeResponse {
                status: 200,
                message: String::new(),
                payload: Bytes::new(),
            },
            event: None,
        }
    }
}

/// The encoded `ProposalResponsePayload` an endorser signs for `proposal`.
pub fn response_payload(proposal: &Proposal, simulation: Simulation) -> Bytes {
    ProposalResponsePayload {
        proposal_hash: Bytes::copy_from_slice(proposal.proposal_hash()),
        chaincode: proposal.invocation().chaincode.clone(),
        chaincode_version: simulation.chaincode_version,
        response: Some(simulation.response),
        results: Some(simulation.results),
        event: simulation.event,
        definition_sequence: simulation.definition_sequence,
    }
    .encode_to_vec()
    .into()
}

/// `identity`'s endorsement: its signature over the exact `response_payload` bytes.
pub fn endorse(identity: &Identity, response_payload: &[u8]) -> Endorsement {
    Endorsement {
        endorser: identity.cert_bytes().clone(),
        signature: identity.sign(response_payload).to_vec().into(),
    }
}

/// Steps 2 to 4 at once for a transaction whose read/write set is already known: each of
/// `endorsers` signs the successful simulation that produced `results`, and the
/// proposal's `creator` signs the envelope. For load generators, benchmarks and tests that
/// know exactly what a transaction does; applications endorse through a peer's gateway,
/// which runs the chaincode.
pub fn endorse_known<'a>(
    creator: &Identity,
    proposal: &Proposal,
    chaincode_version: &str,
    results: TxRwSet,
    endorsers: impl IntoIterator<Item = &'a Identity>,
) -> Result<Envelope, TxError> {
    let payload = response_payload(proposal, Simulation::succeeded(chaincode_version, results));
    let endorsements = endorsers
        .into_iter()
        .map(|e| endorse(e, &payload))
        .collect();
    assemble(
        creator,
        proposal,
        payload,
        endorsements,
        ordo_proto::now_ms(),
    )
}

/// The encoded `EndorserTransaction`: the envelope payload's data.
pub fn transaction_data(
    proposal: &Proposal,
    response_payload: Bytes,
    endorsements: Vec<Endorsement>,
) -> Bytes {
    EndorserTransaction {
        proposal: proposal.proposal_bytes().clone(),
        response_payload,
        endorsements,
    }
    .encode_to_vec()
    .into()
}

/// The signed `ENDORSER_TRANSACTION` envelope, signed by `creator` with the proposal's
/// nonce, so its tx id is [`Proposal::tx_id`].
pub fn assemble(
    creator: &Identity,
    proposal: &Proposal,
    response_payload: Bytes,
    endorsements: Vec<Endorsement>,
    timestamp_ms: u64,
) -> Result<Envelope, TxError> {
    if creator.cert_bytes() != proposal.creator() {
        return Err(TxError::CreatorMismatch);
    }
    let (env, tx_id) = envelope::create_signed_with_nonce(
        creator,
        proposal.channel_id(),
        HeaderType::EndorserTransaction,
        transaction_data(proposal, response_payload, endorsements),
        timestamp_ms,
        proposal.nonce(),
    );
    debug_assert_eq!(tx_id, proposal.tx_id());
    Ok(env)
}

/// The envelope payload bytes the creator signs, for signing elsewhere; finish with
/// [`attach_signature`].
pub fn transaction_payload(
    proposal: &Proposal,
    response_payload: Bytes,
    endorsements: Vec<Endorsement>,
    timestamp_ms: u64,
) -> Bytes {
    Payload {
        header: Some(Header {
            channel_id: proposal.channel_id().to_string(),
            r#type: HeaderType::EndorserTransaction as i32,
            tx_id: proposal.tx_id().to_string(),
            timestamp_ms,
            creator: proposal.creator().clone(),
            nonce: proposal.nonce().clone(),
        }),
        data: transaction_data(proposal, response_payload, endorsements),
    }
    .encode_to_vec()
    .into()
}

/// The envelope from payload bytes and the creator's signature over exactly them.
pub fn attach_signature(payload: Bytes, signature: &[u8]) -> Envelope {
    Envelope {
        payload,
        signature: Bytes::copy_from_slice(signature),
    }
}

/// Collects a simulation's reads and writes into a [`TxRwSet`] in canonical order:
/// namespaces and keys sorted, each key read at most once (the first read's version is
/// kept: it is the version the simulation saw) and written at most once (the last write
/// wins). Two endorsers that simulated the same thing produce identical bytes.
#[derive(Debug, Clone, Default)]
pub struct RwSetBuilder {
    namespaces: BTreeMap<String, NsEntry>,
}

#[derive(Debug, Clone, Default)]
struct NsEntry {
    reads: BTreeMap<String, Option<Version>>,
    writes: BTreeMap<String, Option<Bytes>>,
    ranges: Vec<RangeRead>,
}

impl RwSetBuilder {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a read of `key` that saw `version` (`None`: the key did not exist).
    pub fn read(&mut self, namespace: &str, key: &str, version: Option<Version>) -> &mut Self {
        self.ns(namespace)
            .reads
            .entry(key.to_string())
            .or_insert(version);
        self
    }

    /// Records a write of `value` to `key`.
    pub fn write(&mut self, namespace: &str, key: &str, value: Bytes) -> &mut Self {
        self.ns(namespace)
            .writes
            .insert(key.to_string(), Some(value));
        self
    }

    /// Records the deletion of `key`.
    pub fn delete(&mut self, namespace: &str, key: &str) -> &mut Self {
        self.ns(namespace).writes.insert(key.to_string(), None);
        self
    }

    /// Records a read of the range `[start, end)` (empty `end`: no bound) that held
    /// exactly `keys` (committed keys with their versions, in ascending order). Ranges
    /// are kept in the order they are recorded.
    pub fn range(
        &mut self,
        namespace: &str,
        start: &str,
        end: &str,
        keys: impl IntoIterator<Item = (String, Version)>,
    ) -> &mut Self {
        self.ns(namespace).ranges.push(RangeRead {
            start: start.to_string(),
            end: end.to_string(),
            reads: keys
                .into_iter()
                .map(|(key, v)| KvRead {
                    key,
                    version: Some(v),
                })
                .collect(),
        });
        self
    }

    fn ns(&mut self, namespace: &str) -> &mut NsEntry {
        self.namespaces.entry(namespace.to_string()).or_default()
    }

    /// The read/write set.
    pub fn build(&self) -> TxRwSet {
        TxRwSet {
            ns_rwsets: self
                .namespaces
                .iter()
                .map(|(ns, e)| NsRwSet {
                    namespace: ns.clone(),
                    reads: e
                        .reads
                        .iter()
                        .map(|(k, v)| KvRead {
                            key: k.clone(),
                            version: *v,
                        })
                        .collect(),
                    writes: e
                        .writes
                        .iter()
                        .map(|(k, v)| KvWrite {
                            key: k.clone(),
                            value: v.clone().unwrap_or_default(),
                            is_delete: v.is_none(),
                        })
                        .collect(),
                    range_reads: e.ranges.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
