//! `ordo crypto init`: a consortium's CA keys and member certificates.
//!
//! Layout of `--out DIR`:
//! ```text
//! DIR/crypto.json                 manifest: orgs in order, their CA key and member files
//! DIR/<Org>/ca.key, ca.pub        the org's root key (keep ca.key offline in production)
//! DIR/<Org>/<member>.key, .cert   member = admin, client, orderer, peer
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use ordo_proto::crypto::generate_signing_key;
use ordo_proto::identity::{self, Enrollment, Identity};
use ordo_proto::pb::common::Role;

/// The members `crypto init` creates for every org, with their roles.
pub const MEMBERS: [(&str, Role); 4] = [
    ("admin", Role::Admin),
    ("client", Role::Client),
    ("orderer", Role::Orderer),
    ("peer", Role::Peer),
];

/// `ordo crypto ...`
#[derive(Subcommand)]
pub enum CryptoCommand {
    /// Create each org's CA key and its admin, client, orderer and peer certificates.
    Init(InitArgs),
    /// Issue one more member certificate from an org's CA (for example a second
    /// orderer of the org: `--name orderer3 --role orderer`) and record it in crypto.json.
    Issue(IssueArgs),
}

/// `ordo crypto issue`
#[derive(Args)]
pub struct IssueArgs {
    /// The crypto directory (from `ordo crypto init`).
    #[arg(long)]
    pub crypto: PathBuf,
    /// The org whose CA issues the certificate.
    #[arg(long)]
    pub org: String,
    /// The member's name (its files are NAME.key and NAME.cert in the org's directory).
    #[arg(long)]
    pub name: String,
    /// The member's role: admin, client, orderer or peer.
    #[arg(long, value_parser = ["admin", "client", "orderer", "peer"])]
    pub role: String,
    /// Certificate validity in days.
    #[arg(long, default_value_t = 365)]
    pub validity_days: u64,
}

/// `ordo crypto init`
#[derive(Args)]
pub struct InitArgs {
    /// Comma-separated org names, e.g. BankA,BankB,BankC.
    #[arg(long, value_delimiter = ',', default_value = "BankA,BankB,BankC")]
    pub orgs: Vec<String>,
    /// Output directory (created; must not already hold a consortium).
    #[arg(long)]
    pub out: PathBuf,
    /// Certificate validity in days.
    #[arg(long, default_value_t = 365)]
    pub validity_days: u64,
}

/// `DIR/crypto.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Orgs in the order given to `crypto init`.
    pub orgs: Vec<OrgEntry>,
}

/// One org in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgEntry {
    /// Org name.
    pub name: String,
    /// Hex Ed25519 public key of the org CA.
    pub ca_public_key: String,
    /// Member name → (key file, cert file), absolute paths.
    pub members: BTreeMap<String, ordo_sdk::network::IdentityFiles>,
}

impl Manifest {
    /// Reads `DIR/crypto.json`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("crypto.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("reading {} (run `ordo crypto init` first)", path.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Runs a crypto command.
pub fn run(cmd: CryptoCommand) -> anyhow::Result<()> {
    match cmd {
        CryptoCommand::Issue(a) => {
            let role = match a.role.as_str() {
                "admin" => Role::Admin,
                "client" => Role::Client,
                "peer" => Role::Peer,
                _ => Role::Orderer,
            };
            let files = issue(&a.crypto, &a.org, &a.name, role, a.validity_days)?;
            println!(
                "issued {} ({}) of {}: {}",
                a.name,
                a.role,
                a.org,
                files.cert.display()
            );
            Ok(())
        }
        CryptoCommand::Init(a) => {
            let m = init(&a.orgs, &a.out, a.validity_days)?;
            println!(
                "created keys and certificates for {} orgs in {}",
                m.orgs.len(),
                a.out.display()
            );
            for o in &m.orgs {
                println!(
                    "  {}: CA {} (members: {})",
                    o.name,
                    &o.ca_public_key[..16],
                    o.members.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            Ok(())
        }
    }
}

fn valid_org_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Creates the consortium's keys and certificates under `out`.
pub fn init(orgs: &[String], out: &Path, validity_days: u64) -> anyhow::Result<Manifest> {
    if orgs.is_empty() {
        bail!("--orgs must name at least one org");
    }
    let mut seen = std::collections::HashSet::new();
    for o in orgs {
        if !valid_org_name(o) {
            bail!("org name {o:?} must be 1-64 characters of letters, digits, '-' and '_'");
        }
        if !seen.insert(o) {
            bail!("org {o:?} named twice");
        }
    }
    if out.join("crypto.json").exists() {
        bail!(
            "{} already holds a consortium (crypto.json exists); choose another --out",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let out = out
        .canonicalize()
        .with_context(|| format!("resolving {}", out.display()))?;
    let now = ordo_proto::now_ms() / 1000;
    let mut manifest = Manifest { orgs: Vec::new() };
    for org in orgs {
        let dir = out.join(org);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = generate_signing_key();
        identity::save_signing_key(&ca, &dir.join("ca.key"))?;
        let ca_pub = hex::encode(ca.verifying_key().to_bytes());
        std::fs::write(dir.join("ca.pub"), format!("{ca_pub}\n")).context("writing ca.pub")?;
        let mut members = BTreeMap::new();
        for (serial, (member, role)) in MEMBERS.iter().enumerate() {
            let files = issue_member(
                &ca,
                &dir,
                org,
                member,
                *role,
                serial as u64 + 1,
                now,
                validity_days,
            )?;
            members.insert(member.to_string(), files);
        }
        manifest.orgs.push(OrgEntry {
            name: org.clone(),
            ca_public_key: ca_pub,
            members,
        });
    }
    let text = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(out.join("crypto.json"), text + "\n").context("writing crypto.json")?;
    Ok(manifest)
}

/// Issues `member` of `org` with `role` from the CA key `ca`, saving NAME.key / NAME.cert
/// in `dir`.
#[allow(clippy::too_many_arguments)]
fn issue_member(
    ca: &ed25519_dalek::SigningKey,
    dir: &Path,
    org: &str,
    member: &str,
    role: Role,
    serial: u64,
    now: u64,
    validity_days: u64,
) -> anyhow::Result<ordo_sdk::network::IdentityFiles> {
    let enrollment = Enrollment::new(org, role, member)
        .serial(serial)
        .valid(now.saturating_sub(3600), now + validity_days * 86_400);
    let id = Identity::enroll(ca, generate_signing_key(), &enrollment);
    let files = ordo_sdk::network::IdentityFiles {
        key: dir.join(format!("{member}.key")),
        cert: dir.join(format!("{member}.cert")),
    };
    id.save(&files.key, &files.cert)?;
    Ok(files)
}

/// `ordo crypto issue`: one more member of an existing org, recorded in crypto.json.
pub fn issue(
    crypto: &Path,
    org: &str,
    name: &str,
    role: Role,
    validity_days: u64,
) -> anyhow::Result<ordo_sdk::network::IdentityFiles> {
    if !valid_org_name(name) {
        bail!("member name {name:?} must be 1-64 characters of letters, digits, '-' and '_'");
    }
    let mut manifest = Manifest::load(crypto)?;
    let entry = manifest
        .orgs
        .iter_mut()
        .find(|o| o.name == org)
        .with_context(|| format!("org {org:?} is not in {}", crypto.display()))?;
    if entry.members.contains_key(name) {
        bail!("org {org} already has a member {name:?}");
    }
    let dir = crypto.canonicalize()?.join(org);
    let ca = identity::load_signing_key(&dir.join("ca.key"))
        .with_context(|| format!("loading the CA key of {org}"))?;
    let serial = entry.members.len() as u64 + 1;
    let files = issue_member(
        &ca,
        &dir,
        org,
        name,
        role,
        serial,
        ordo_proto::now_ms() / 1000,
        validity_days,
    )?;
    entry.members.insert(name.to_string(), files.clone());
    let text = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(crypto.join("crypto.json"), text + "\n").context("writing crypto.json")?;
    Ok(files)
}
