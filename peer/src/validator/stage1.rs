//! Stage 1: every transaction on its own, in parallel.
//!
//! The block's envelopes are cut into chunks of [`super::ValidatorOptions::chunk_size`];
//! scoped threads take chunks in turn. For each chunk: the signature-free checks
//! ([`super::prepare`]), then all its signatures (envelopes and endorsements) in one
//! batch, then each transaction's code and endorsement policy. The verdict on a signature
//! does not depend on its batch (`ordo_proto::crypto::verify_each` settles a failed batch
//! one by one), so neither the chunk size nor the thread count changes any result.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use ordo_proto::cert::VerifiedCert;
use ordo_proto::crypto::{self, SignedMessage};
use ordo_proto::pb::peer::{ChaincodeEvent, TxRwSet, TxValidationCode};
use ordo_proto::policy;

use super::context::ValidationContext;
use super::prepare::{prepare, Body, Prepared};
use super::Verdict;

/// Stage 1's verdict on one transaction.
#[derive(Debug)]
pub(crate) struct Checked {
    /// VALID when every stage-1 check passed.
    pub code: TxValidationCode,
    /// Why not, for the logs.
    pub reason: Option<String>,
    /// The tx id, once the envelope signature proved the creator made it; `None` before.
    pub tx_id: Option<String>,
    /// The signed header's timestamp (ms) when `tx_id` is set (authenticated); else 0.
    pub timestamp_ms: u64,
    /// What the transaction does, when `code` is VALID.
    pub effects: Option<Effects>,
}

/// The read/write set and event of a transaction that passed stage 1.
#[derive(Debug)]
pub(crate) struct Effects {
    pub rwset: TxRwSet,
    pub event: Option<ChaincodeEvent>,
}

impl Checked {
    /// A failed check; `signed` is the authenticated (tx id, timestamp), if any.
    fn failed(v: Verdict, signed: Option<(String, u64)>) -> Self {
        let (tx_id, timestamp_ms) = match signed {
            Some((id, at)) => (Some(id), at),
            None => (None, 0),
        };
        Self {
            code: v.code,
            reason: Some(v.reason),
            tx_id,
            timestamp_ms,
            effects: None,
        }
    }
}

/// Stage 1 over a block's envelopes: one [`Checked`] per envelope, in block order.
pub(crate) fn run(envelopes: &[Bytes], ctx: &ValidationContext) -> Vec<Checked> {
    let opts = ctx.options();
    let chunks: Vec<&[Bytes]> = envelopes.chunks(opts.chunk_size.get()).collect();
    let threads = opts.max_threads.get().min(chunks.len());
    if threads <= 1 {
        return chunks.iter().flat_map(|c| check_chunk(c, ctx)).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(chunk) = chunks.get(i) else {
                return done;
            };
            done.push((i, check_chunk(chunk, ctx)));
        }
    };
    let mut results: Vec<Option<Vec<Checked>>> = (0..chunks.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut all = vec![work()];
        for h in helpers {
            match h.join() {
                Ok(done) => all.push(done),
                // A panic here is a bug in the validator, not a verdict on the block.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        for (i, checked) in all.into_iter().flatten() {
            results[i] = Some(checked);
        }
    });
    let out: Vec<Checked> = results.into_iter().flatten().flatten().collect();
    assert_eq!(out.len(), envelopes.len(), "every chunk checked once");
    out
}

/// Stage 1 over one chunk, with one batch of signature checks.
fn check_chunk(chunk: &[Bytes], ctx: &ValidationContext) -> Vec<Checked> {
    let prepared: Vec<Prepared<'_>> = chunk.iter().map(|e| prepare(e, ctx)).collect();
    let verdicts = {
        let mut items = Vec::new();
        for p in &prepared {
            let Prepared::Signed(tx) = p else { continue };
            items.push(SignedMessage {
                key: &tx.creator.public_key,
                msg: &tx.payload,
                sig: &tx.signature,
            });
            if let Ok(body) = &tx.body {
                for (endorser, sig) in &body.endorsers {
                    items.push(SignedMessage {
                        key: &endorser.public_key,
                        msg: &body.response_payload,
                        sig,
                    });
                }
            }
        }
        crypto::verify_each(&items)
    };
    // Walk the transactions in the order their signatures were queued.
    let mut verdicts = verdicts.into_iter();
    prepared
        .into_iter()
        .map(|p| match p {
            Prepared::Rejected(v) => Checked::failed(v, None),
            Prepared::Signed(tx) => {
                let envelope_ok = verdicts.next().unwrap_or(false);
                let endorsements_ok: Vec<bool> = match &tx.body {
                    Ok(body) => verdicts.by_ref().take(body.endorsers.len()).collect(),
                    Err(_) => Vec::new(),
                };
                let signed = (tx.tx_id, tx.timestamp_ms);
                if let Some(v) = tx.header_verdict {
                    return Checked::failed(v, envelope_ok.then_some(signed));
                }
                if !envelope_ok {
                    return Checked::failed(
                        Verdict::new(
                            TxValidationCode::BadSignature,
                            "envelope signature does not verify".into(),
                        ),
                        None,
                    );
                }
                match tx.body {
                    Err(v) => Checked::failed(v, Some(signed)),
                    Ok(body) => settle(body, &endorsements_ok, ctx, signed),
                }
            }
        })
        .collect()
}

/// The endorsement policies over the endorsers whose signature verified.
fn settle(
    body: Body<'_>,
    endorsements_ok: &[bool],
    ctx: &ValidationContext,
    signed: (String, u64),
) -> Checked {
    let endorsers: Vec<VerifiedCert> = body
        .endorsers
        .into_iter()
        .zip(
            endorsements_ok
                .iter()
                .copied()
                .chain(std::iter::repeat(false)),
        )
        .filter_map(|((cert, _), ok)| ok.then_some(cert))
        .collect();
    for def in &body.policies {
        let outcome = match &def.endorsement_policy {
            Some(p) => policy::evaluate(p, &endorsers, ctx.org_names()).map_err(|e| e.to_string()),
            None => Err("no endorsement policy".to_string()),
        };
        if let Err(e) = outcome {
            return Checked::failed(
                Verdict::new(
                    TxValidationCode::EndorsementPolicyFailure,
                    format!("chaincode {:?}: {e}", def.name),
                ),
                Some(signed),
            );
        }
    }
    let (tx_id, timestamp_ms) = signed;
    Checked {
        code: TxValidationCode::Valid,
        reason: None,
        tx_id: Some(tx_id),
        timestamp_ms,
        effects: Some(Effects {
            rwset: body.rwset,
            event: body.event,
        }),
    }
}
