//! X.509 TLS certificates for `ordo crypto`: one TLS CA per org, and a TLS key and
//! certificate for every member.
//!
//! Why a second CA beside the org's Ed25519 identity CA: TLS stacks speak X.509, and
//! keeping transport keys apart from signing identities lets an org rotate one without the
//! other (Fabric does the same). Keys are ECDSA P-256, which every TLS stack and every gRPC
//! library accepts. Node certificates carry the node's DNS names and IP addresses as
//! subject alternative names (`--hosts`); every member certificate is usable both as a TLS
//! server and as a TLS client certificate, since nodes are both.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// File names of an org's TLS CA, under `<org>/tls/`.
pub const CA_CERT: &str = "ca.crt";
/// The TLS CA's private key (keep it offline in production).
pub const CA_KEY: &str = "ca.key";

/// Hosts every certificate of a local network is valid for.
pub const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// Writes `text` to `path` through a temporary file and a rename, so a node reloading the
/// file never reads half of it.
pub fn write_atomic(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    if private {
        write_private(&tmp, text)?;
    } else {
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn validity(params: &mut CertificateParams, now_s: i64, days: u64) -> anyhow::Result<()> {
    // An hour of slack for clocks a little behind the issuer's.
    params.not_before = OffsetDateTime::from_unix_timestamp(now_s - 3600)?;
    params.not_after = OffsetDateTime::from_unix_timestamp(now_s + days as i64 * 86_400)?;
    Ok(())
}

/// Creates an org's TLS CA in `dir` (`ca.crt`, `ca.key`); returns the certificate file.
pub fn create_ca(dir: &Path, org: &str, days: u64) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = KeyPair::generate().context("generating the TLS CA key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, format!("tlsca.{org}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now_s(), days.max(1) * 5)?;
    let cert = params.self_signed(&key).context("signing the TLS CA")?;
    let cert_path = dir.join(CA_CERT);
    write_atomic(&dir.join(CA_KEY), &key.serialize_pem(), true)?;
    write_atomic(&cert_path, &cert.pem(), false)?;
    Ok(cert_path)
}

fn now_s() -> i64 {
    (ordo_proto::now_ms() / 1000) as i64
}

/// What a member TLS certificate says.
#[derive(Debug, Clone)]
pub struct TlsSubject<'a> {
    /// The org.
    pub org: &'a str,
    /// The member's name (`peer0`, `client`, ...).
    pub name: &'a str,
    /// DNS names and IP addresses (subject alternative names).
    pub hosts: &'a [String],
    /// Validity in days.
    pub days: u64,
}

/// Issues (or re-issues) a member's TLS certificate from the org's TLS CA in `ca_dir`,
/// writing `cert` and `key` atomically. `reuse_key`: keep the key already in `key`.
pub fn issue(
    ca_dir: &Path,
    subject: &TlsSubject<'_>,
    cert: &Path,
    key: &Path,
    reuse_key: bool,
) -> anyhow::Result<()> {
    let ca_key_pem = std::fs::read_to_string(ca_dir.join(CA_KEY))
        .with_context(|| format!("reading the TLS CA key in {}", ca_dir.display()))?;
    let ca_cert_pem = std::fs::read_to_string(ca_dir.join(CA_CERT))
        .with_context(|| format!("reading the TLS CA certificate in {}", ca_dir.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("parsing the TLS CA key")?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).context("parsing the TLS CA certificate")?;
    let member_key = if reuse_key {
        let pem = std::fs::read_to_string(key)
            .with_context(|| format!("reading {} (--same-key)", key.display()))?;
        KeyPair::from_pem(&pem).with_context(|| format!("parsing {}", key.display()))?
    } else {
        KeyPair::generate().context("generating a TLS key")?
    };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, subject.org);
    dn.push(
        DnType::CommonName,
        format!("{}.{}", subject.name, subject.org),
    );
    params.distinguished_name = dn;
    let mut sans = Vec::new();
    for h in subject.hosts {
        let h = h.trim();
        if h.is_empty() {
            continue;
        }
        sans.push(match h.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                h.to_string()
                    .try_into()
                    .with_context(|| format!("--hosts: {h:?} is not a DNS name or IP address"))?,
            ),
        });
    }
    if sans.is_empty() {
        bail!("a TLS certificate needs at least one host (--hosts)");
    }
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now_s(), subject.days.max(1))?;
    let signed = params
        .signed_by(&member_key, &issuer)
        .context("signing the TLS certificate")?;
    if !reuse_key {
        write_atomic(key, &member_key.serialize_pem(), true)?;
    }
    write_atomic(cert, &signed.pem(), false)?;
    Ok(())
}

/// The DER bytes of the first certificate in a PEM file (for channel configs).
pub fn cert_der(path: &Path) -> anyhow::Result<Vec<u8>> {
    let certs = ordo_sdk::tls::read_certs(path)?;
    Ok(certs
        .into_iter()
        .next()
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default())
}
