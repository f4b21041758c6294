//! Stage 1, first half: everything about one transaction that needs no Ed25519
//! signature check (certificates aside, which the MSP verifies and caches): decoding,
//! header, creator certificate, proposal hash, chaincode, read/write set, response.
//!
//! The result says which signatures are still to be checked; [`super::stage1`] checks
//! those of a whole chunk in one batch and then settles each transaction's code.

use bytes::Bytes;
use prost::Message;

use ordo_proto::cert::VerifiedCert;
use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::hash;
use ordo_proto::pb::common::{ChaincodeDefinition, Envelope, Header, HeaderType};
use ordo_proto::pb::peer::{
    ChaincodeEvent, ChaincodeProposal, EndorserTransaction, ProposalResponsePayload, TxRwSet,
    TxValidationCode,
};

use super::context::ValidationContext;
use super::rwset;
use super::Verdict;

/// Most endorsements one transaction may carry: each costs a signature check, and no
/// policy needs more than a few.
pub const MAX_ENDORSEMENTS: usize = 32;

/// The chaincode response statuses that count as success (HTTP's 2xx and 3xx).
pub const SUCCESS_STATUSES: std::ops::Range<i32> = 200..400;

/// One transaction after the checks that need no signature.
pub(crate) enum Prepared<'c> {
    /// Failed before its creator was known to be valid: its tx id cannot be trusted.
    Rejected(Verdict),
    /// The creator certificate is valid; the envelope signature is still to be checked.
    Signed(Box<SignedTx<'c>>),
}

/// A transaction whose creator certificate is valid on the channel.
pub(crate) struct SignedTx<'c> {
    /// The envelope's payload bytes, exactly as signed.
    pub payload: Bytes,
    /// The creator's signature over them.
    pub signature: Bytes,
    /// The creator.
    pub creator: VerifiedCert,
    /// The header's tx id (already known to match nonce and creator).
    pub tx_id: String,
    /// The header's timestamp (ms since the Unix epoch), as signed by the creator: what
    /// expiry judges (check 7).
    pub timestamp_ms: u64,
    /// Set when the envelope is for another channel or of a type the peer does not
    /// validate (checks 3 and 4): that is its code whatever its signature, which is
    /// checked only to tell whether the tx id is authentic (then it is indexed, so the
    /// transaction can be looked up and its id is taken).
    pub header_verdict: Option<Verdict>,
    /// The outcome of the checks on the transaction itself.
    pub body: Result<Body<'c>, Verdict>,
}

/// A transaction whose every check but the signatures and the policy passed.
pub(crate) struct Body<'c> {
    /// The response payload bytes the endorsers signed.
    pub response_payload: Bytes,
    /// Endorsements whose certificate is valid on the channel: (endorser, signature).
    pub endorsers: Vec<(VerifiedCert, Bytes)>,
    /// The chaincodes whose endorsement policy must hold: the one invoked, then each
    /// other namespace written, each once.
    pub policies: Vec<&'c ChaincodeDefinition>,
    /// The read/write set, shape already checked.
    pub rwset: TxRwSet,
    /// The chaincode event, if any.
    pub event: Option<ChaincodeEvent>,
}

/// Runs the signature-free checks on one envelope of a block.
pub(crate) fn prepare<'c>(envelope_bytes: &Bytes, ctx: &'c ValidationContext) -> Prepared<'c> {
    match prepare_envelope(envelope_bytes, ctx) {
        Ok((env, header, creator, data, header_verdict)) => Prepared::Signed(Box::new(SignedTx {
            payload: env.payload,
            signature: env.signature,
            creator,
            body: match &header_verdict {
                Some(v) => Err(v.clone()),
                None => prepare_body(&header, data, ctx),
            },
            header_verdict,
            timestamp_ms: header.timestamp_ms,
            tx_id: header.tx_id,
        })),
        Err(v) => Prepared::Rejected(v),
    }
}

/// The decoded envelope, its header, its valid creator, its data, and the verdict of
/// checks 3 and 4 when one of them failed (see [`SignedTx::header_verdict`]).
type Unpacked = (Envelope, Header, VerifiedCert, Bytes, Option<Verdict>);

fn prepare_envelope(envelope_bytes: &Bytes, ctx: &ValidationContext) -> Result<Unpacked, Verdict> {
    let env = Envelope::decode(envelope_bytes.clone())
        .map_err(|e| Verdict::new(TxValidationCode::BadPayload, format!("envelope: {e}")))?;
    let unpacked = match envelope::unpack(&env) {
        Ok(u) => u,
        // An unsigned (genesis-style) config envelope fails the header checks; it is
        // still a config envelope out of place.
        Err(_) if config::is_config_envelope(envelope_bytes) => {
            return Err(config_out_of_place());
        }
        Err(e) => return Err(Verdict::new(TxValidationCode::BadPayload, e.to_string())),
    };
    let header = unpacked.header;
    let header_verdict = match unpacked.header_type {
        HeaderType::Config => return Err(config_out_of_place()),
        _ if header.channel_id != ctx.channel_id() => Some(Verdict::new(
            TxValidationCode::WrongChannel,
            format!("envelope for channel {:?}", header.channel_id),
        )),
        HeaderType::EndorserTransaction => None,
        other => Some(Verdict::new(
            TxValidationCode::UnknownTxType,
            format!("header type {}", other.as_str_name()),
        )),
    };
    match (
        ctx.msp().verify(&header.creator, tx_time_secs(&header)),
        header_verdict,
    ) {
        (Ok(creator), header_verdict) => Ok((env, header, creator, unpacked.data, header_verdict)),
        // Checks 3 and 4 come first: their code stands, with the tx id unauthenticated.
        (Err(_), Some(verdict)) => Err(verdict),
        (Err(e), None) => Err(Verdict::new(TxValidationCode::BadCreator, e.to_string())),
    }
}

/// The time a transaction's certificates are checked at: its own creation time, from its
/// signed header. Every peer reads the same value from the same transaction, so expiry
/// can never make peers disagree; the orderer refuses envelopes whose timestamp is far
/// from its clock, which bounds how far a creator can backdate.
fn tx_time_secs(header: &ordo_proto::pb::common::Header) -> u64 {
    header.timestamp_ms / 1000
}

fn config_out_of_place() -> Verdict {
    Verdict::new(
        TxValidationCode::InvalidConfig,
        "config envelope in a block with other envelopes".into(),
    )
}

fn prepare_body<'c>(
    header: &Header,
    data: Bytes,
    ctx: &'c ValidationContext,
) -> Result<Body<'c>, Verdict> {
    let bad = |what: &str, e: prost::DecodeError| {
        Verdict::new(TxValidationCode::BadPayload, format!("{what}: {e}"))
    };
    let tx = EndorserTransaction::decode(data).map_err(|e| bad("endorser transaction", e))?;
    let proposal =
        ChaincodeProposal::decode(tx.proposal.clone()).map_err(|e| bad("proposal", e))?;
    if !proposal.transient.is_empty() {
        return Err(Verdict::new(
            TxValidationCode::BadPayload,
            "the proposal carries transient data, which must never reach the ledger".into(),
        ));
    }
    let prp = ProposalResponsePayload::decode(tx.response_payload.clone())
        .map_err(|e| bad("response payload", e))?;
    if prp.chaincode != proposal.chaincode {
        return Err(Verdict::new(
            TxValidationCode::BadPayload,
            format!(
                "response for chaincode {:?}, proposal for {:?}",
                prp.chaincode, proposal.chaincode
            ),
        ));
    }
    let response = prp.response.ok_or_else(|| {
        Verdict::new(
            TxValidationCode::BadPayload,
            "response payload has no response".into(),
        )
    })?;
    if tx.endorsements.len() > MAX_ENDORSEMENTS {
        return Err(Verdict::new(
            TxValidationCode::BadPayload,
            format!(
                "{} endorsements exceed the limit of {MAX_ENDORSEMENTS}",
                tx.endorsements.len()
            ),
        ));
    }
    let expected = hash::proposal_hash(&header.tx_id, &header.channel_id, &tx.proposal);
    if prp.proposal_hash.as_ref() != expected.as_slice() {
        return Err(Verdict::new(
            TxValidationCode::BadProposalHash,
            "response payload is for another proposal".into(),
        ));
    }
    let def = ctx.chaincode(&proposal.chaincode).ok_or_else(|| {
        Verdict::new(
            TxValidationCode::UnknownChaincode,
            format!("chaincode {:?} is not defined", proposal.chaincode),
        )
    })?;
    let endorsed_under = prp.definition_sequence.max(1);
    let in_force = ordo_proto::config_change::effective_sequence(def);
    if endorsed_under != in_force {
        return Err(Verdict::new(
            TxValidationCode::DefinitionSuperseded,
            format!(
                "endorsed under definition sequence {endorsed_under} of chaincode {:?}; the \
                 channel's is {in_force} (version {:?})",
                def.name, def.version
            ),
        ));
    }
    if prp.chaincode_version != def.version {
        return Err(Verdict::new(
            TxValidationCode::ChaincodeVersionMismatch,
            format!(
                "endorsed with version {:?}, the channel defines {:?}",
                prp.chaincode_version, def.version
            ),
        ));
    }
    let rwset = prp.results.unwrap_or_default();
    rwset::check(&rwset, ctx)?;
    if !SUCCESS_STATUSES.contains(&response.status) {
        return Err(Verdict::new(
            TxValidationCode::BadResponse,
            format!("chaincode response status {}", response.status),
        ));
    }
    let mut policies = vec![def];
    for ns in rwset::written_namespaces(&rwset) {
        // rwset::check made sure every namespace is defined.
        if let Some(d) = ctx.chaincode(ns) {
            if !policies.iter().any(|p| p.name == d.name) {
                policies.push(d);
            }
        }
    }
    let endorsers = tx
        .endorsements
        .into_iter()
        .filter_map(|e| {
            ctx.msp()
                .verify(&e.endorser, tx_time_secs(header))
                .ok()
                .map(|c| (c, e.signature))
        })
        .collect();
    Ok(Body {
        response_payload: tx.response_payload,
        endorsers,
        policies,
        rwset,
        event: prp.event,
    })
}
