//! Whom a node trusts on the other end of a TLS link, learned from channel configs.
//!
//! As in Fabric, every org's TLS root certificates travel in the channel config beside its
//! identity CA, so a node learns whom to trust from the config blocks of the channels it
//! serves: the trusted set is the union of the TLS roots of those channels, plus the roots
//! named in the node's own config (its own org's TLS CA, so its admins can reach it before
//! it has joined any channel). A config update that adds an org, rotates a TLS CA or revokes
//! a certificate takes effect for the next handshake, with no restart; established
//! connections are not cut.
//!
//! Revocation is by config: each org may list the SHA-256 hashes of TLS certificates it
//! revoked (`Organization.tls_revoked_cert_hashes`), and a certificate whose hash is listed
//! in any served channel is refused even though its CA is trusted.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::certinfo::CertSummary;

/// The TLS trust of one channel, as its config says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelTrust {
    /// DER TLS root certificates of every org of the channel.
    pub roots: Vec<Vec<u8>>,
    /// SHA-256 hashes of revoked TLS certificates (DER).
    pub revoked: Vec<Vec<u8>>,
}

impl ChannelTrust {
    /// The TLS trust a channel config declares.
    pub fn from_config(config: &ordo_proto::pb::common::ChannelConfig) -> Self {
        let mut trust = Self::default();
        for org in &config.orgs {
            trust
                .roots
                .extend(org.tls_root_certs.iter().map(|b| b.to_vec()));
            trust
                .revoked
                .extend(org.tls_revoked_cert_hashes.iter().map(|b| b.to_vec()));
        }
        trust
    }
}

/// The SHA-256 of a certificate's DER bytes: how config names a revoked certificate.
pub fn cert_hash(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

struct Verifiers {
    /// `None` while no root is known: every certificate is refused.
    client: Option<Arc<dyn ClientCertVerifier>>,
    server: Option<Arc<WebPkiServerVerifier>>,
    revoked: HashSet<[u8; 32]>,
    roots: usize,
}

struct State {
    local: Vec<CertificateDer<'static>>,
    channels: BTreeMap<String, ChannelTrust>,
    verifiers: Arc<Verifiers>,
}

/// The node's trusted TLS roots and revoked certificates; cheap to share.
///
/// It is both the verifier of client certificates on the node's listener and the verifier
/// of server certificates when the node connects to others (raft peers, orderers it pulls
/// blocks from, other orgs' endorsers).
pub struct TrustStore {
    state: RwLock<State>,
    require_client_cert: bool,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("roots", &self.verifiers().roots)
            .field("require_client_cert", &self.require_client_cert)
            .finish_non_exhaustive()
    }
}

fn build(
    local: &[CertificateDer<'static>],
    channels: &BTreeMap<String, ChannelTrust>,
) -> Verifiers {
    let mut store = RootCertStore::empty();
    let mut seen = HashSet::new();
    let all = local
        .iter()
        .map(|c| c.as_ref().to_vec())
        .chain(channels.values().flat_map(|t| t.roots.iter().cloned()));
    for der in all {
        if seen.insert(cert_hash(&der)) {
            // A root that does not parse is skipped: one org's broken entry must not take
            // away every other org's trust. Config validation refuses such entries.
            let _ = store.add(CertificateDer::from(der));
        }
    }
    let revoked = channels
        .values()
        .flat_map(|t| t.revoked.iter())
        .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
        .collect();
    let roots = store.len();
    if roots == 0 {
        return Verifiers {
            client: None,
            server: None,
            revoked,
            roots,
        };
    }
    let store = Arc::new(store);
    let provider = ordo_sdk::tls::provider();
    let client = WebPkiClientVerifier::builder_with_provider(store.clone(), provider.clone())
        .allow_unauthenticated()
        .build()
        .ok();
    let server = WebPkiServerVerifier::builder_with_provider(store, provider)
        .build()
        .ok();
    Verifiers {
        client,
        server,
        revoked,
        roots,
    }
}

/// A certificate refused by Ordo's own checks (after the CA chain verified).
#[derive(Debug)]
struct Revoked(String);

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for Revoked {}

impl TrustStore {
    /// A trust store holding `local` roots (PEM-decoded) and no channel yet.
    /// `require_client_cert`: whether the listener refuses clients without a certificate.
    pub fn new(local: Vec<CertificateDer<'static>>, require_client_cert: bool) -> Arc<Self> {
        let channels = BTreeMap::new();
        let verifiers = Arc::new(build(&local, &channels));
        Arc::new(Self {
            state: RwLock::new(State {
                local,
                channels,
                verifiers,
            }),
            require_client_cert,
        })
    }

    fn verifiers(&self) -> Arc<Verifiers> {
        match self.state.read() {
            Ok(s) => s.verifiers.clone(),
            Err(p) => p.into_inner().verifiers.clone(),
        }
    }

    /// Records what `channel`'s config says (on join, start and every config block).
    pub fn set_channel(&self, channel: &str, trust: ChannelTrust) {
        let mut s = match self.state.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if s.channels.get(channel) == Some(&trust) {
            return;
        }
        s.channels.insert(channel.to_string(), trust);
        s.verifiers = Arc::new(build(&s.local, &s.channels));
        info!(
            %channel,
            roots = s.verifiers.roots,
            revoked = s.verifiers.revoked.len(),
            "TLS trust updated from channel config"
        );
    }

    /// Forgets a channel the node left.
    pub fn remove_channel(&self, channel: &str) {
        let mut s = match self.state.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if s.channels.remove(channel).is_some() {
            s.verifiers = Arc::new(build(&s.local, &s.channels));
        }
    }

    /// Number of distinct trusted roots.
    pub fn root_count(&self) -> usize {
        self.verifiers().roots
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.require_client_cert
    }

    fn check_revoked(v: &Verifiers, end_entity: &CertificateDer<'_>) -> Result<(), Error> {
        if v.revoked.contains(&cert_hash(end_entity)) {
            let who = CertSummary::parse(end_entity)
                .map(|s| s.subject)
                .unwrap_or_else(|| "an unparsable certificate".into());
            return Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(Revoked(format!(
                    "certificate of {who} is revoked by channel config"
                )))),
            )));
        }
        Ok(())
    }
}

fn no_roots() -> Error {
    Error::InvalidCertificate(CertificateError::UnknownIssuer)
}

impl ClientCertVerifier for TrustStore {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.require_client_cert
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: Ordo clients hold one certificate and send it whatever the hints say,
        // and the list would change under a reference we cannot hold.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let v = self.verifiers();
        let inner = v.client.as_ref().ok_or_else(no_roots)?;
        inner.verify_client_cert(end_entity, intermediates, now)?;
        Self::check_revoked(&v, end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &ordo_sdk::tls::provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &ordo_sdk::tls::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ordo_sdk::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl std::fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifiers")
            .field("roots", &self.roots)
            .finish()
    }
}

impl ServerCertVerifier for TrustStore {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let v = self.verifiers();
        let inner = v.server.as_ref().ok_or_else(no_roots)?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        Self::check_revoked(&v, end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        ClientCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        ClientCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ClientCertVerifier::supported_verify_schemes(self)
    }
}

/// How often a node re-reads its channels' configs for TLS roots and revocations.
pub const TRUST_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `sync` every [`TRUST_SYNC_INTERVAL`] until `shutdown`: it copies the TLS roots and
/// revocations of the channels the node serves into its [`TrustStore`], so a config
/// update that adds an org, rotates a TLS CA or revokes a certificate applies to the next
/// handshake. (Config blocks are written by several writers — each backend's, the peer's
/// committer — and one cheap comparison a second is simpler than a hook through all.)
pub fn spawn_sync(sync: impl Fn() + Send + 'static, shutdown: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TRUST_SYNC_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => sync(),
            }
        }
    });
}
