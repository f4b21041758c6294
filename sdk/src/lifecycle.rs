//! The chaincode lifecycle from code: define, upgrade and retire chaincodes on a running
//! channel, each org approving with its own admin.
//!
//! A lifecycle change is a config update that changes chaincode definitions alone; the
//! channel's Lifecycle policy (by default a majority of the orgs' admins) authorizes it,
//! and the orderer and every peer enforce the rules of
//! [`ordo_proto::config_change::check_definitions`]. The steps:
//!
//! 1. [`config_in_force`] reads the channel's configuration from an orderer;
//! 2. [`Definition::propose`] makes the next configuration with the new definition (its
//!    sequence, checked as the channel will check it);
//! 3. each org's admin signs the proposed configuration's exact bytes with [`approve`],
//!    on its own machine (the bytes travel; `ordo chaincode approve` carries them in a
//!    file);
//! 4. [`approvals`] says whose approvals count and whether the policy is met;
//! 5. [`commit`] submits the CONFIG_UPDATE; the definition is in force from the config
//!    block that follows.
//!
//! ```no_run
//! use ordo_sdk::lifecycle::{self, Definition};
//! # async fn upgrade(
//! #     orderer: &str,
//! #     transport: &ordo_sdk::transport::Transport,
//! #     admin_a: &ordo_proto::identity::Identity,
//! #     admin_b: &ordo_proto::identity::Identity,
//! # ) -> Result<(), lifecycle::LifecycleError> {
//! let current = lifecycle::config_in_force(orderer, transport, admin_a, "payments").await?;
//! let proposed = Definition::new("bank", "2").endorsed_by(3, &[]).propose(&current)?;
//! let bytes = lifecycle::encode(&proposed);
//! let approvals = vec![lifecycle::approve(admin_a, &bytes)?, lifecycle::approve(admin_b, &bytes)?];
//! lifecycle::commit(orderer, transport, admin_a, "payments", bytes, approvals).await?;
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use prost::Message;
use thiserror::Error;
use tokio_stream::StreamExt;

use ordo_proto::cert::Msp;
use ordo_proto::config_change::{self, effective_sequence};
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{
    Block, ChaincodeDefinition, ChannelConfig, ConfigSignature, ConfigUpdate, HeaderType, Role,
    Status as Code,
};
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_proto::policy::{self, build, PolicyError};

use crate::chaincode::builtin;
use crate::transport::Transport;

/// Why a lifecycle step failed.
#[derive(Debug, Error)]
pub enum LifecycleError {
    /// The definition cannot apply to the channel as it is (no such chaincode to retire,
    /// an unknown org or built-in, a broken lifecycle rule).
    #[error("{0}")]
    Definition(String),
    /// The approver is not an org's admin.
    #[error("{subject} of {org} is a {role}: approvals are signed by an org's admin")]
    NotAnAdmin {
        /// The approver's name.
        subject: String,
        /// Its org.
        org: String,
        /// Its role.
        role: String,
    },
    /// The orderer could not be reached or answered something unusable.
    #[error("orderer {addr}: {reason}")]
    Orderer {
        /// The orderer.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The orderer refused the update (status and its reason).
    #[error("the orderer refused the update: {status}: {info}")]
    Refused {
        /// The status name (BAD_REQUEST, FORBIDDEN, …).
        status: String,
        /// The orderer's reason.
        info: String,
    },
}

/// A chaincode definition as an org approves it: what to define, upgrade or retire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    name: String,
    version: String,
    endorse: Option<u32>,
    endorse_orgs: Vec<String>,
    runtime: Option<String>,
    retire: bool,
}

impl Definition {
    /// `name` at `version`: defined if new, upgraded otherwise; endorsed by a majority of
    /// the channel's orgs' peers and on the current runtime unless said otherwise.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_string(),
            version: version.to_string(),
            endorse: None,
            endorse_orgs: Vec::new(),
            runtime: None,
            retire: false,
        }
    }

    /// Retiring `name`: no longer invoked; its sequence goes on if defined again.
    pub fn retire(name: &str) -> Self {
        Self {
            retire: true,
            ..Self::new(name, "")
        }
    }

    /// Endorsed by the peers of `n` distinct orgs among `orgs` (empty: every org of the
    /// channel).
    pub fn endorsed_by(mut self, n: u32, orgs: &[&str]) -> Self {
        self.endorse = Some(n);
        self.endorse_orgs = orgs.iter().map(|o| o.to_string()).collect();
        self
    }

    /// The runtime peers use unless they bind the chaincode themselves: `builtin:<name>`,
    /// `external:<host:port>`, or empty for none.
    pub fn runtime(mut self, runtime: &str) -> Self {
        self.runtime = Some(runtime.to_string());
        self
    }

    /// The chaincode's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `ChaincodeDefinition` this stands for against `current`: the next sequence, the
    /// policy and runtime spelled out.
    pub fn resolve(&self, current: &ChannelConfig) -> Result<ChaincodeDefinition, LifecycleError> {
        let bad = |why: String| LifecycleError::Definition(why);
        let existing = current.chaincodes.iter().find(|d| d.name == self.name);
        let next = existing.map_or(1, |d| effective_sequence(d) + 1);
        if self.retire {
            let old = existing.filter(|d| !d.retired).ok_or_else(|| {
                bad(format!(
                    "channel {} has no chaincode {:?} in force to retire",
                    current.channel_id, self.name
                ))
            })?;
            return Ok(ChaincodeDefinition {
                sequence: next,
                retired: true,
                ..old.clone()
            });
        }
        let orgs: Vec<String> = if self.endorse_orgs.is_empty() {
            current.orgs.iter().map(|o| o.name.clone()).collect()
        } else {
            self.endorse_orgs.clone()
        };
        let n = self.endorse.unwrap_or(orgs.len() as u32 / 2 + 1);
        let principals: Vec<(&str, Role)> = orgs.iter().map(|o| (o.as_str(), Role::Peer)).collect();
        let runtime = match (&self.runtime, existing) {
            (Some(r), _) => r.clone(),
            (None, Some(old)) => old.runtime.clone(),
            (None, None) => String::new(),
        };
        if let Some(name) = runtime.strip_prefix("builtin:") {
            if builtin::by_name(name).is_none() {
                return Err(bad(format!(
                    "runtime {runtime}: no peer can run it: there is no built-in {name:?} \
                     (built-ins: {})",
                    builtin::NAMES.join(", ")
                )));
            }
        }
        Ok(ChaincodeDefinition {
            name: self.name.clone(),
            version: self.version.clone(),
            endorsement_policy: Some(build::n_out_of(n, &principals)),
            runtime,
            sequence: next,
            retired: false,
        })
    }

    /// The next configuration: `current` with this definition in place of its namesake
    /// (or added), checked as the orderer and the peers will check it.
    pub fn propose(&self, current: &ChannelConfig) -> Result<ChannelConfig, LifecycleError> {
        let def = self.resolve(current)?;
        let mut proposed = current.clone();
        proposed.sequence += 1;
        match proposed.chaincodes.iter_mut().find(|d| d.name == def.name) {
            Some(slot) => *slot = def,
            None => proposed.chaincodes.push(def),
        }
        ordo_proto::config::validate(&proposed)
            .map_err(|e| LifecycleError::Definition(format!("the proposed definition: {e}")))?;
        config_change::check_definitions(current, &proposed)
            .map_err(|e| LifecycleError::Definition(format!("the proposed definition: {e}")))?;
        Ok(proposed)
    }
}

/// The exact bytes of a proposed configuration: what approvers sign and the orderer
/// takes.
pub fn encode(proposed: &ChannelConfig) -> Bytes {
    proposed.encode_to_vec().into()
}

/// `admin`'s approval of the proposed configuration bytes; refused unless `admin` is an
/// org's admin (no other role counts).
pub fn approve(admin: &Identity, proposed: &[u8]) -> Result<ConfigSignature, LifecycleError> {
    if admin.role() != Role::Admin {
        return Err(LifecycleError::NotAnAdmin {
            subject: admin.subject().to_string(),
            org: admin.org().to_string(),
            role: admin.role().as_str_name().to_string(),
        });
    }
    Ok(ConfigSignature {
        signer: admin.cert_bytes().clone(),
        signature: Bytes::copy_from_slice(&admin.sign(proposed)),
    })
}

/// Whose approvals count, judged against the configuration in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvals {
    /// Orgs whose admin approved (valid certificate, signature over the exact bytes).
    pub orgs: Vec<String>,
    /// The policy the change needs: `Lifecycle`, or `Admins` for anything more.
    pub policy: &'static str,
    /// Whether the approvals meet it.
    pub met: Result<(), PolicyError>,
}

/// The approvals of `signatures` over `proposed_bytes` (encoding `proposed`), judged
/// against `current` at `now_secs`.
pub fn approvals(
    current: &ChannelConfig,
    proposed: &ChannelConfig,
    proposed_bytes: &[u8],
    signatures: &[ConfigSignature],
    now_secs: u64,
) -> Approvals {
    let names: Vec<String> = current.orgs.iter().map(|o| o.name.clone()).collect();
    let signers = match Msp::from_config(current) {
        Ok(msp) => msp.verified_signers(
            proposed_bytes,
            signatures
                .iter()
                .map(|s| (s.signer.as_ref(), s.signature.as_ref())),
            now_secs,
        ),
        Err(_) => Vec::new(),
    };
    let mut orgs: Vec<String> = signers
        .iter()
        .filter(|s| s.role == Role::Admin)
        .map(|s| s.org.to_string())
        .collect();
    orgs.sort();
    orgs.dedup();
    let (policy, met) = match config_change::authorizing_policy(current, proposed) {
        Ok((name, p)) => (name, policy::evaluate(p, &signers, &names)),
        Err(e) => ("Admins", Err(PolicyError::Malformed(e))),
    };
    Approvals { orgs, policy, met }
}

/// One line for a definition: name, version, sequence, policy, runtime.
pub fn describe(d: &ChaincodeDefinition) -> String {
    format!(
        "{} version {} sequence {}{}: endorsed by {}; runtime {}",
        d.name,
        d.version,
        effective_sequence(d),
        if d.retired { " (retired)" } else { "" },
        d.endorsement_policy
            .as_ref()
            .map(policy::describe)
            .unwrap_or_else(|| "nobody".into()),
        if d.runtime.is_empty() {
            "bound by each peer"
        } else {
            &d.runtime
        }
    )
}

/// The configuration in force on `channel`, read from the orderer at `addr` as `reader`
/// (any channel member), with the config block that holds it.
pub async fn config_in_force_with_block(
    addr: &str,
    transport: &Transport,
    reader: &Identity,
    channel: &str,
) -> Result<(ChannelConfig, Block), LifecycleError> {
    let newest = one_block(addr, transport, reader, channel, None).await?;
    let last_config = newest.metadata.as_ref().map_or(0, |m| m.last_config);
    let block = if ordo_proto::block::number(&newest) == last_config {
        newest
    } else {
        one_block(addr, transport, reader, channel, Some(last_config)).await?
    };
    let config =
        ordo_proto::config::config_from_block(&block).map_err(|e| LifecycleError::Orderer {
            addr: addr.to_string(),
            reason: format!("block {last_config} holds no config: {e}"),
        })?;
    Ok((config, block))
}

/// The configuration in force on `channel` (see [`config_in_force_with_block`]).
pub async fn config_in_force(
    addr: &str,
    transport: &Transport,
    reader: &Identity,
    channel: &str,
) -> Result<ChannelConfig, LifecycleError> {
    Ok(config_in_force_with_block(addr, transport, reader, channel)
        .await?
        .0)
}

/// Submits the approved configuration to the orderer at `addr` as `submitter` (any
/// channel member); returns once the orderer took it (its config block follows).
pub async fn commit(
    addr: &str,
    transport: &Transport,
    submitter: &Identity,
    channel: &str,
    proposed_bytes: Bytes,
    approvals: Vec<ConfigSignature>,
) -> Result<(), LifecycleError> {
    let update = ConfigUpdate {
        config: proposed_bytes,
        signatures: approvals,
    };
    let (env, _) = envelope::create_signed(
        submitter,
        channel,
        HeaderType::ConfigUpdate,
        update.encode_to_vec().into(),
        ordo_proto::now_ms(),
    );
    let unreachable = |reason: String| LifecycleError::Orderer {
        addr: addr.to_string(),
        reason,
    };
    let conn = crate::orderer::connect(addr, transport)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut answers = crate::orderer::broadcast_client(conn)
        .broadcast(tokio_stream::once(env))
        .await
        .map_err(|s| unreachable(s.message().to_string()))?
        .into_inner();
    let answer = answers
        .next()
        .await
        .ok_or_else(|| unreachable("Broadcast ended without an answer".into()))?
        .map_err(|s| unreachable(s.message().to_string()))?;
    if answer.status == Code::Success as i32 {
        return Ok(());
    }
    Err(LifecycleError::Refused {
        status: Code::try_from(answer.status)
            .map(|c| c.as_str_name().to_string())
            .unwrap_or_else(|_| answer.status.to_string()),
        info: answer.info,
    })
}

/// Block `number` (`None`: the newest) over Deliver.
async fn one_block(
    addr: &str,
    transport: &Transport,
    reader: &Identity,
    channel: &str,
    number: Option<u64>,
) -> Result<Block, LifecycleError> {
    let failed = |reason: String| LifecycleError::Orderer {
        addr: addr.to_string(),
        reason,
    };
    let conn = crate::orderer::connect(addr, transport)
        .await
        .map_err(|e| failed(format!("cannot connect: {e}")))?;
    let at = crate::orderer::position(number);
    let request =
        crate::orderer::seek_request(reader, channel, at, Some(at), SeekBehavior::FailIfNotReady);
    let mut stream = crate::orderer::broadcast_client(conn)
        .deliver(request)
        .await
        .map_err(|s| failed(format!("Deliver: {}", s.message())))?
        .into_inner();
    let message = stream
        .next()
        .await
        .ok_or_else(|| failed("Deliver ended without a block".into()))?
        .map_err(|s| {
            failed(format!(
                "Deliver ended with {:?} before sending a block: {}",
                s.code(),
                s.message()
            ))
        })?;
    message
        .block
        .ok_or_else(|| failed("Deliver sent a response without a block".into()))
}

#[cfg(test)]
mod tests;
