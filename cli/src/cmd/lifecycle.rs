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
use ordo_proto::pb::common::{ChaincodeDefinition, ChannelConfig, Role};
use ordo_proto::policy::{self, build};

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
        let proposed = with_definition(&current, definition(&a, &current)?)?;
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
    let mine = with_definition(&pending.current, definition(&a, &pending.current)?)?;
    if mine != pending.proposed {
        bail!(
            "{} proposes another change than the one you approve:\n  it proposes: {}\n  you \
             approve:   {}\nagree on one definition (or make a new update file)",
            a.update.display(),
            pending.summary().join("; "),
            describe_definition(
                mine.chaincodes
                    .iter()
                    .find(|d| d.name == a.name)
                    .context("definition")?
            )
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

/// The definition `a` states, relative to the definitions of `current`.
fn definition(a: &ApproveArgs, current: &ChannelConfig) -> anyhow::Result<ChaincodeDefinition> {
    let existing = current.chaincodes.iter().find(|d| d.name == a.name);
    let next = existing.map_or(1, |d| effective_sequence(d) + 1);
    if a.retire {
        let Some(old) = existing.filter(|d| !d.retired) else {
            bail!(
                "channel {} has no chaincode {:?} in force to retire",
                current.channel_id,
                a.name
            );
        };
        return Ok(ChaincodeDefinition {
            sequence: next,
            retired: true,
            ..old.clone()
        });
    }
    let orgs: Vec<String> = if a.endorse_orgs.is_empty() {
        current.orgs.iter().map(|o| o.name.clone()).collect()
    } else {
        a.endorse_orgs.clone()
    };
    let n = a.endorse.unwrap_or(orgs.len() as u32 / 2 + 1);
    let principals: Vec<(&str, Role)> = orgs.iter().map(|o| (o.as_str(), Role::Peer)).collect();
    let runtime = match (&a.runtime, existing) {
        (Some(r), _) => r.clone(),
        (None, Some(old)) => old.runtime.clone(),
        (None, None) => String::new(),
    };
    if let Some(name) = runtime.strip_prefix("builtin:") {
        if ordo_sdk::chaincode::builtin::by_name(name).is_none() {
            bail!(
                "--runtime {runtime}: no peer can run it: there is no built-in {name:?} \
                 (built-ins: {})",
                ordo_sdk::chaincode::builtin::NAMES.join(", ")
            );
        }
    }
    Ok(ChaincodeDefinition {
        name: a.name.clone(),
        version: a.version.clone().context("--version")?,
        endorsement_policy: Some(build::n_out_of(n, &principals)),
        runtime,
        sequence: next,
        retired: false,
    })
}

/// `current` with `def` in place of its namesake (or added), as the next configuration;
/// checked as the orderer and the peers will check it.
fn with_definition(
    current: &ChannelConfig,
    def: ChaincodeDefinition,
) -> anyhow::Result<ChannelConfig> {
    let mut proposed = current.clone();
    proposed.sequence += 1;
    match proposed.chaincodes.iter_mut().find(|d| d.name == def.name) {
        Some(slot) => *slot = def,
        None => proposed.chaincodes.push(def),
    }
    ordo_proto::config::validate(&proposed).context("the proposed definition")?;
    ordo_proto::config_change::check_definitions(current, &proposed)
        .map_err(|e| anyhow::anyhow!("the proposed definition: {e}"))?;
    Ok(proposed)
}

/// One line per definition.
pub fn describe_definition(d: &ChaincodeDefinition) -> String {
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

/// The orgs whose admins' approvals count.
fn approvers(pending: &PendingUpdate, now_secs: u64) -> Vec<String> {
    let (signers, _) = pending.policy_status(now_secs);
    let mut orgs: Vec<String> = signers
        .iter()
        .filter(|s| s.role == Role::Admin)
        .map(|s| s.org.to_string())
        .collect();
    orgs.sort();
    orgs.dedup();
    orgs
}
