//! `ordo chaincode approve|commit|list|show`: the chaincode lifecycle on a running
//! channel, each org approving from its own machine.
//!
//! A lifecycle change (define, upgrade, retire) is a config update that changes chaincode
//! definitions alone, so the channel's Lifecycle policy (by default a majority of the
//! orgs' admins) authorizes it, and the orderer and every peer check the lifecycle rules
//! (`ordo_proto::config_change::check_definitions`: the next definition sequence, no
//! removal). It travels as an update file, like any multi-org config update:
//!
//! ```text
//! BankA:  ordo chaincode approve --network net.json --org BankA --channel payments \
//!           --name bank --version 2 --endorse 3 --update bank-2.json
//! BankB:  ordo chaincode approve ... (the same definition) --update bank-2.json
//! any:    ordo chaincode commit --network net.json --update bank-2.json
//! ```
//!
//! The first approval writes the file against the configuration in force. Each later one
//! states the definition it approves and signs only if the file proposes exactly that
//! definition and nothing else, so no org signs what it did not ask for. `commit`
//! refuses to submit while the approvals do not meet the policy and says who is missing;
//! the orderer would refuse it anyway.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use ordo_proto::config_change::effective_sequence;
use ordo_proto::pb::common::{ChaincodeDefinition, Role};
use ordo_proto::policy;
use ordo_sdk::lifecycle::Definition;

use crate::client::ClientArgs;
use crate::cmd::update::{current_config, submit_update, PendingUpdate};

/// `ordo chaincode approve`
#[derive(Args)]
pub struct ApproveArgs {
    /// The orderer, and the approving org's admin (--network with --org, or --key/--cert).
    #[command(flatten)]
    pub client: ClientArgs,
    /// The channel.
    #[arg(long)]
    pub channel: String,
    /// The chaincode.
    #[arg(long)]
    pub name: String,
    /// Its version under the new definition (with --retire: ignored).
    #[arg(long, required_unless_present = "retire")]
    pub version: Option<String>,
    /// Endorsements needed: from the peers of this many distinct orgs of --endorse-orgs
    /// (default: a majority of them).
    #[arg(long)]
    pub endorse: Option<u32>,
    /// The orgs whose peers may endorse (default: every org of the channel).
    #[arg(long, value_delimiter = ',')]
    pub endorse_orgs: Vec<String>,
    /// The runtime peers use unless their config binds the chaincode ([chaincodes]):
    /// builtin:<name>, external:<host:port>, or "" for none (default: the current
    /// definition's; none for a new chaincode).
    #[arg(long)]
    pub runtime: Option<String>,
    /// Retire the chaincode instead: no longer invoked; its sequence goes on if it is
    /// defined again later.
    #[arg(long)]
    pub retire: bool,
    /// The update file: written with this approval if absent, else approved (signed) if
    /// it proposes exactly this definition.
    #[arg(long)]
    pub update: PathBuf,
}

/// `ordo chaincode commit`
#[derive(Args)]
pub struct CommitArgs {
    /// The orderer and the submitter (any member of the channel).
    #[command(flatten)]
    pub client: ClientArgs,
    /// The approved update file.
    #[arg(long)]
    pub update: PathBuf,
}

/// `ordo chaincode list` and `show`
#[derive(Args)]
pub struct ListArgs {
    /// The orderer and a member of the channel.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The channel (default: the network's first).
    #[arg(long)]
    pub channel: Option<String>,
    /// Only this chaincode (`show`).
    #[arg(long)]
    pub name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ordo chaincode approve`.
pub async fn approve(a: ApproveArgs) -> anyhow::Result<()> {
    let member = a.client.member("admin")?;
    if member.identity.role() != Role::Admin {
        bail!(
            "{} of {} is a {}: approvals are signed by an org's admin",
            member.identity.subject(),
            member.identity.org(),
            member.identity.role().as_str_name()
        );
    }
    let now = ordo_proto::now_ms() / 1000;
    let mut pending = if a.update.exists() {
        PendingUpdate::load(&a.update)?
    } else {
        let addr = a.client.orderer_addr()?;
        let (current, _) = current_config(&addr, &member, &a.channel).await?;
        let proposed = definition(&a)?.propose(&current)?;
        PendingUpdate::new(&current, &proposed)
    };
    if pending.channel != a.channel {
        bail!(
            "{} is an update of channel {}, not {}",
            a.update.display(),
            pending.channel,
            a.channel
        );
    }
    let stated = definition(&a)?;
    let mine = stated.resolve(&pending.current)?;
    if stated.propose(&pending.current)? != pending.proposed {
        bail!(
            "{} proposes another change than the one you approve:\n  it proposes: {}\n  you \
             approve:   {}\nagree on one definition (or make a new update file)",
            a.update.display(),
            pending.summary().join("; "),
            describe_definition(&mine)
        );
    }
    pending.sign(&member.identity, now)?;
    pending.save(&a.update)?;
    let (_, met) = pending.policy_status(now);
    println!(
        "{} of {} approved {} on channel {} (config sequence {} -> {}); saved to {}",
        member.identity.subject(),
        member.identity.org(),
        pending.summary().join("; "),
        pending.channel,
        pending.current.sequence,
        pending.proposed.sequence,
        a.update.display()
    );
    println!("approved by: {}", approvers(&pending, now).join(", "));
    match met {
        Ok(()) => println!(
            "the {} policy is met: ordo chaincode commit --update {}",
            pending.policy_name(),
            a.update.display()
        ),
        Err(e) => println!(
            "the {} policy is not met yet ({e}): the other orgs approve the same definition \
             with `ordo chaincode approve ... --update {}`",
            pending.policy_name(),
            a.update.display()
        ),
    }
    Ok(())
}

/// `ordo chaincode commit`.
pub async fn commit(a: CommitArgs) -> anyhow::Result<()> {
    let pending = PendingUpdate::load(&a.update)?;
    let now = ordo_proto::now_ms() / 1000;
    let (_, met) = pending.policy_status(now);
    if let Err(e) = met {
        bail!(
            "not enough approvals to commit: approved by {}; the {} policy ({}) is not met: \
             {e}",
            {
                let a = approvers(&pending, now);
                if a.is_empty() {
                    "nobody".to_string()
                } else {
                    a.join(", ")
                }
            },
            pending.policy_name(),
            ordo_proto::config_change::authorizing_policy(&pending.current, &pending.proposed)
                .map(|(_, p)| policy::describe(p))
                .unwrap_or_default()
        );
    }
    let addr = a.client.orderer_addr()?;
    let member = a.client.member("admin")?;
    let block = submit_update(&addr, &member, &pending, None).await?;
    println!(
        "committed on channel {}: {} (config block {})",
        pending.channel,
        pending.summary().join("; "),
        ordo_proto::block::number(&block)
    );
    Ok(())
}

/// `ordo chaincode list` / `show`.
pub async fn list(a: ListArgs) -> anyhow::Result<()> {
    let channel = match (&a.channel, a.client.load_network()?) {
        (Some(c), _) => c.clone(),
        (None, Some(n)) => n.channel(None)?.name.clone(),
        (None, None) => bail!("--channel is required without --network"),
    };
    let member = a.client.member("client")?;
    let addr = a.client.orderer_addr()?;
    let (config, _) = current_config(&addr, &member, &channel).await?;
    let defs: Vec<&ChaincodeDefinition> = config
        .chaincodes
        .iter()
        .filter(|d| a.name.as_ref().is_none_or(|n| &d.name == n))
        .collect();
    if let (Some(name), true) = (&a.name, defs.is_empty()) {
        bail!("channel {channel} defines no chaincode {name:?}");
    }
    if a.json {
        let list: Vec<serde_json::Value> = defs
            .iter()
            .map(|d| {
                serde_json::json!({
                    "name": d.name,
                    "version": d.version,
                    "sequence": effective_sequence(d),
                    "endorsement_policy": d.endorsement_policy.as_ref().map(policy::describe),
                    "runtime": d.runtime,
                    "retired": d.retired,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "channel": channel,
                "config_sequence": config.sequence,
                "lifecycle_policy": config.lifecycle.as_ref().or(config.admins.as_ref()).map(policy::describe),
                "chaincodes": list,
            }))?
        );
        return Ok(());
    }
    println!(
        "chaincodes of channel {channel} (config sequence {}; lifecycle: {}):",
        config.sequence,
        config
            .lifecycle
            .as_ref()
            .or(config.admins.as_ref())
            .map(policy::describe)
            .unwrap_or_default()
    );
    for d in defs {
        println!("  {}", describe_definition(d));
    }
    Ok(())
}

/// The definition `a` states.
fn definition(a: &ApproveArgs) -> anyhow::Result<Definition> {
    if a.retire {
        return Ok(Definition::retire(&a.name));
    }
    let mut d = Definition::new(&a.name, a.version.as_deref().context("--version")?);
    if a.endorse.is_some() || !a.endorse_orgs.is_empty() {
        let orgs: Vec<&str> = a.endorse_orgs.iter().map(String::as_str).collect();
        d = match a.endorse {
            Some(n) => d.endorsed_by(n, &orgs),
            None => d.endorsed_by(orgs.len() as u32 / 2 + 1, &orgs),
        };
    }
    if let Some(r) = &a.runtime {
        d = d.runtime(r);
    }
    Ok(d)
}

/// One line per definition.
pub fn describe_definition(d: &ChaincodeDefinition) -> String {
    ordo_sdk::lifecycle::describe(d)
}

/// The orgs whose admins' approvals count.
fn approvers(pending: &PendingUpdate, now_secs: u64) -> Vec<String> {
    ordo_sdk::lifecycle::approvals(
        &pending.current,
        &pending.proposed,
        &pending.config_bytes,
        &pending.signatures,
        now_secs,
    )
    .orgs
}
