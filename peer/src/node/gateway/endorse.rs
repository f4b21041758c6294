//! Gateway.Endorse: this peer's endorsement, then the other orgs' — asked in parallel,
//! only as many as the chaincode's endorsement policy needs.
//!
//! **Plan.** The gateway learns each configured endorser's org from its first good
//! endorsement ([`EndorserDirectory`]). For a proposal it asks, all at once, the fewest
//! endorsers of known orgs that would meet the policy together with what it already holds
//! (one per missing org, starting at a rotating offset so the work spreads over the orgs'
//! peers); endorsers it knows nothing about join that first wave when the known ones
//! cannot suffice. Whatever fails (no answer, a refusal, a bad signature, another
//! simulation result) is replaced by the next wave from the endorsers not yet asked,
//! until the policy is met or nobody is left.
//!
//! **Other simulation results.** Every endorsement must sign the very payload this peer
//! produced. A peer a block behind or ahead of this one simulates against other state and
//! signs something else; when that alone keeps the policy unmet, the gateway waits (at most
//! [`MISMATCH_WAIT`]) for this peer's next block, simulates again and asks again — once
//! ([`MISMATCH_RETRIES`]). The transaction would have failed MVCC validation anyway had
//! the client combined mismatched endorsements; the retry turns a refusal into a commit.
//!
//! **What is checked.** A remote endorsement's certificate must be a channel member's and
//! its signature must verify over the payload (a bad endorsement would make the
//! transaction invalid at every peer, so it is caught here). This peer's own endorsement
//! is not verified again: it has just signed it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tonic::Status;

use ordo_proto::cert::{Msp, VerifiedCert};
use ordo_proto::crypto;
use ordo_proto::pb::common::{Envelope, Policy};
use ordo_proto::pb::gateway::{EndorseResponse, ProposalResponse};
use ordo_proto::pb::peer::Endorsement;
use ordo_proto::policy;
use ordo_sdk::tx;

use super::PeerGateway;
use crate::node::endorser::{describe, CheckedProposal};

/// Longest wait for this peer's next block before simulating again after another peer
/// signed a different result.
pub const MISMATCH_WAIT: Duration = Duration::from_secs(1);

/// How many times an endorsement is attempted again after mismatched simulations.
pub const MISMATCH_RETRIES: usize = 1;

/// What the gateway has learned about its configured endorsers: the certificate each
/// last endorsed with (hence its org and role), and where the next plan starts.
#[derive(Default)]
pub(super) struct EndorserDirectory {
    known: Mutex<HashMap<String, VerifiedCert>>,
    rotation: AtomicUsize,
}

impl EndorserDirectory {
    fn learn(&self, addr: &str, cert: &VerifiedCert) {
        if let Ok(mut known) = self.known.lock() {
            known.insert(addr.to_string(), cert.clone());
        }
    }

    fn lookup(&self, addr: &str) -> Option<VerifiedCert> {
        self.known.lock().ok()?.get(addr).cloned()
    }

    /// The configured endorsers, starting at the next offset of the rotation.
    fn rotated<'a>(&self, endorsers: &'a [String]) -> Vec<&'a str> {
        if endorsers.is_empty() {
            return Vec::new();
        }
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % endorsers.len();
        endorsers[start..]
            .iter()
            .chain(&endorsers[..start])
            .map(String::as_str)
            .collect()
    }
}

/// Endorsements gathered for one proposal, one per org.
#[derive(Default)]
struct Collected {
    orgs: Vec<String>,
    certs: Vec<VerifiedCert>,
    endorsements: Vec<Endorsement>,
}

impl Collected {
    fn add(&mut self, cert: VerifiedCert, endorsement: Endorsement) {
        let org = cert.org.to_string();
        if self.orgs.contains(&org) {
            return;
        }
        self.orgs.push(org);
        self.certs.push(cert);
        self.endorsements.push(endorsement);
    }
}

/// Why one round of collecting fell short.
struct Shortfall {
    collected: Collected,
    failures: Vec<String>,
    /// Some endorser signed a different simulation result.
    mismatched: bool,
}

impl PeerGateway {
    /// Gateway.Endorse.
    pub async fn endorse(&self, request: &Envelope) -> Result<EndorseResponse, Status> {
        let _permit = self.admit()?;
        let checked = self.endorser.check(request)?;
        let mut attempt = 0;
        loop {
            let height = checked.channel.ledger().height();
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
            match self.collect(&checked, request, &local, own).await {
                Ok(collected) => {
                    let payload = tx::transaction_payload(
                        &checked.proposal,
                        local.response_payload,
                        collected.endorsements,
                        checked.timestamp_ms,
                    );
                    return Ok(EndorseResponse {
                        payload,
                        result: Some(result),
                        endorsing_orgs: collected.orgs,
                    });
                }
                Err(short) if short.mismatched && attempt < MISMATCH_RETRIES => {
                    attempt += 1;
                    let next = checked.channel.ledger().wait_for_height(height + 1);
                    let _ = tokio::time::timeout(MISMATCH_WAIT, next).await;
                }
                Err(short) => return Err(self.unmet_status(&checked, short)),
            }
        }
    }

    /// Gathers endorsements, wave by wave (module docs), until the policy is met.
    async fn collect(
        &self,
        checked: &CheckedProposal,
        request: &Envelope,
        local: &ProposalResponse,
        own: Endorsement,
    ) -> Result<Collected, Shortfall> {
        let judge = Judge::of(checked);
        let mut collected = Collected::default();
        let mut failures: Vec<String> = Vec::new();
        let mut mismatched = false;
        match judge.cert(self.endorser.identity().cert_bytes()) {
            Ok(cert) => collected.add(cert, own),
            Err(why) => failures.push(format!("this peer: {}", why.message())),
        }
        let mut untried = self.directory.rotated(&self.settings.endorsers);
        while judge.unmet(&collected.certs).is_some() {
            let wave = plan(&self.directory, &judge, &collected.certs, &mut untried);
            if wave.is_empty() {
                break;
            }
            for (addr, answer) in self.ask_all(wave, request).await {
                let verdict = answer.and_then(|resp| {
                    if resp.response_payload != local.response_payload {
                        mismatched = true;
                        return Err(Status::aborted(format!(
                            "its simulation differs from this peer's ({}); the state may be changing — retry",
                            resp.response
                                .as_ref()
                                .map(describe)
                                .unwrap_or_else(|| "no response".into())
                        )));
                    }
                    let endorsement = resp
                        .endorsement
                        .ok_or_else(|| Status::aborted("returned no endorsement"))?;
                    let cert = judge.check_remote(&local.response_payload, &endorsement, &addr)?;
                    Ok((cert, endorsement))
                });
                match verdict {
                    Ok((cert, endorsement)) => {
                        self.directory.learn(&addr, &cert);
                        collected.add(cert, endorsement);
                    }
                    Err(why) => failures.push(format!("{addr}: {}", why.message())),
                }
            }
        }
        if judge.unmet(&collected.certs).is_none() {
            Ok(collected)
        } else {
            Err(Shortfall {
                collected,
                failures,
                mismatched,
            })
        }
    }

    /// Asks every endorser of a wave at once; answers in the wave's order.
    async fn ask_all(
        &self,
        wave: Vec<&str>,
        request: &Envelope,
    ) -> Vec<(String, Result<ProposalResponse, Status>)> {
        if let [addr] = wave.as_slice() {
            let answer = ask(
                self.pool.clone(),
                addr.to_string(),
                request.clone(),
                self.settings.endorse_timeout,
            )
            .await;
            return vec![(addr.to_string(), answer)];
        }
        let mut set = JoinSet::new();
        for (i, addr) in wave.iter().enumerate() {
            let (pool, addr, request) = (self.pool.clone(), addr.to_string(), request.clone());
            let timeout = self.settings.endorse_timeout;
            set.spawn(async move {
                let answer = ask(pool, addr.clone(), request, timeout).await;
                (i, addr, answer)
            });
        }
        let mut answers: Vec<(usize, String, Result<ProposalResponse, Status>)> = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(a) => answers.push(a),
                Err(e) => answers.push((
                    usize::MAX,
                    "an endorsement request".into(),
                    Err(Status::internal(format!("it panicked: {e}"))),
                )),
            }
        }
        answers.sort_by_key(|(i, _, _)| *i);
        answers.into_iter().map(|(_, a, r)| (a, r)).collect()
    }

    /// UNAVAILABLE, naming who endorsed, what is missing and every failure.
    fn unmet_status(&self, checked: &CheckedProposal, short: Shortfall) -> Status {
        let missing = Judge::of(checked)
            .unmet(&short.collected.certs)
            .unwrap_or_default();
        Status::unavailable(format!(
            "endorsement policy of chaincode {:?} not satisfied: endorsed by {} ({missing}); {}",
            checked.definition.name,
            if short.collected.orgs.is_empty() {
                "nobody".to_string()
            } else {
                short.collected.orgs.join(", ")
            },
            if short.failures.is_empty() {
                "no other endorsing peers are configured ([gateway] endorsers)".to_string()
            } else {
                format!("failures: {}", short.failures.join("; "))
            }
        ))
    }
}

/// The next wave: untried endorsers of known, not yet collected orgs that would meet the
/// policy together with `collected`, none of them superfluous; failing that, those plus every
/// untried endorser whose org is unknown; failing that, everyone untried. The wave leaves
/// `untried`.
fn plan<'a>(
    directory: &EndorserDirectory,
    judge: &Judge<'_>,
    collected: &[VerifiedCert],
    untried: &mut Vec<&'a str>,
) -> Vec<&'a str> {
    let mut hoped = collected.to_vec();
    let mut wave: Vec<&'a str> = Vec::new();
    let mut unknown: Vec<&'a str> = Vec::new();
    for &addr in untried.iter() {
        if judge.unmet(&hoped).is_none() {
            break;
        }
        match directory.lookup(addr) {
            Some(cert) if !hoped.iter().any(|c| c.org == cert.org) => {
                hoped.push(cert);
                wave.push(addr);
            }
            Some(_) => {}
            None => unknown.push(addr),
        }
    }
    if judge.unmet(&hoped).is_none() {
        // Drop whoever the policy is met without (an org it does not name, say), latest
        // first, so the wave is as small as it can be.
        let base = collected.len();
        for i in (0..wave.len()).rev() {
            let mut without = hoped.clone();
            without.remove(base + i);
            if judge.unmet(&without).is_none() {
                hoped = without;
                wave.remove(i);
            }
        }
    } else {
        wave.extend(unknown);
        if wave.is_empty() {
            wave = untried.clone();
        }
    }
    untried.retain(|a| !wave.contains(a));
    wave
}

/// What judging endorsements needs from the channel, read once per attempt (a status
/// snapshot clones its maps).
struct Judge<'a> {
    policy: Option<&'a Policy>,
    org_names: Vec<String>,
    msp: Option<Msp>,
    /// The proposal's time: certificates must be valid then.
    at_secs: u64,
}

impl<'a> Judge<'a> {
    fn of(checked: &'a CheckedProposal) -> Self {
        let status = checked.channel.status();
        Self {
            policy: checked.definition.endorsement_policy.as_ref(),
            org_names: status.config.orgs.iter().map(|o| o.name.clone()).collect(),
            msp: status.msp,
            at_secs: checked.timestamp_ms / 1000,
        }
    }

    /// A channel member's certificate, verified (cached by the MSP).
    fn cert(&self, cert_bytes: &[u8]) -> Result<VerifiedCert, Status> {
        let msp = self
            .msp
            .as_ref()
            .ok_or_else(|| Status::internal("the channel configuration has no usable MSP"))?;
        msp.verify(cert_bytes, self.at_secs)
            .map_err(|e| Status::permission_denied(format!("endorser certificate: {e}")))
    }

    /// Checks a remote endorsement: a channel member's certificate, a signature over the
    /// payload.
    fn check_remote(
        &self,
        payload: &Bytes,
        endorsement: &Endorsement,
        from: &str,
    ) -> Result<VerifiedCert, Status> {
        let cert = self.cert(&endorsement.endorser)?;
        crypto::verify(&cert.public_key, payload, &endorsement.signature).map_err(|_| {
            Status::permission_denied(format!("the endorsement of {from} does not verify"))
        })?;
        Ok(cert)
    }

    /// What the endorsement policy still lacks with `certs`, if anything.
    fn unmet(&self, certs: &[VerifiedCert]) -> Option<String> {
        match self.policy {
            Some(p) => policy::evaluate(p, certs, &self.org_names)
                .err()
                .map(|e| e.to_string()),
            None => Some("the chaincode has no endorsement policy".into()),
        }
    }
}

/// Endorser.ProcessProposal on `addr` over the pool's kept connection, within `timeout`.
async fn ask(
    pool: Arc<ordo_node::ClientPool>,
    addr: String,
    request: Envelope,
    timeout: Duration,
) -> Result<ProposalResponse, Status> {
    let call = async {
        let ch = pool
            .get(&addr)
            .map_err(|e| Status::unavailable(format!("cannot connect: {e}")))?;
        let mut client = ordo_proto::pb::gateway::endorser_client::EndorserClient::new(ch);
        client
            .process_proposal(request)
            .await
            .map(tonic::Response::into_inner)
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Status::deadline_exceeded(format!("no answer within {timeout:?}")))?
}

#[cfg(test)]
mod tests;
