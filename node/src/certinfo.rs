//! What an X.509 certificate says about itself, for log lines, metrics and expiry warnings.
//!
//! With a 365-day default validity, every network would stop on day 366 without this:
//! nodes report each of their own certificates' expiry as a metric, warn in the log from
//! [`EXPIRY_WARNING_S`] ahead, and refuse to pretend to be healthy once one has expired.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// How long before a certificate expires a node starts warning: 30 days.
pub const EXPIRY_WARNING_S: u64 = 30 * 86_400;

/// The parts of a certificate an operator needs to recognise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject common name (or the whole subject when it has none).
    pub subject: String,
    /// Issuer common name.
    pub issuer: String,
    /// Valid from, Unix seconds.
    pub not_before: i64,
    /// Valid until, Unix seconds.
    pub not_after: i64,
    /// DNS names and IP addresses the certificate is valid for.
    pub hosts: Vec<String>,
}

/// Whether `presented` is the same certificate as `pinned`, or a renewal of it: the same
/// subject issued by the same CA (their distinguished names compared byte for byte).
///
/// Why not the exact bytes only: a node that lags behind a config update still pins a
/// consenter's old certificate, and if it refused the renewed one it could never receive
/// the config block that pins it — a rotation during a fault would wedge the channel.
/// The subject names the consenter (another node of the same org has another subject);
/// a retired key is refused through the channel's revocation list, not through the pin.
/// The caller has already verified the chain, the validity and revocation in the TLS
/// handshake.
pub fn same_or_renewed(pinned: &[u8], presented: &[u8]) -> bool {
    if pinned == presented {
        return true;
    }
    let (Ok((_, a)), Ok((_, b))) = (
        X509Certificate::from_der(pinned),
        X509Certificate::from_der(presented),
    ) else {
        return false;
    };
    a.subject().as_raw() == b.subject().as_raw() && a.issuer().as_raw() == b.issuer().as_raw()
}

fn common_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok().map(str::to_string))
        .unwrap_or_else(|| name.to_string())
}

impl CertSummary {
    /// Parses a DER certificate; `None` when it is not one.
    pub fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut hosts = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => hosts.push(d.to_string()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => hosts
                            .push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
                        16 => {
                            let mut b = [0u8; 16];
                            b.copy_from_slice(ip);
                            hosts.push(std::net::Ipv6Addr::from(b).to_string());
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        Some(Self {
            subject: common_name(cert.subject()),
            issuer: common_name(cert.issuer()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            hosts,
        })
    }

    /// Seconds until expiry at `now_s` (negative once expired).
    pub fn remaining_s(&self, now_s: i64) -> i64 {
        self.not_after - now_s
    }

    /// What to say about this certificate's validity at `now_s`, if anything.
    pub fn validity_problem(&self, now_s: i64) -> Option<Validity> {
        if now_s < self.not_before {
            Some(Validity::NotYetValid)
        } else if now_s > self.not_after {
            Some(Validity::Expired)
        } else if self.remaining_s(now_s) < EXPIRY_WARNING_S as i64 {
            Some(Validity::ExpiresSoon)
        } else {
            None
        }
    }
}

/// A problem with a node's own certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid now, but expires within [`EXPIRY_WARNING_S`].
    ExpiresSoon,
    /// Past its `not_after`: peers refuse it.
    Expired,
    /// Before its `not_before`: peers refuse it.
    NotYetValid,
}

/// Seconds since the Unix epoch, for validity checks.
pub fn now_s() -> i64 {
    (ordo_proto::now_ms() / 1000) as i64
}

/// A Unix time as RFC 3339 UTC text (for log lines).
pub fn rfc3339(unix_s: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(unix_s)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix_s.to_string())
}

/// The validity window of a node's Ed25519 identity certificate (Unix seconds), for the
/// same warnings and metrics as its TLS certificate.
pub fn identity_window(identity: &ordo_proto::identity::Identity) -> Option<(i64, i64)> {
    let (_, body) = ordo_proto::cert::decode(identity.cert_bytes()).ok()?;
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Some((clamp(body.not_before), clamp(body.not_after)))
}

/// What is wrong with a validity window at `now_s`, if anything.
pub fn window_problem(not_before: i64, not_after: i64, now_s: i64) -> Option<Validity> {
    CertSummary {
        subject: String::new(),
        issuer: String::new(),
        not_before,
        not_after,
        hosts: Vec::new(),
    }
    .validity_problem(now_s)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// `certificate_not_after_seconds{kind}`: when each of the node's own certificates
/// expires (Unix seconds), so an alert can fire weeks ahead (`… - time() < 30 * 86400`).
#[derive(Debug, Default)]
pub struct CertMetrics {
    not_after: prometheus_client::metrics::family::Family<
        KindLabel,
        prometheus_client::metrics::gauge::Gauge,
    >,
}

impl CertMetrics {
    /// Fresh metrics.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    /// Registers them under the node's prefix.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "certificate_not_after_seconds",
            "When each of this node's own certificates expires (Unix time), by kind",
            self.not_after.clone(),
        );
    }

    /// Records the expiry of the node's own identity and TLS certificates (the TLS one as
    /// currently loaded, so a renewal shows at the next call).
    pub fn record_own(
        &self,
        identity: &ordo_proto::identity::Identity,
        tls: Option<&crate::NodeTls>,
    ) {
        if let Some((_, not_after)) = identity_window(identity) {
            self.set("identity", not_after);
        }
        if let Some(c) = tls.and_then(|t| t.own_cert()) {
            self.set("tls", c.not_after);
        }
    }

    /// Records the expiry of the `kind` certificate (`identity`, `tls`).
    pub fn set(&self, kind: &str, not_after: i64) {
        self.not_after
            .get_or_create(&KindLabel { kind: kind.into() })
            .set(not_after);
    }
}

/// Problems with a node's own certificates at `now_s`, as readiness lines: expired or
/// not yet valid certificates make the node not ready (its peers refuse it); one that
/// expires soon is only logged and shown in metrics.
pub fn own_cert_problems(
    identity: &ordo_proto::identity::Identity,
    tls: Option<&crate::tls::NodeTls>,
    now_s: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |kind: &str, not_before: i64, not_after: i64| match window_problem(
        not_before, not_after, now_s,
    ) {
        Some(Validity::Expired) => out.push(format!(
            "this node's {kind} certificate expired at {}",
            rfc3339(not_after)
        )),
        Some(Validity::NotYetValid) => out.push(format!(
            "this node's {kind} certificate is not valid before {}",
            rfc3339(not_before)
        )),
        _ => {}
    };
    if let Some((nb, na)) = identity_window(identity) {
        check("identity", nb, na);
    }
    if let Some(c) = tls.and_then(|t| t.own_cert()) {
        check("TLS", c.not_before, c.not_after);
    }
    out
}

/// Logs at start what is wrong with the node's identity certificate: an orderer whose
/// certificate expired signs blocks nobody accepts, so it must say so loudly.
pub fn log_identity_validity(identity: &ordo_proto::identity::Identity) {
    let Some((nb, na)) = identity_window(identity) else {
        return;
    };
    match window_problem(nb, na, now_s()) {
        Some(Validity::Expired) => tracing::error!(
            subject = %identity.subject(), not_after = %rfc3339(na),
            "this node's identity certificate has EXPIRED: its signatures are refused; renew it \
             (ordo crypto renew) and restart"
        ),
        Some(Validity::NotYetValid) => tracing::error!(
            subject = %identity.subject(), not_before = %rfc3339(nb),
            "this node's identity certificate is not valid yet (check the clocks)"
        ),
        Some(Validity::ExpiresSoon) => tracing::warn!(
            subject = %identity.subject(), not_after = %rfc3339(na),
            days_left = (na - now_s()) / 86_400,
            "this node's identity certificate expires soon: renew it (ordo crypto renew)"
        ),
        None => {}
    }
}
