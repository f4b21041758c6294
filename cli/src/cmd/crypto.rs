//! `ordo crypto init`: a consortium's CA keys and member certificates.
//!
//! Layout of `--out DIR`:
//! ```text
//! DIR/crypto.json                 manifest: orgs in order, their CA key and member files
//! DIR/<Org>/ca.key, ca.pub        the org's root key (keep ca.key offline in production)
//! DIR/<Org>/<member>.key, .cert   member = admin, client, orderer, peer
//! DIR/<Org>/tls/ca.crt, ca.key    the org's TLS CA (X.509, ECDSA P-256; ca.key offline)
//! DIR/<Org>/<member>.tls.crt, .tls.key   the member's TLS certificate and key
//! ```
//!
//! Every org's `tls/ca.crt` goes into the channel configs made from this directory (so
//! nodes learn whom to trust from config blocks), and each raft consenter's
//! `orderer.tls.crt` is pinned there too.
//!
//! Across machines, each org runs `crypto init --orgs <Org>` on its own, with the host
//! names its orderer and peer are reached by (`--orderer-hosts`, `--peer-hosts`), and
//! shares only `crypto export`'s org bundle (see [`crate::cmd::bundle`]); `ca.key` and
//! `tls/ca.key` are needed again only by `crypto issue` and `renew` and can be kept
//! offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use ordo_proto::crypto::generate_signing_key;
use ordo_proto::identity::{self, Enrollment, Identity};
use ordo_proto::pb::common::Role;

mod renewal;
pub use renewal::{issue, renew};

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
    /// Also the way to give a chaincode server its TLS certificate: `--name bankcc --role
    /// client --hosts cc.banka.example` writes `bankcc.tls.crt` / `.tls.key` (usable as a
    /// TLS server certificate for the --hosts names) for `ordo chaincode serve --tls-cert`.
    Issue(IssueArgs),
    /// Write the org bundle: the public material other orgs need to name this org in a
    /// channel (CA public key, TLS CA certificate, orderers' and peers' certificates and
    /// endpoints), as one JSON file with no paths and no private keys.
    Export(ExportArgs),
    /// Verify an org bundle received from another org and print what it holds and its
    /// fingerprint (compare it with the sending org over another channel).
    VerifyBundle(VerifyBundleArgs),
    /// Re-issue a member's identity and TLS certificates before they expire (new keys,
    /// or the same with --same-key). Running nodes pick the new TLS pair up without a
    /// restart (on SIGHUP, or within seconds when the files change); a raft consenter's
    /// new TLS certificate must then be pinned with `ordo channel consenter update`.
    Renew(RenewArgs),
}

/// `ordo crypto export`
#[derive(Args)]
pub struct ExportArgs {
    /// The crypto directory (from `ordo crypto init`).
    #[arg(long)]
    pub crypto: PathBuf,
    /// The org to export.
    #[arg(long)]
    pub org: String,
    /// Where an orderer of the org is reached, as HOST:PORT (for the member `orderer`) or
    /// NAME=HOST:PORT. Repeat for several. Orderers with an endpoint become consenters of
    /// a genesis block made from the bundle.
    #[arg(long = "orderer-endpoint")]
    pub orderer_endpoints: Vec<String>,
    /// Where a peer of the org is reached, as HOST:PORT (for the member `peer`) or
    /// NAME=HOST:PORT. Repeat for several.
    #[arg(long = "peer-endpoint")]
    pub peer_endpoints: Vec<String>,
    /// Output file (conventionally `<Org>.org.json`).
    #[arg(long)]
    pub out: PathBuf,
}

/// `ordo crypto verify-bundle`
#[derive(Args)]
pub struct VerifyBundleArgs {
    /// The bundle file.
    #[arg(long)]
    pub org_bundle: PathBuf,
    /// Also write the bundle's TLS CA certificate (PEM) here, to trust the org's nodes
    /// from client commands (`--tls-ca`) before a channel config names it.
    #[arg(long)]
    pub tls_ca_out: Option<PathBuf>,
}

/// `ordo crypto renew`
#[derive(Args)]
pub struct RenewArgs {
    /// The crypto directory (from `ordo crypto init`).
    #[arg(long)]
    pub crypto: PathBuf,
    /// The member's org.
    #[arg(long)]
    pub org: String,
    /// The member's name (admin, client, orderer, peer, or one added by `crypto issue`).
    #[arg(long)]
    pub name: String,
    /// Keep the member's keys; only the certificates change.
    #[arg(long)]
    pub same_key: bool,
    /// Validity of the new certificates in days.
    #[arg(long, default_value_t = 365)]
    pub validity_days: u64,
    /// DNS names and IP addresses of the new TLS certificate (default: those of the
    /// certificate it replaces).
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Renew only the TLS certificate (the identity certificate stays).
    #[arg(long)]
    pub tls_only: bool,
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
    /// DNS names and IP addresses the member's TLS certificate is valid for (for a node or
    /// a chaincode server: every name clients dial it by).
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    pub hosts: Vec<String>,
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
    /// DNS names and IP addresses the TLS certificates are valid for (every member of
    /// every org, unless --orderer-hosts / --peer-hosts say otherwise for those two).
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    pub hosts: Vec<String>,
    /// DNS names and IP addresses of the `orderer` member's TLS certificate: every name
    /// other orderers and clients dial it by (default: --hosts).
    #[arg(long, value_delimiter = ',')]
    pub orderer_hosts: Vec<String>,
    /// DNS names and IP addresses of the `peer` member's TLS certificate (default:
    /// --hosts).
    #[arg(long, value_delimiter = ',')]
    pub peer_hosts: Vec<String>,
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
    /// The org's TLS CA certificate (PEM); absent in directories made before TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
}

impl Manifest {
    /// Every org's TLS CA certificate file, in org order.
    pub fn tls_cas(&self) -> Vec<PathBuf> {
        self.orgs.iter().filter_map(|o| o.tls_ca.clone()).collect()
    }

    /// Writes `DIR/crypto.json`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        crate::pki::write_atomic(&dir.join("crypto.json"), &(text + "\n"), false)
    }

    /// The org names, comma separated (for messages).
    pub fn org_names(&self) -> String {
        self.orgs
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The org named `name`, or an error listing the orgs there are.
    pub fn org(&self, name: &str) -> anyhow::Result<&OrgEntry> {
        self.orgs.iter().find(|o| o.name == name).with_context(|| {
            format!(
                "org {name:?} is not in the crypto directory (it has: {})",
                self.org_names()
            )
        })
    }

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
            let files = issue(&a.crypto, &a.org, &a.name, role, a.validity_days, &a.hosts)?;
            println!(
                "issued {} ({}) of {}: {}{}",
                a.name,
                a.role,
                a.org,
                files.cert.display(),
                files
                    .tls
                    .as_ref()
                    .map(|t| format!(", TLS {} (hosts {})", t.cert.display(), a.hosts.join(",")))
                    .unwrap_or_default()
            );
            Ok(())
        }
        CryptoCommand::Renew(a) => {
            let files = renew(&a)?;
            println!(
                "renewed {} of {}: {}{}",
                a.name,
                a.org,
                if a.tls_only {
                    String::new()
                } else {
                    format!("{}, ", files.cert.display())
                },
                files
                    .tls
                    .as_ref()
                    .map(|t| t.cert.display().to_string())
                    .unwrap_or_default()
            );
            Ok(())
        }
        CryptoCommand::Export(a) => {
            let manifest = Manifest::load(&a.crypto)?;
            let endpoints = crate::cmd::bundle::Endpoints {
                orderers: a.orderer_endpoints.clone(),
                peers: a.peer_endpoints.clone(),
            };
            let bundle = crate::cmd::bundle::export(&manifest, &a.org, &endpoints)?;
            // What others will check, checked here first.
            let verified = crate::cmd::bundle::verify(&bundle, ordo_proto::now_ms() / 1000)
                .context("the exported bundle does not verify")?;
            let text = serde_json::to_string_pretty(&bundle)? + "\n";
            if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            crate::pki::write_atomic(&a.out, &text, false)?;
            println!("wrote the org bundle of {} to {}", a.org, a.out.display());
            print_bundle(&verified);
            Ok(())
        }
        CryptoCommand::VerifyBundle(a) => {
            let verified = crate::cmd::bundle::load(&a.org_bundle)?;
            println!("{}: a valid org bundle", a.org_bundle.display());
            print_bundle(&verified);
            if let Some(out) = &a.tls_ca_out {
                crate::pki::write_atomic(out, &verified.tls_ca_pem, false)?;
                println!("wrote its TLS CA certificate to {}", out.display());
            }
            Ok(())
        }
        CryptoCommand::Init(a) => {
            let pick = |h: &Vec<String>| {
                if h.is_empty() {
                    a.hosts.clone()
                } else {
                    h.clone()
                }
            };
            let hosts = MemberHosts {
                default: a.hosts.clone(),
                orderer: pick(&a.orderer_hosts),
                peer: pick(&a.peer_hosts),
            };
            let m = init_with_hosts(&a.orgs, &a.out, a.validity_days, &hosts)?;
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

/// Prints what a verified bundle holds.
fn print_bundle(b: &crate::cmd::bundle::VerifiedBundle) {
    println!("  org:          {}", b.org);
    println!("  CA key:       {}", hex::encode(&b.ca_public_key));
    println!("  fingerprint:  {}", b.fingerprint());
    for (kind, nodes) in [("orderer", &b.orderers), ("peer", &b.peers)] {
        for n in nodes {
            println!(
                "  {:<14}{} at {}",
                format!("{kind}:"),
                n.name,
                n.endpoint.as_deref().unwrap_or("(no endpoint)")
            );
        }
    }
}

/// Whether `name` is usable as an org or member name: 1-64 letters, digits, '-', '_'.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The hosts each member's TLS certificate names (`crypto init`).
#[derive(Debug, Clone)]
pub struct MemberHosts {
    /// Admin, client and any member not listed below.
    pub default: Vec<String>,
    /// The `orderer` member.
    pub orderer: Vec<String>,
    /// The `peer` member.
    pub peer: Vec<String>,
}

impl MemberHosts {
    fn of(&self, member: &str) -> &[String] {
        match member {
            "orderer" => &self.orderer,
            "peer" => &self.peer,
            _ => &self.default,
        }
    }
}

/// Creates the consortium's keys and certificates under `out`, every TLS certificate
/// valid for `hosts`.
pub fn init(
    orgs: &[String],
    out: &Path,
    validity_days: u64,
    hosts: &[String],
) -> anyhow::Result<Manifest> {
    let hosts = MemberHosts {
        default: hosts.to_vec(),
        orderer: hosts.to_vec(),
        peer: hosts.to_vec(),
    };
    init_with_hosts(orgs, out, validity_days, &hosts)
}

/// [`init`] with host names per member.
pub fn init_with_hosts(
    orgs: &[String],
    out: &Path,
    validity_days: u64,
    hosts: &MemberHosts,
) -> anyhow::Result<Manifest> {
    if orgs.is_empty() {
        bail!("--orgs must name at least one org");
    }
    let mut seen = std::collections::HashSet::new();
    for o in orgs {
        if !valid_name(o) {
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
    // Every org's TLS CA first: each member trusts all of them.
    let mut tls_cas = Vec::new();
    for org in orgs {
        tls_cas.push(crate::pki::create_ca(
            &out.join(org).join("tls"),
            org,
            validity_days,
        )?);
    }
    let mut manifest = Manifest { orgs: Vec::new() };
    for (org, tls_ca) in orgs.iter().zip(&tls_cas) {
        let dir = out.join(org);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = generate_signing_key();
        identity::save_signing_key(&ca, &dir.join("ca.key"))?;
        let ca_pub = hex::encode(ca.verifying_key().to_bytes());
        std::fs::write(dir.join("ca.pub"), format!("{ca_pub}\n")).context("writing ca.pub")?;
        let mut members = BTreeMap::new();
        for (serial, (member, role)) in MEMBERS.iter().enumerate() {
            let mut files = issue_member(
                &ca,
                &dir,
                org,
                member,
                *role,
                serial as u64 + 1,
                now,
                validity_days,
            )?;
            files.tls = Some(issue_member_tls(
                &dir,
                org,
                member,
                hosts.of(member),
                validity_days,
                &tls_cas,
            )?);
            members.insert(member.to_string(), files);
        }
        manifest.orgs.push(OrgEntry {
            name: org.clone(),
            ca_public_key: ca_pub,
            members,
            tls_ca: Some(tls_ca.clone()),
        });
    }
    manifest.save(&out)?;
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
        tls: None,
    };
    id.save(&files.key, &files.cert)?;
    Ok(files)
}

/// Issues `member`'s TLS key and certificate (`member.tls.key`, `member.tls.crt` in
/// `dir`) from the org's TLS CA in `dir/tls`; the member trusts `trusted` (every org's TLS
/// CA).
fn issue_member_tls(
    dir: &Path,
    org: &str,
    member: &str,
    hosts: &[String],
    validity_days: u64,
    trusted: &[PathBuf],
) -> anyhow::Result<ordo_sdk::tls::TlsFiles> {
    let files = ordo_sdk::tls::TlsFiles {
        cert: dir.join(format!("{member}.tls.crt")),
        key: dir.join(format!("{member}.tls.key")),
        ca: trusted.to_vec(),
    };
    let subject = crate::pki::TlsSubject {
        org,
        name: member,
        hosts,
        days: validity_days,
    };
    crate::pki::issue(&dir.join("tls"), &subject, &files.cert, &files.key, false)?;
    Ok(files)
}
