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
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use tokio::task::JoinSet;
use tonic::Status;

use ordo_proto::cert::{Msp, VerifiedCert};
use ordo_proto::crypto;
use ordo_proto::pb::common::{Envelope, Policy};
use ordo_proto::pb::gateway::{
    ChaincodeRefusal, EndorseRequest, EndorseResponse, ProposalResponse,
};
use ordo_proto::pb::peer::ChaincodeResponse;
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

/// How long an endorser that could not be reached (or did not answer in time) goes to
/// the back of every plan.
pub const UNHEALTHY_FOR: Duration = Duration::from_secs(10);

/// What the gateway knows about endorsers: the certificate each announced itself with
/// (discovery) or last endorsed with (hence its org and role), which ones failed to
/// answer lately, and where the next plan starts.
#[derive(Default)]
pub(super) struct EndorserDirectory {
    known: Mutex<HashMap<String, VerifiedCert>>,
    unreachable: Mutex<HashMap<String, Instant>>,
    rotation: AtomicUsize,
}

impl EndorserDirectory {
    fn learn(&self, addr: &str, cert: &VerifiedCert) {
        if let Ok(mut known) = self.known.lock() {
            if known.get(addr).map(|c| c.cert_hash) != Some(cert.cert_hash) {
                known.insert(addr.to_string(), cert.clone());
            }
        }
    }

    fn lookup(&self, addr: &str) -> Option<VerifiedCert> {
        self.known.lock().ok()?.get(addr).cloned()
    }

    /// Records that `addr` could not be reached or did not answer in time.
    fn unreachable(&self, addr: &str) {
        if let Ok(mut failed) = self.unreachable.lock() {
            failed.insert(addr.to_string(), Instant::now());
        }
    }

    /// Records that `addr` answered.
    fn answered(&self, addr: &str) {
        if let Ok(mut failed) = self.unreachable.lock() {
            if !failed.is_empty() {
                failed.remove(addr);
            }
        }
    }

    /// Every endorser preferred alike (see [`EndorserDirectory::ordered_preferring`]).
    #[cfg(test)]
    fn ordered<'a>(&self, endorsers: &'a [String]) -> Vec<&'a str> {
        self.ordered_preferring(endorsers, endorsers.len())
    }

    /// The endorsers in the order a plan takes them: the first `preferred` starting at
    /// the next offset of the rotation, then the others (peers not known to run the
    /// chaincode yet); those unreachable within [`UNHEALTHY_FOR`] moved to the back (still
    /// asked when nobody else can help).
    fn ordered_preferring<'a>(&self, endorsers: &'a [String], preferred: usize) -> Vec<&'a str> {
        if endorsers.is_empty() {
            return Vec::new();
        }
        let (first, rest) = endorsers.split_at(preferred.min(endorsers.len()));
        let start = match first.len() {
            0 => 0,
            n => self.rotation.fetch_add(1, Ordering::Relaxed) % n,
        };
        let mut order: Vec<&'a str> = first[start..]
            .iter()
            .chain(&first[..start])
            .chain(rest)
            .map(String::as_str)
            .collect();
        if let Ok(mut failed) = self.unreachable.lock() {
            failed.retain(|_, at| at.elapsed() < UNHEALTHY_FOR);
            if !failed.is_empty() {
                order.sort_by_key(|addr| failed.contains_key(*addr));
            }
        }
        order
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
    /// What the policy (or the client's choice of orgs) still lacks.
    missing: String,
    /// The client chose orgs, all of them endorsed, and the policy is still unmet:
    /// asking again cannot help.
    chosen_all_endorsed: bool,
}

impl PeerGateway {
    /// Gateway.Endorse.
    pub async fn endorse(&self, request: &EndorseRequest) -> Result<EndorseResponse, Status> {
        let _permit = self.admit()?;
        let proposal = request
            .proposal
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("no proposal in the endorse request"))?;
        let checked = self.endorser.check(proposal)?;
        let chosen = self.chosen_orgs(&checked, &request.endorsing_orgs)?;
        let mut attempt = 0;
        loop {
            let height = checked.channel.ledger().height();
            let outcome = self.endorser.simulate(&checked).await?;
            let local = self.endorser.respond(&checked, outcome);
            let result = local.response.clone().unwrap_or_default();
            let Some(own) = local.endorsement.clone() else {
                return Err(chaincode_refused(&checked.definition.name, result, ""));
            };
            match self
                .collect(&checked, proposal, chosen.as_deref(), &local, own)
                .await
            {
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

    /// The orgs a request chose, checked: channel members, the gateway's own among them
    /// (it endorses whatever it forwards). `None`: the gateway chooses.
    fn chosen_orgs(
        &self,
        checked: &CheckedProposal,
        orgs: &[String],
    ) -> Result<Option<Vec<String>>, Status> {
        if orgs.is_empty() {
            return Ok(None);
        }
        let status = checked.channel.status();
        if let Some(stranger) = orgs
            .iter()
            .find(|o| !status.config.orgs.iter().any(|c| &c.name == *o))
        {
            return Err(Status::invalid_argument(format!(
                "endorsing org {stranger:?} is not a member of channel {:?}",
                checked.proposal.channel_id()
            )));
        }
        let own = Judge::of(checked)
            .cert(self.endorser.identity().cert_bytes())?
            .org
            .to_string();
        if !orgs.contains(&own) {
            return Err(Status::invalid_argument(format!(
                "this gateway's org {own:?} endorses every transaction it prepares: list it \
                 among the endorsing orgs, or use a gateway of one of {orgs:?}"
            )));
        }
        let mut chosen = orgs.to_vec();
        chosen.sort();
        chosen.dedup();
        Ok(Some(chosen))
    }

    /// Gathers endorsements, wave by wave (module docs), until the policy is met (and,
    /// when the client chose orgs, every one of them has endorsed).
    async fn collect(
        &self,
        checked: &CheckedProposal,
        request: &Envelope,
        chosen: Option<&[String]>,
        local: &ProposalResponse,
        own: Endorsement,
    ) -> Result<Collected, Shortfall> {
        let judge = Judge::of(checked).choosing(chosen);
        let mut collected = Collected::default();
        let mut failures: Vec<String> = Vec::new();
        let mut mismatched = false;
        match judge.cert(self.endorser.identity().cert_bytes()) {
            Ok(cert) => collected.add(cert, own),
            Err(why) => failures.push(format!("this peer: {}", why.message())),
        }
        let (candidates, preferred) = self.candidates(checked);
        let mut untried = self.directory.ordered_preferring(&candidates, preferred);
        while judge.unmet(&collected.certs).is_some() {
            let wave = plan(&self.directory, &judge, &collected.certs, &mut untried);
            if wave.is_empty() {
                break;
            }
            for (addr, answer) in self.ask_all(wave, request).await {
                match &answer {
                    Err(s)
                        if matches!(
                            s.code(),
                            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                        ) =>
                    {
                        self.directory.unreachable(&addr)
                    }
                    _ => self.directory.answered(&addr),
                }
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
                        if judge.admits(&cert.org) {
                            collected.add(cert, endorsement);
                        } else {
                            failures.push(format!("{addr}: its org {} was not chosen", cert.org));
                        }
                    }
                    Err(why) => failures.push(format!("{addr}: {}", why.message())),
                }
            }
        }
        match judge.unmet(&collected.certs) {
            None => Ok(collected),
            Some(missing) => Err(Shortfall {
                chosen_all_endorsed: chosen
                    .is_some_and(|c| c.iter().all(|o| collected.orgs.contains(o))),
                collected,
                failures,
                mismatched,
                missing,
            }),
        }
    }

    /// Who may be asked to endorse this proposal, and how many of them are preferred:
    /// the discovered peers that announced they run its chaincode and the configured
    /// `[gateway] endorsers` (their orgs known from announcements or learned from
    /// endorsements) first, then the discovered peers that have not announced it.
    fn candidates(&self, checked: &CheckedProposal) -> (Vec<String>, usize) {
        let discovered = self
            .discovery
            .endorsers(checked.channel.id(), &checked.definition.name);
        let mut all: Vec<String> =
            Vec::with_capacity(discovered.len() + self.settings.endorsers.len());
        let mut later: Vec<String> = Vec::new();
        for e in discovered {
            self.directory.learn(&e.endpoint, &e.cert);
            let list = if e.runs { &mut all } else { &mut later };
            if !list.contains(&e.endpoint) {
                list.push(e.endpoint);
            }
        }
        for addr in &self.settings.endorsers {
            if !all.contains(addr) {
                all.push(addr.clone());
            }
        }
        later.retain(|a| !all.contains(a));
        let preferred = all.len();
        all.extend(later);
        (all, preferred)
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
        let missing = short.missing;
        if short.chosen_all_endorsed {
            return Status::failed_precondition(format!(
                "the chosen orgs {} all endorsed, but the endorsement policy of chaincode {:?} \
                 needs more: {missing}",
                short.collected.orgs.join(", "),
                checked.definition.name
            ));
        }
        Status::unavailable(format!(
            "endorsement policy of chaincode {:?} not satisfied: endorsed by {} ({missing}); {}",
            checked.definition.name,
            if short.collected.orgs.is_empty() {
                "nobody".to_string()
            } else {
                short.collected.orgs.join(", ")
            },
            if short.failures.is_empty() {
                "no other peer of the channel runs this chaincode (none discovered, none in \
                 [gateway] endorsers)"
                    .to_string()
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
            Some(cert) if !judge.admits(&cert.org) => {}
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
            wave = untried
                .iter()
                .copied()
                .filter(|a| {
                    directory
                        .lookup(a)
                        .is_none_or(|cert| judge.admits(&cert.org))
                })
                .collect();
        }
    }
    untried.retain(|a| !wave.contains(a));
    wave
}

/// What judging endorsements needs from the channel, read once per attempt (a status
/// snapshot clones its maps).
struct Judge<'a> {
    policy: Option<&'a Policy>,
    /// The orgs the client chose, when it did: only they may endorse, and all of them
    /// must.
    chosen: Option<&'a [String]>,
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
            chosen: None,
            org_names: status.config.orgs.iter().map(|o| o.name.clone()).collect(),
            msp: status.msp,
            at_secs: checked.timestamp_ms / 1000,
        }
    }

    /// The same judge, holding out for exactly the `chosen` orgs when there are some.
    fn choosing(self, chosen: Option<&'a [String]>) -> Self {
        Self { chosen, ..self }
    }

    /// Whether an endorsement from `org` may be used.
    fn admits(&self, org: &str) -> bool {
        self.chosen.is_none_or(|c| c.iter().any(|o| o == org))
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

    /// What the endorsement policy (or the client's choice of orgs) still lacks with
    /// `certs`, if anything.
    fn unmet(&self, certs: &[VerifiedCert]) -> Option<String> {
        if let Some(chosen) = self.chosen {
            let absent: Vec<&str> = chosen
                .iter()
                .filter(|o| !certs.iter().any(|c| c.org.as_ref() == o.as_str()))
                .map(String::as_str)
                .collect();
            if !absent.is_empty() {
                return Some(format!(
                    "chosen orgs not endorsed yet: {}",
                    absent.join(", ")
                ));
            }
        }
        match self.policy {
            Some(p) => policy::evaluate(p, certs, &self.org_names)
                .err()
                .map(|e| e.to_string()),
            None => Some("the chaincode has no endorsement policy".into()),
        }
    }
}

/// ABORTED for a chaincode's refusal, its status, message and payload also as a
/// [`ChaincodeRefusal`] in the status details (clients need not parse the message).
fn chaincode_refused(chaincode: &str, result: ChaincodeResponse, peer: &str) -> Status {
    let message = format!(
        "chaincode {chaincode:?} refused on {}: {}",
        if peer.is_empty() { "this peer" } else { peer },
        describe(&result)
    );
    let details = ChaincodeRefusal {
        status: result.status,
        message: result.message,
        payload: result.payload,
        peer: peer.to_string(),
    };
    Status::with_details(
        tonic::Code::Aborted,
        message,
        details.encode_to_vec().into(),
    )
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
