//! Org bundles: the public material one org hands to the others so that a channel can
//! name it, with no shared filesystem and no private key leaving the org.
//!
//! Each org runs `ordo crypto init --orgs <Org>` on its own machine and then
//! `ordo crypto export`, which writes one self-contained JSON file (no file paths, keys or
//! certificates inline):
//!
//! ```json
//! {
//!   "format": "ordo-org-bundle/1",
//!   "org": "BankA",
//!   "ca_public_key": "<hex Ed25519 key of the identity CA>",
//!   "tls_ca_cert": "-----BEGIN CERTIFICATE-----\n...",
//!   "orderers": [{ "name": "orderer", "endpoint": "orderer.banka.example:7050",
//!                  "identity_cert": "<hex>", "tls_cert": "-----BEGIN CERTIFICATE-----..." }],
//!   "peers":    [{ "name": "peer", "endpoint": "peer.banka.example:7051", ... }]
//! }
//! ```
//!
//! What a channel config needs of the org is its identity CA key and TLS CA certificate
//! (into `orgs`) and, for each of its orderers that orders the channel, the identity and TLS
//! certificates and the endpoint (a consenter entry). Peers are listed so that other orgs
//! can find the org's endorsers.
//!
//! Every reader verifies a bundle before using it ([`load`]): the certificates parse, each
//! identity certificate is issued by the bundle's CA key for the bundle's org in the role
//! of its section, each TLS certificate chains to the bundle's TLS CA, endpoints are
//! `host:port`, and nothing in it is or looks like a private key. A bundle proves only that
//! it is consistent, not who sent it: compare its fingerprint ([`VerifiedBundle::fingerprint`],
//! printed by `export` and `verify-bundle`) with the sending org over another channel, the
//! way Fabric orgs compare MSP definitions.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};

use ordo_proto::cert::Msp;
use ordo_proto::pb::common::{Consenter, Organization, Role};

use crate::cmd::crypto::{Manifest, OrgEntry};

/// The `format` of bundles this build writes and reads.
pub const BUNDLE_FORMAT: &str = "ordo-org-bundle/1";

/// Largest bundle file read: a bundle of a few dozen nodes is some tens of KiB.
pub const MAX_BUNDLE_BYTES: u64 = 1 << 20;

/// Most orderers or peers one bundle may list.
pub const MAX_BUNDLE_NODES: usize = 64;

/// The bundle file as written (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrgBundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The org's name, as its certificates name it.
    pub org: String,
    /// Hex Ed25519 public key of the org's identity CA.
    pub ca_public_key: String,
    /// PEM certificate of the org's TLS CA.
    pub tls_ca_cert: String,
    /// The org's orderers.
    #[serde(default)]
    pub orderers: Vec<BundleNode>,
    /// The org's peers.
    #[serde(default)]
    pub peers: Vec<BundleNode>,
}

/// One node of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BundleNode {
    /// The member name in the org's crypto directory (`orderer`, `orderer2`, `peer`, ...).
    pub name: String,
    /// `host:port` other nodes and clients reach it at; absent when not yet known (an
    /// orderer without an endpoint is not made a consenter of a genesis block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Hex encoded identity certificate.
    pub identity_cert: String,
    /// PEM TLS certificate.
    pub tls_cert: String,
}

/// A bundle whose every check passed, with its material decoded.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The org's name.
    pub org: String,
    /// The identity CA's public key (32 bytes).
    pub ca_public_key: Vec<u8>,
    /// DER certificate of the TLS CA.
    pub tls_ca_der: Vec<u8>,
    /// The same certificate as PEM text.
    pub tls_ca_pem: String,
    /// The org's orderers.
    pub orderers: Vec<VerifiedNode>,
    /// The org's peers.
    pub peers: Vec<VerifiedNode>,
}

/// A node of a verified bundle.
#[derive(Debug, Clone)]
pub struct VerifiedNode {
    /// Member name.
    pub name: String,
    /// `host:port`, when the bundle gives one.
    pub endpoint: Option<String>,
    /// Encoded identity certificate, issued by the bundle's CA.
    pub identity_cert: Vec<u8>,
    /// DER TLS certificate, chaining to the bundle's TLS CA.
    pub tls_cert_der: Vec<u8>,
}

impl VerifiedBundle {
    /// The org's entry in a channel config: its identity CA and TLS CA.
    pub fn organization(&self) -> Organization {
        Organization {
            name: self.org.clone(),
            root_public_keys: vec![self.ca_public_key.clone().into()],
            tls_root_certs: vec![self.tls_ca_der.clone().into()],
            tls_revoked_cert_hashes: Vec::new(),
            // Every peer the bundle gives an endpoint for is an anchor: the channel's
            // other peers find it, and through it each other (discovery).
            anchor_peers: self
                .peers
                .iter()
                .filter_map(|p| p.endpoint.clone())
                .take(ordo_proto::config::MAX_ANCHOR_PEERS)
                .collect(),
        }
    }

    /// The consenter id a bundle's orderer gets by default: `<member>.<org>`, unique in a
    /// channel because org names are.
    pub fn consenter_id(&self, node: &VerifiedNode) -> String {
        format!("{}.{}", node.name, self.org)
    }

    /// The orderer `member` (default: the only one, or the one named `orderer`).
    pub fn orderer(&self, member: Option<&str>) -> anyhow::Result<&VerifiedNode> {
        let names = || {
            self.orderers
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match member {
            Some(m) => self.orderers.iter().find(|o| o.name == m).with_context(|| {
                format!(
                    "the bundle of {} has no orderer {m:?} (it has: {})",
                    self.org,
                    names()
                )
            }),
            None => match self.orderers.as_slice() {
                [] => bail!("the bundle of {} lists no orderer", self.org),
                [only] => Ok(only),
                more => more.iter().find(|o| o.name == "orderer").with_context(|| {
                    format!(
                        "the bundle of {} lists several orderers ({}); say which with --member",
                        self.org,
                        names()
                    )
                }),
            },
        }
    }

    /// A consenter entry for `node` with `id` at `endpoint`.
    pub fn consenter(&self, node: &VerifiedNode, id: &str, endpoint: &str) -> Consenter {
        Consenter {
            id: id.to_string(),
            endpoint: endpoint.to_string(),
            certificate: node.identity_cert.clone().into(),
            tls_cert: node.tls_cert_der.clone().into(),
        }
    }

    /// A short fingerprint of what the bundle asks others to trust: the first 16 bytes
    /// (hex) of SHA-256 over the CA key and the TLS CA certificate. Orgs compare it out of
    /// band before using a bundle they received.
    pub fn fingerprint(&self) -> String {
        let mut material = self.ca_public_key.clone();
        material.extend_from_slice(&self.tls_ca_der);
        let digest = ordo_proto::hash::sha256(&material);
        let hex = hex::encode(&digest[..16]);
        hex.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Reads and verifies a bundle file.
pub fn load(path: &Path) -> anyhow::Result<VerifiedBundle> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > MAX_BUNDLE_BYTES {
        bail!(
            "{}: {} bytes is more than an org bundle may hold ({MAX_BUNDLE_BYTES})",
            path.display(),
            meta.len()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, ordo_proto::now_ms() / 1000)
        .with_context(|| format!("org bundle {}", path.display()))
}

/// Field names a bundle may hold; any other name with "key" or "private" in it is taken
/// for a private key that was pasted in.
const KNOWN_FIELDS: [&str; 10] = [
    "format",
    "org",
    "ca_public_key",
    "tls_ca_cert",
    "orderers",
    "peers",
    "name",
    "endpoint",
    "identity_cert",
    "tls_cert",
];

/// Refuses anything that is, or is named like, private key material.
fn refuse_private_keys(text: &str) -> anyhow::Result<()> {
    if text.contains("PRIVATE KEY") {
        bail!(
            "it carries a private key (a PEM \"PRIVATE KEY\" block): a bundle holds public \
             material only; treat that key as disclosed and replace it"
        );
    }
    fn walk(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                if !KNOWN_FIELDS.contains(&k.as_str())
                    && (lower.contains("key") || lower.contains("private") || lower == "seed")
                {
                    Some(k.clone())
                } else {
                    walk(v)
                }
            }),
            serde_json::Value::Array(items) => items.iter().find_map(walk),
            _ => None,
        }
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if let Some(field) = walk(&value) {
            bail!(
                "it carries a private key (field {field:?}): a bundle holds public material \
                 only; treat that key as disclosed and replace it"
            );
        }
    }
    Ok(())
}

/// Parses and verifies a bundle's text at `now_secs`.
pub fn parse(text: &str, now_secs: u64) -> anyhow::Result<VerifiedBundle> {
    refuse_private_keys(text)?;
    let b: OrgBundle = serde_json::from_str(text)
        .context("not an org bundle (`ordo crypto export` writes one)")?;
    verify(&b, now_secs)
}

/// The DER bytes of the one PEM certificate in `pem`.
fn one_cert(pem: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{what}: not a PEM certificate: {e}"))?;
    match certs.as_slice() {
        [one] => Ok(one.as_ref().to_vec()),
        [] => bail!("{what}: holds no PEM certificate"),
        _ => bail!("{what}: holds {} certificates, one expected", certs.len()),
    }
}

/// Checks that the DER certificate `leaf` chains to `ca` and is valid at `now_secs`.
fn chains_to(ca: &[u8], leaf: &[u8], now_secs: u64) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.to_vec()))
        .map_err(|e| format!("the TLS CA certificate is not usable as a CA: {e}"))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        ordo_sdk::tls::provider(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(
            &CertificateDer::from(leaf.to_vec()),
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now_secs)),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `HOST:PORT` with a non-empty host and a port above 0.
pub(crate) fn valid_endpoint(endpoint: &str) -> bool {
    ordo_proto::config::check_endpoint(endpoint).is_ok()
}

/// Every check of the module docs.
pub fn verify(b: &OrgBundle, now_secs: u64) -> anyhow::Result<VerifiedBundle> {
    if b.format != BUNDLE_FORMAT {
        bail!(
            "format {:?} is not {BUNDLE_FORMAT:?} (made by another version of ordo?)",
            b.format
        );
    }
    if !crate::cmd::crypto::valid_name(&b.org) {
        bail!(
            "org name {:?} must be 1-64 characters of letters, digits, '-' and '_'",
            b.org
        );
    }
    let ca_public_key = hex::decode(b.ca_public_key.trim())
        .ok()
        .filter(|k| ordo_proto::crypto::parse_public_key(k).is_ok())
        .with_context(|| format!("ca_public_key of {} is not a hex Ed25519 public key", b.org))?;
    let tls_ca_der = one_cert(&b.tls_ca_cert, "tls_ca_cert")?;
    if ordo_node::certinfo::CertSummary::parse(&tls_ca_der).is_none() {
        bail!("tls_ca_cert of {} is not an X.509 certificate", b.org);
    }
    if b.orderers.len() > MAX_BUNDLE_NODES || b.peers.len() > MAX_BUNDLE_NODES {
        bail!("more than {MAX_BUNDLE_NODES} orderers or peers in one bundle");
    }
    let msp =
        Msp::new([(b.org.clone(), vec![ca_public_key.clone()])]).context("the CA public key")?;
    let mut names = std::collections::HashSet::new();
    let mut check = |nodes: &[BundleNode], role: Role| -> anyhow::Result<Vec<VerifiedNode>> {
        let section = if role == Role::Orderer {
            "orderer"
        } else {
            "peer"
        };
        let mut out = Vec::new();
        for n in nodes {
            if !crate::cmd::crypto::valid_name(&n.name) || !names.insert(n.name.clone()) {
                bail!("{section} name {:?} is invalid or repeated", n.name);
            }
            let what = format!("{section} {} of {}", n.name, b.org);
            if let Some(e) = &n.endpoint {
                if !valid_endpoint(e) {
                    bail!("{what}: endpoint {e:?} is not host:port");
                }
            }
            let identity_cert = hex::decode(n.identity_cert.trim())
                .with_context(|| format!("{what}: identity_cert is not hex"))?;
            let verified = msp.verify(&identity_cert, now_secs).map_err(|e| {
                anyhow::anyhow!(
                    "{what}: identity certificate refused: {e} (it must be issued by the \
                     bundle's ca_public_key for org {})",
                    b.org
                )
            })?;
            if verified.role != role {
                bail!(
                    "{what}: identity certificate is for role {}, not {section}",
                    verified.role.as_str_name()
                );
            }
            let tls_cert_der = one_cert(&n.tls_cert, &format!("{what}: tls_cert"))?;
            chains_to(&tls_ca_der, &tls_cert_der, now_secs).map_err(|e| {
                anyhow::anyhow!(
                    "{what}: TLS certificate does not chain to the bundle's TLS CA: {e}"
                )
            })?;
            out.push(VerifiedNode {
                name: n.name.clone(),
                endpoint: n.endpoint.clone(),
                identity_cert,
                tls_cert_der,
            });
        }
        Ok(out)
    };
    let orderers = check(&b.orderers, Role::Orderer)?;
    let peers = check(&b.peers, Role::Peer)?;
    Ok(VerifiedBundle {
        org: b.org.clone(),
        ca_public_key,
        tls_ca_der,
        tls_ca_pem: b.tls_ca_cert.clone(),
        orderers,
        peers,
    })
}

/// Where an org's nodes are reached, for `export`: `[NAME=]HOST:PORT` per node.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// `--orderer-endpoint` values.
    pub orderers: Vec<String>,
    /// `--peer-endpoint` values.
    pub peers: Vec<String>,
}

/// Splits `[NAME=]HOST:PORT` and assigns it to a member of `members` (a bare endpoint goes
/// to `default` when it exists, else to the only member).
fn assign(
    specs: &[String],
    members: &[String],
    default: &str,
    flag: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for spec in specs {
        let (name, endpoint) = match spec.split_once('=') {
            Some((n, e)) => (n.to_string(), e.to_string()),
            None => {
                let name = if members.iter().any(|m| m == default) {
                    default.to_string()
                } else if let [only] = members {
                    only.clone()
                } else {
                    bail!(
                        "{flag} {spec}: say which member it is for as NAME=HOST:PORT (members: {})",
                        members.join(", ")
                    );
                };
                (name, spec.clone())
            }
        };
        if !members.contains(&name) {
            bail!(
                "{flag} {spec}: the org has no such member {name:?} (members: {})",
                members.join(", ")
            );
        }
        if !valid_endpoint(&endpoint) {
            bail!("{flag} {spec}: {endpoint:?} is not HOST:PORT");
        }
        if out.insert(name.clone(), endpoint).is_some() {
            bail!("{flag}: two endpoints for {name}");
        }
    }
    Ok(out)
}

/// The bundle of `org` in a crypto directory: its CA key, its TLS CA, and every member in
/// the orderer or peer role with its certificates (read from the files; no key is read).
pub fn export(manifest: &Manifest, org: &str, endpoints: &Endpoints) -> anyhow::Result<OrgBundle> {
    let entry: &OrgEntry = manifest.org(org)?;
    let tls_ca = entry.tls_ca.as_ref().with_context(|| {
        format!("{org} has no TLS CA (its directory was made before TLS): renew it with ordo crypto init")
    })?;
    let tls_ca_cert =
        std::fs::read_to_string(tls_ca).with_context(|| format!("reading {}", tls_ca.display()))?;
    let mut orderers = Vec::new();
    let mut peers = Vec::new();
    for (name, files) in &entry.members {
        let cert = ordo_proto::identity::read_hex(&files.cert)
            .with_context(|| format!("reading {}", files.cert.display()))?;
        let (_, body) = ordo_proto::cert::decode(&cert)
            .with_context(|| format!("decoding {}", files.cert.display()))?;
        let role = Role::try_from(body.role).unwrap_or(Role::Unspecified);
        if role != Role::Orderer && role != Role::Peer {
            continue;
        }
        let tls = files.tls.as_ref().with_context(|| {
            format!("{name} of {org} has no TLS certificate: ordo crypto renew --org {org} --name {name} --tls-only")
        })?;
        let tls_cert = std::fs::read_to_string(&tls.cert)
            .with_context(|| format!("reading {}", tls.cert.display()))?;
        let node = BundleNode {
            name: name.clone(),
            endpoint: None,
            identity_cert: hex::encode(&cert),
            tls_cert,
        };
        if role == Role::Orderer {
            orderers.push(node);
        } else {
            peers.push(node);
        }
    }
    let names = |nodes: &[BundleNode]| nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
    let orderer_endpoints = assign(
        &endpoints.orderers,
        &names(&orderers),
        "orderer",
        "--orderer-endpoint",
    )?;
    let peer_endpoints = assign(&endpoints.peers, &names(&peers), "peer", "--peer-endpoint")?;
    for o in &mut orderers {
        o.endpoint = orderer_endpoints.get(&o.name).cloned();
    }
    for p in &mut peers {
        p.endpoint = peer_endpoints.get(&p.name).cloned();
    }
    Ok(OrgBundle {
        format: BUNDLE_FORMAT.into(),
        org: org.to_string(),
        ca_public_key: entry.ca_public_key.clone(),
        tls_ca_cert,
        orderers,
        peers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_assigned_to_named_or_default_members() {
        let members = vec!["orderer".to_string(), "orderer2".to_string()];
        let got = assign(
            &["o.example:7050".into(), "orderer2=o2.example:7050".into()],
            &members,
            "orderer",
            "--orderer-endpoint",
        )
        .expect("assigned");
        assert_eq!(
            got.get("orderer").map(String::as_str),
            Some("o.example:7050")
        );
        assert_eq!(
            got.get("orderer2").map(String::as_str),
            Some("o2.example:7050")
        );
        assert!(assign(&["x=h:1".into()], &members, "orderer", "f").is_err());
        assert!(assign(&["h".into()], &members, "orderer", "f").is_err());
        assert!(assign(
            &["h:1".into(), "orderer=h:2".into()],
            &members,
            "orderer",
            "f"
        )
        .is_err());
        let only = vec!["orderer7".to_string()];
        assert!(assign(&["h:1".into()], &only, "orderer", "f").is_ok());
    }

    #[test]
    fn private_keys_are_refused_by_content_and_by_name() {
        assert!(refuse_private_keys(r#"{"org":"A","x":"-----BEGIN PRIVATE KEY-----"}"#).is_err());
        assert!(refuse_private_keys(r#"{"org":"A","orderers":[{"tls_key":"aa"}]}"#).is_err());
        assert!(refuse_private_keys(r#"{"org":"A","ca_key":"aa"}"#).is_err());
        assert!(refuse_private_keys(r#"{"org":"A","ca_public_key":"aa"}"#).is_ok());
    }
}
