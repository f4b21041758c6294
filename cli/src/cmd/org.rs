//! `ordo channel org add|remove`: a new member of the consortium joins a running channel,
//! or one leaves, with one config update (signed by a majority of the channel's current
//! orgs' admins under the default Admins policy; see [`crate::cmd::update`] for collecting
//! their signatures across machines).
//!
//! Adding an org puts its identity CA key and TLS CA certificate (from its bundle) into
//! the channel config: from that block on its members' signatures verify, its nodes'
//! TLS certificates are trusted by every node of the channel, and the channel-wide
//! policies (which name no org) include it. Then its orderer can become a consenter
//! (`ordo channel consenter add --org-bundle`) and its peer can join. Chaincode
//! endorsement policies list orgs by name: `--endorse CC` adds the org's peers to them.
//!
//! Removing an org takes it out of every policy that names it; its consenters must be
//! removed first (one at a time, as raft needs).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use ordo_proto::pb::common::{policy::Rule, ChannelConfig, Policy, Principal, Role};

use crate::cmd::update::UpdateArgs;
use ordo_proto::config_change::effective_sequence;

/// `ordo channel org ...`
#[derive(Subcommand)]
pub enum OrgCommand {
    /// Add an org to a channel from its bundle (`ordo crypto export`).
    Add(AddArgs),
    /// Remove an org from a channel (remove its consenters first).
    Remove(RemoveArgs),
    /// Set an org's anchor peers: where every peer of the channel announces itself and
    /// learns of the others (discovery). Replaces the org's list.
    Anchors(AnchorsArgs),
}

/// `ordo channel org anchors`
#[derive(Args)]
pub struct AnchorsArgs {
    #[command(flatten)]
    pub update: UpdateArgs,
    /// The org whose anchor peers change.
    #[arg(long)]
    pub org: String,
    /// An anchor peer, HOST:PORT (repeatable, or separated by commas); none: the org has
    /// no anchor peer (its peers then announce only to other orgs' anchors).
    #[arg(long = "anchor-peer", value_delimiter = ',')]
    pub anchor_peers: Vec<String>,
}

/// `ordo channel org add`
#[derive(Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub update: UpdateArgs,
    /// The new org's bundle.
    #[arg(long)]
    pub org_bundle: PathBuf,
    /// Chaincodes whose endorsement policy gains the new org's peers (its n stays);
    /// repeat or separate with commas.
    #[arg(long, value_delimiter = ',')]
    pub endorse: Vec<String>,
}

/// `ordo channel org remove`
#[derive(Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub update: UpdateArgs,
    /// The org to remove.
    #[arg(long)]
    pub org: String,
}

/// Runs an org command.
pub async fn run(cmd: OrgCommand) -> anyhow::Result<()> {
    match cmd {
        OrgCommand::Add(a) => {
            let bundle = crate::cmd::bundle::load(&a.org_bundle)?;
            let org = bundle.organization();
            let name = bundle.org.clone();
            let block =
                crate::cmd::update::propose(&a.update, |cfg| add_org(cfg, org.clone(), &a.endorse))
                    .await?;
            if let Some(block) = block {
                println!(
                    "added org {name} (fingerprint {}) to channel {} in config block {}",
                    bundle.fingerprint(),
                    a.update.channel,
                    ordo_proto::block::number(&block)
                );
            }
            Ok(())
        }
        OrgCommand::Anchors(a) => {
            let block = crate::cmd::update::propose(&a.update, |cfg| {
                set_anchor_peers(cfg, &a.org, &a.anchor_peers)
            })
            .await?;
            if let Some(block) = block {
                println!(
                    "org {} of channel {} now has anchor peers [{}] (config block {})",
                    a.org,
                    a.update.channel,
                    a.anchor_peers.join(", "),
                    ordo_proto::block::number(&block)
                );
            }
            Ok(())
        }
        OrgCommand::Remove(a) => {
            let block =
                crate::cmd::update::propose(&a.update, |cfg| remove_org(cfg, &a.org)).await?;
            if let Some(block) = block {
                println!(
                    "removed org {} from channel {} in config block {}",
                    a.org,
                    a.update.channel,
                    ordo_proto::block::number(&block)
                );
            }
            Ok(())
        }
    }
}

/// Adds `org` to `cfg`, and its peers to the endorsement policies of `endorse`.
pub fn add_org(
    cfg: &mut ChannelConfig,
    org: ordo_proto::pb::common::Organization,
    endorse: &[String],
) -> anyhow::Result<()> {
    if cfg.orgs.iter().any(|o| o.name == org.name) {
        bail!("org {} is already in channel {}", org.name, cfg.channel_id);
    }
    if let Some(other) = cfg.orgs.iter().find(|o| {
        o.root_public_keys
            .iter()
            .any(|k| org.root_public_keys.contains(k))
    }) {
        bail!(
            "org {} has the same CA key as org {} of the channel",
            org.name,
            other.name
        );
    }
    for cc in endorse {
        let def = cfg
            .chaincodes
            .iter_mut()
            .find(|c| &c.name == cc)
            .with_context(|| format!("--endorse {cc}: the channel has no such chaincode"))?;
        match def
            .endorsement_policy
            .as_mut()
            .and_then(|p| p.rule.as_mut())
        {
            Some(Rule::NOutOf(n)) => n.principals.push(Principal {
                org: org.name.clone(),
                role: Role::Peer as i32,
            }),
            _ => bail!(
                "--endorse {cc}: its endorsement policy is not an n-out-of list of orgs' peers"
            ),
        }
        // A changed definition takes the next sequence (the lifecycle rules), so
        // transactions endorsed under the old policy are recognised as superseded.
        def.sequence = effective_sequence(def) + 1;
    }
    cfg.orgs.push(org);
    Ok(())
}

/// Replaces the anchor peers of `org` in `cfg` (checked as the channel will check them).
pub fn set_anchor_peers(
    cfg: &mut ChannelConfig,
    org: &str,
    anchors: &[String],
) -> anyhow::Result<()> {
    for a in anchors {
        ordo_proto::config::check_endpoint(a)
            .map_err(|why| anyhow::anyhow!("--anchor-peer: {why}"))?;
    }
    let channel = cfg.channel_id.clone();
    let entry = cfg
        .orgs
        .iter_mut()
        .find(|o| o.name == org)
        .with_context(|| format!("org {org} is not in channel {channel}"))?;
    if entry.anchor_peers == anchors {
        bail!("org {org} has exactly these anchor peers already");
    }
    entry.anchor_peers = anchors.to_vec();
    Ok(())
}

/// Removes `org` from `cfg` and from every policy naming it.
pub fn remove_org(cfg: &mut ChannelConfig, org: &str) -> anyhow::Result<()> {
    let before = cfg.orgs.len();
    cfg.orgs.retain(|o| o.name != org);
    if cfg.orgs.len() == before {
        bail!("org {org} is not in channel {}", cfg.channel_id);
    }
    if cfg.orgs.is_empty() {
        bail!("{org} is the channel's only org");
    }
    let own: Vec<String> = cfg
        .orderer
        .iter()
        .flat_map(|o| &o.consenters)
        .filter(|c| ordo_proto::cert::decode(&c.certificate).is_ok_and(|(_, body)| body.org == org))
        .map(|c| c.id.clone())
        .collect();
    if !own.is_empty() {
        bail!(
            "{org} still runs consenters of the channel ({}): remove them first, one per \
             update (ordo channel consenter remove --id ...)",
            own.join(", ")
        );
    }
    for (name, p) in [
        ("Readers", &mut cfg.readers),
        ("Writers", &mut cfg.writers),
        ("Admins", &mut cfg.admins),
        ("BlockValidation", &mut cfg.block_validation),
    ] {
        if let Some(p) = p.as_mut() {
            strip_org(p, org).with_context(|| format!("the {name} policy"))?;
        }
    }
    for cc in &mut cfg.chaincodes {
        if let Some(p) = cc.endorsement_policy.as_mut() {
            let before = p.clone();
            strip_org(p, org)
                .with_context(|| format!("the endorsement policy of chaincode {}", cc.name))?;
            if *p != before {
                cc.sequence = effective_sequence(cc) + 1;
            }
        }
    }
    Ok(())
}

/// Takes `org` out of a policy; refuses when that would leave it naming no org (which
/// would mean "every org", or nothing at all).
fn strip_org(p: &mut Policy, org: &str) -> anyhow::Result<()> {
    let emptied = || anyhow::anyhow!("it names {org} alone; change it first");
    match p.rule.as_mut() {
        Some(Rule::AnyMember(a)) => {
            let named = !a.orgs.is_empty();
            a.orgs.retain(|o| o != org);
            if named && a.orgs.is_empty() {
                return Err(emptied());
            }
        }
        Some(Rule::Majority(m)) => {
            let named = !m.orgs.is_empty();
            m.orgs.retain(|o| o != org);
            if named && m.orgs.is_empty() {
                return Err(emptied());
            }
        }
        Some(Rule::NOutOf(n)) => {
            n.principals.retain(|p| p.org != org);
            if n.principals.is_empty() {
                return Err(emptied());
            }
            n.n = n.n.min(n.principals.len() as u32);
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_proto::pb::common::{ChaincodeDefinition, Organization};
    use ordo_proto::policy::build;

    fn org(name: &str, key: u8) -> Organization {
        Organization {
            name: name.into(),
            root_public_keys: vec![vec![key; 32].into()],
            ..Default::default()
        }
    }

    #[test]
    fn add_and_remove_keep_policies_consistent() {
        let principals = [("A", Role::Peer), ("B", Role::Peer), ("C", Role::Peer)];
        let mut cfg = ChannelConfig {
            channel_id: "ch".into(),
            orgs: vec![org("A", 1), org("B", 2), org("C", 3)],
            admins: Some(build::majority(&[], Role::Admin)),
            readers: Some(build::any_member(&["A", "C"], &[])),
            chaincodes: vec![ChaincodeDefinition {
                name: "bank".into(),
                endorsement_policy: Some(build::n_out_of(3, &principals)),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(add_org(&mut cfg, org("A", 9), &[]).is_err(), "name taken");
        assert!(add_org(&mut cfg, org("D", 1), &[]).is_err(), "CA key taken");
        assert!(add_org(&mut cfg, org("D", 4), &["nope".into()]).is_err());
        let before = cfg.clone();
        add_org(&mut cfg, org("D", 4), &["bank".into()]).expect("added");
        assert_eq!(
            cfg.chaincodes[0].sequence, 2,
            "a changed definition moves on"
        );
        ordo_proto::config_change::check_definitions(&before, &cfg).expect("lifecycle rules");
        let n_of = |cfg: &ChannelConfig| match cfg.chaincodes[0]
            .endorsement_policy
            .as_ref()
            .and_then(|p| p.rule.as_ref())
        {
            Some(Rule::NOutOf(n)) => (n.n, n.principals.len()),
            _ => panic!("n out of"),
        };
        assert_eq!(n_of(&cfg), (3, 4));
        let before = cfg.clone();
        remove_org(&mut cfg, "B").expect("removed");
        assert_eq!(cfg.chaincodes[0].sequence, 3);
        ordo_proto::config_change::check_definitions(&before, &cfg).expect("lifecycle rules");
        remove_org(&mut cfg, "D").expect("removed");
        assert_eq!(n_of(&cfg), (2, 2), "n lowered to what is left");
        assert!(remove_org(&mut cfg, "B").is_err(), "already gone");
        remove_org(&mut cfg, "C").expect("removed");
        assert!(
            remove_org(&mut cfg, "A").is_err(),
            "Readers names A alone (and A is the last org)"
        );
    }

    #[test]
    fn anchor_peers_are_replaced_checked_and_described() {
        let mut cfg = ChannelConfig {
            channel_id: "ch".into(),
            orgs: vec![org("A", 1), org("B", 2)],
            ..Default::default()
        };
        let before = cfg.clone();
        let two = ["pa0:7051".to_string(), "pa1:7051".to_string()];
        set_anchor_peers(&mut cfg, "A", &two).expect("set");
        assert_eq!(cfg.orgs[0].anchor_peers, two);
        assert!(cfg.orgs[1].anchor_peers.is_empty(), "other orgs untouched");
        let said = crate::cmd::update::describe_change(&before, &cfg);
        assert_eq!(
            said,
            ["change org A: anchor peers [] -> [pa0:7051, pa1:7051]"]
        );
        assert!(set_anchor_peers(&mut cfg, "A", &two).is_err(), "no change");
        assert!(set_anchor_peers(&mut cfg, "Z", &[]).is_err(), "no such org");
        assert!(set_anchor_peers(&mut cfg, "A", &["no-port".into()]).is_err());
        set_anchor_peers(&mut cfg, "A", &[]).expect("cleared");
        assert!(cfg.orgs[0].anchor_peers.is_empty());
    }
}
