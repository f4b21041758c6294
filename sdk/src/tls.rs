//! TLS for Ordo's gRPC links: the files a member's TLS identity lives in, the key pair a
//! process presents (re-read when the files change, so certificates rotate without a
//! restart), the client side of a mutual-TLS connection ([`ClientTls`]) and a small server
//! side ([`ServerTls`]) for processes that are not nodes — chaincode servers — and so do
//! not use the node shell's listener (`ordo-node`, which depends on this crate).
//!
//! What TLS is for in Ordo: it protects the *link* (confidentiality, integrity, and who is
//! at the other end of the socket). What a message *means* is still decided by the
//! application-level Ed25519 signatures every request and block carries; TLS never
//! replaces them.
//!
//! The rules every Ordo TLS endpoint follows:
//! - TLS 1.3 only and ALPN `h2` (gRPC needs HTTP/2);
//! - keys and certificates are PEM files (`tls.key`: PKCS#8, `tls.crt`: the leaf first,
//!   then any intermediates) issued by an org's TLS CA (`ordo crypto init`);
//! - one crypto provider, *ring*, so a build needs no cmake or assembler toolchain.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::TcpStream;

/// Why TLS material could not be loaded or used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file does not hold what it should (no PEM certificate, an unusable key, ...).
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the assembled configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The TLS files of one member, as `network.json` and the node configs name them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain presented to the other side (leaf first).
    pub cert: PathBuf,
    /// PEM PKCS#8 private key of the leaf certificate.
    pub key: PathBuf,
    /// PEM CA certificates this member trusts for the other side of a connection.
    pub ca: Vec<PathBuf>,
}

/// The one crypto provider Ordo uses for TLS.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN protocol id of HTTP/2, which every Ordo TLS endpoint offers and requires.
pub const ALPN_H2: &[u8] = b"h2";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn format_err(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Format {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads every PEM certificate in `path`, in order; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format_err(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(format_err(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, SEC1 or PKCS#1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format_err(path, format!("not a PEM private key: {e}")))
}

/// A root store holding every certificate of the given PEM files.
pub fn read_roots(paths: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        for cert in read_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| format_err(path, format!("not a usable CA certificate: {e}")))?;
        }
    }
    Ok(roots)
}

/// Loads a certificate chain and its key into the form rustls presents, checking that
/// the key belongs to the leaf (a swapped or half-written pair is refused here, not in a
/// handshake with a confusing alert).
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    let certified = CertifiedKey::from_der(chain, key_der, &provider())
        .map_err(|e| format_err(key, format!("does not match {}: {e}", cert.display())))?;
    Ok(Arc::new(certified))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The key pair a process presents in TLS handshakes, re-read on demand.
///
/// Why reloadable: certificate rotation must not need a restart (Fabric's most painful
/// operational bug). [`ReloadingKeyPair::reload`] re-reads the files; a pair that fails to
/// load (half-copied, mismatched) is refused and the previous one stays in use, so a botched
/// rotation never takes a node off the network. New handshakes use the new pair; connections
/// already established keep theirs.
#[derive(Debug)]
pub struct ReloadingKeyPair {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Loaded>,
}

#[derive(Debug, Clone)]
struct Loaded {
    pair: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
}

/// What [`ReloadingKeyPair::reload_if_changed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files did not change since the last load.
    Unchanged,
    /// A new pair is in use.
    Reloaded,
}

impl ReloadingKeyPair {
    /// Loads the pair from `cert` and `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let stamps = (modified(cert), modified(key));
        let pair = load_certified_key(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Loaded { pair, stamps }),
        }))
    }

    /// Loads the pair named by `files`.
    pub fn from_files(files: &TlsFiles) -> Result<Arc<Self>, TlsError> {
        Self::load(&files.cert, &files.key)
    }

    /// The pair in use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.pair.clone(),
            Err(poisoned) => poisoned.into_inner().pair.clone(),
        }
    }

    /// The leaf certificate in use (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current()
            .cert
            .first()
            .cloned()
            .unwrap_or_else(|| CertificateDer::from(Vec::new()))
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// Re-reads both files unconditionally; on error the previous pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = (modified(&self.cert), modified(&self.key));
        let pair = load_certified_key(&self.cert, &self.key)?;
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = Loaded { pair, stamps };
        Ok(())
    }

    /// Re-reads the files when their modification times changed since the last load.
    pub fn reload_if_changed(&self) -> Result<Reload, TlsError> {
        let stamps = (modified(&self.cert), modified(&self.key));
        let old = match self.current.read() {
            Ok(g) => g.stamps,
            Err(poisoned) => poisoned.into_inner().stamps,
        };
        if stamps == old {
            return Ok(Reload::Unchanged);
        }
        self.reload()?;
        Ok(Reload::Reloaded)
    }
}

impl ResolvesServerCert for ReloadingKeyPair {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingKeyPair {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The client side of Ordo's TLS: whom to trust, what to present.
///
/// Cheap to clone (one shared rustls configuration).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    key_pair: Option<Arc<ReloadingKeyPair>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field(
                "client_cert",
                &self.key_pair.as_ref().map(|k| k.cert_path()),
            )
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the CA certificates of `files.ca` and presents `files.cert` / `files.key`
    /// (re-read when they change, see [`ClientTls::key_pair`]).
    pub fn from_files(files: &TlsFiles) -> Result<Self, TlsError> {
        let roots = read_roots(&files.ca)?;
        let pair = ReloadingKeyPair::from_files(files)?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        Self::with_verifier(verifier, Some(pair))
    }

    /// Trusts what `verifier` accepts and presents `key_pair` when a server asks for a
    /// client certificate (every Ordo node does by default).
    pub fn with_verifier(
        verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
        key_pair: Option<Arc<ReloadingKeyPair>>,
    ) -> Result<Self, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &key_pair {
            Some(pair) => builder.with_client_cert_resolver(pair.clone()),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Self {
            config: Arc::new(config),
            key_pair,
        })
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The presented key pair, to reload it on rotation.
    pub fn key_pair(&self) -> Option<&Arc<ReloadingKeyPair>> {
        self.key_pair.as_ref()
    }
}

/// First byte of a TLS record carrying a handshake message (a ClientHello): what a TLS
/// client sends first, and what a plaintext HTTP/2 client (`PRI * HTTP/2.0`) never does.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why an incoming connection was not accepted by [`ServerTls::accept`].
///
/// Each variant is a different operator problem, so each gets its own message: a client
/// configured without TLS, a client that never finishes (slowloris), a client whose
/// certificate is not trusted.
#[derive(Debug, Error)]
pub enum AcceptError {
    /// The client closed the connection before sending anything.
    #[error("closed before sending anything")]
    Closed,
    /// The client speaks plaintext to a TLS listener.
    #[error(
        "plaintext client on a TLS listener (the client must connect with TLS and present a \
         certificate of a trusted CA)"
    )]
    Plaintext,
    /// A TLS client on a plaintext listener (a peer with TLS on, calling a chaincode server
    /// started without TLS).
    #[error(
        "TLS client on a plaintext listener (serve with TLS: a certificate, its key and the \
         CAs of the clients)"
    )]
    TlsOnPlaintext,
    /// The handshake did not complete within the deadline.
    #[error("no TLS handshake within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The handshake failed: no client certificate, one from an unknown CA, an expired one,
    /// a protocol error.
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

/// A TLS stream accepted by [`ServerTls::accept`].
pub type ServerStream = tokio_rustls::server::TlsStream<TcpStream>;

/// An accepted connection, plaintext or after its TLS handshake: what the node listener
/// and the chaincode server hand to tonic, read and written the same way.
pub enum AcceptedStream {
    /// Plaintext (a listener without TLS).
    Plain(TcpStream),
    /// TLS, handshake done.
    Tls(Box<ServerStream>),
    /// An in-process pipe: a node served to tests in the same process, without sockets
    /// (so that a paused test clock governs everything the node waits for).
    Memory(tokio::io::DuplexStream),
}

impl AcceptedStream {
    /// Whether the connection runs TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

impl tokio::io::AsyncRead for AcceptedStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Memory(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for AcceptedStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Memory(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
            Self::Memory(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Memory(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Self::Memory(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
            Self::Memory(s) => s.is_write_vectored(),
        }
    }
}

/// The server side of Ordo's mutual TLS, for servers outside the node shell (chaincode
/// servers, through `chaincode::shim`).
///
/// Same rules as a node's listener: TLS 1.3 only, ALPN `h2`, a client certificate is
/// required and must chain to one of the given CAs, and no session resumption (a resumed
/// TLS 1.3 session would carry the client certificate of an earlier handshake without
/// verifying it again). The presented key pair is a [`ReloadingKeyPair`], so the server's
/// certificate rotates without a restart. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    key_pair: Arc<ReloadingKeyPair>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.key_pair.cert_path())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Presents `files.cert` / `files.key` and accepts only clients whose certificate
    /// chains to one of `files.ca` (for a chaincode server: the TLS CA of the org whose
    /// peers call it). At least one CA is required: a server that accepted any client
    /// would not be mutual TLS.
    pub fn from_files(files: &TlsFiles) -> Result<Self, TlsError> {
        if files.ca.is_empty() {
            return Err(TlsError::Config(
                "mutual TLS needs at least one CA whose client certificates are accepted".into(),
            ));
        }
        let roots = read_roots(&files.ca)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Self::with_client_verifier(verifier, ReloadingKeyPair::from_files(files)?)
    }

    /// Presents `key_pair` and accepts the clients `verifier` accepts.
    pub fn with_client_verifier(
        verifier: Arc<dyn ClientCertVerifier>,
        key_pair: Arc<ReloadingKeyPair>,
    ) -> Result<Self, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(key_pair.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Self {
            config: Arc::new(config),
            key_pair,
        })
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The presented key pair, to reload it on rotation.
    pub fn key_pair(&self) -> &Arc<ReloadingKeyPair> {
        &self.key_pair
    }

    /// Completes the server side of a handshake on `tcp` within `timeout`.
    ///
    /// A client whose first byte is not a TLS handshake record is refused as
    /// [`AcceptError::Plaintext`] at once, instead of failing later with a cryptic
    /// protocol error.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<ServerStream, AcceptError> {
        let handshake = async {
            let mut first = [0u8; 1];
            match tcp.peek(&mut first).await {
                Ok(0) | Err(_) => return Err(AcceptError::Closed),
                Ok(_) => {}
            }
            if first[0] != TLS_HANDSHAKE_RECORD {
                return Err(AcceptError::Plaintext);
            }
            tokio_rustls::TlsAcceptor::from(self.config.clone())
                .accept(tcp)
                .await
                .map_err(AcceptError::Handshake)
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| AcceptError::Timeout(timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_client_cas_is_refused() {
        let files = TlsFiles {
            cert: PathBuf::from("server.crt"),
            key: PathBuf::from("server.key"),
            ca: Vec::new(),
        };
        match ServerTls::from_files(&files) {
            Err(TlsError::Config(why)) => assert!(why.contains("at least one CA"), "{why}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn missing_files_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.crt");
        let files = TlsFiles {
            cert: dir.path().join("server.crt"),
            key: dir.path().join("server.key"),
            ca: vec![ca.clone()],
        };
        match ServerTls::from_files(&files) {
            Err(TlsError::Io { path, .. }) => assert_eq!(path, ca.display().to_string()),
            other => panic!("expected an I/O error naming the CA file, got {other:?}"),
        }
        std::fs::write(&ca, "not a certificate").expect("write");
        match ServerTls::from_files(&files) {
            Err(TlsError::Format { path, .. }) => assert_eq!(path, ca.display().to_string()),
            other => panic!("expected a format error naming the CA file, got {other:?}"),
        }
    }
}
