//! A node's TLS: its key pair (reloaded on SIGHUP and when the files change), its trust
//! store (fed by channel configs), the server configuration of its listener and the client
//! transport it uses to reach other nodes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use ordo_sdk::tls::{ClientTls, Reload, ReloadingKeyPair, TlsError};
use ordo_sdk::transport::Transport;

use crate::certinfo::{now_s, rfc3339, CertSummary, Validity};
use crate::trust::TrustStore;

/// The `[tls]` and `[connections]` sections of an example node config, every default
/// spelled out; both nodes' `--print-example-config` end with it.
pub const EXAMPLE_SECTIONS: &str = include_str!("../tls.example.toml");

/// `[tls]` of a node's config: the node's TLS key pair and whom it trusts before any
/// channel config says more.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Serve and connect over TLS 1.3. Default: false (plaintext, for development
    /// networks only: `ordo up` turns TLS on unless `--insecure`).
    pub enabled: bool,
    /// PEM certificate chain of the node (leaf first), with the node's DNS names / IPs as
    /// subject alternative names. Relative to the config file's directory.
    pub cert_file: PathBuf,
    /// PEM PKCS#8 private key of `cert_file`.
    pub key_file: PathBuf,
    /// PEM TLS CA certificates trusted besides those of the served channels' configs —
    /// at least the node's own org's TLS CA, so its admins can reach it before it joins a
    /// channel. Default: none.
    pub ca_files: Vec<PathBuf>,
    /// Refuse clients that present no certificate. Default: true (mutual TLS). Turn off
    /// only when applications reach the node through something that cannot hold a client
    /// certificate; every request still carries its Ed25519 signature.
    pub require_client_cert: bool,
    /// How often the key pair files are checked for changes, in milliseconds (SIGHUP
    /// reloads at once). Default: 5,000.
    pub reload_interval_ms: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            enabled: false,
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            ca_files: Vec::new(),
            require_client_cert: true,
            reload_interval_ms: 5_000,
        }
    }
}

impl TlsSection {
    /// The paths a config loader resolves against the config file's directory.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut v = vec![&mut self.cert_file, &mut self.key_file];
        v.extend(self.ca_files.iter_mut());
        v
    }

    /// Checks relations between fields.
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.cert_file.as_os_str().is_empty() || self.key_file.as_os_str().is_empty() {
            return Err("tls.enabled needs tls.cert_file and tls.key_file".into());
        }
        if !(100..=3_600_000).contains(&self.reload_interval_ms) {
            return Err(format!(
                "tls.reload_interval_ms {} not in 100..=3600000",
                self.reload_interval_ms
            ));
        }
        Ok(())
    }
}

/// `[connections]` of a node's config: limits on who may hold the listener's sockets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsSection {
    /// How long a new connection may take to complete its TLS handshake (plaintext: to
    /// send its first byte), in milliseconds. Default: 10,000.
    pub handshake_timeout_ms: u64,
    /// Connections open at once. Default: 4,096.
    pub max_connections: usize,
    /// Connections open at once with one TLS client certificate. Default: 512.
    pub max_connections_per_identity: usize,
    /// Seconds a graceful stop waits for open streams to end before closing them.
    /// Default: 10.
    pub drain_timeout_s: u64,
    /// Concurrent gRPC (HTTP/2) streams one connection may hold open; a client opening
    /// more is refused by HTTP/2 itself (REFUSED_STREAM) before any handler runs. Bounds
    /// what one connection of never-reading streams can pin, on top of the per-identity
    /// caps of each streaming service. Used by the peer; an orderer reads its
    /// `[limits] max_concurrent_streams`. Default: 256.
    pub max_streams_per_connection: u32,
}

impl Default for ConnectionsSection {
    fn default() -> Self {
        let l = crate::listener::ListenerLimits::default();
        Self {
            handshake_timeout_ms: l.handshake_timeout.as_millis() as u64,
            max_connections: l.max_connections,
            max_connections_per_identity: l.max_connections_per_identity,
            drain_timeout_s: 10,
            max_streams_per_connection: 256,
        }
    }
}

impl ConnectionsSection {
    /// How long a graceful stop waits for open streams (see [`crate::drain`]).
    pub fn drain_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drain_timeout_s)
    }

    /// The listener limits.
    pub fn limits(&self) -> crate::listener::ListenerLimits {
        crate::listener::ListenerLimits {
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            max_connections: self.max_connections,
            max_connections_per_identity: self.max_connections_per_identity,
        }
    }

    /// Checks relations between fields.
    pub fn validate(&self) -> Result<(), String> {
        if self.handshake_timeout_ms == 0 || self.max_connections == 0 {
            return Err(
                "connections.handshake_timeout_ms and max_connections must be positive".into(),
            );
        }
        if self.max_connections_per_identity == 0 {
            return Err("connections.max_connections_per_identity must be positive".into());
        }
        if self.max_streams_per_connection == 0 {
            return Err("connections.max_streams_per_connection must be positive".into());
        }
        Ok(())
    }
}

/// Why a node's TLS could not be set up.
#[derive(Debug, Error)]
pub enum NodeTlsError {
    /// A file could not be used.
    #[error(transparent)]
    Files(#[from] TlsError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Everything TLS about one node.
pub struct NodeTls {
    key_pair: Arc<ReloadingKeyPair>,
    trust: Arc<TrustStore>,
    server: Arc<ServerConfig>,
    client: ClientTls,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("cert", &self.key_pair.cert_path())
            .field("trust", &self.trust)
            .finish()
    }
}

impl NodeTls {
    /// Loads the key pair and local roots named by `section` (which must be enabled).
    pub fn load(section: &TlsSection) -> Result<Arc<Self>, NodeTlsError> {
        let key_pair = ReloadingKeyPair::load(&section.cert_file, &section.key_file)?;
        let mut local = Vec::new();
        for ca in &section.ca_files {
            local.extend(ordo_sdk::tls::read_certs(ca)?);
        }
        let trust = TrustStore::new(local, section.require_client_cert);
        let mut server = ServerConfig::builder_with_provider(ordo_sdk::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| NodeTlsError::Config(e.to_string()))?
            .with_client_cert_verifier(trust.clone())
            .with_cert_resolver(key_pair.clone());
        server.alpn_protocols = vec![ordo_sdk::tls::ALPN_H2.to_vec()];
        // No session resumption: a resumed TLS 1.3 session carries the client certificate
        // of the original handshake without verifying it again, so a certificate revoked
        // or a CA removed by a config update would still get in. Ordo connections are
        // long-lived; a full handshake per connection costs nothing that matters.
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        let client = ClientTls::with_verifier(trust.clone(), Some(key_pair.clone()))?;
        let tls = Arc::new(Self {
            key_pair,
            trust,
            server: Arc::new(server),
            client,
        });
        tls.log_own_validity();
        Ok(tls)
    }

    /// The listener's configuration.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// How this node connects to other nodes: presenting its own certificate, trusting
    /// what its trust store trusts.
    pub fn client_transport(&self) -> Transport {
        Transport::Tls(self.client.clone())
    }

    /// The trust store, to feed it channel configs.
    pub fn trust(&self) -> &Arc<TrustStore> {
        &self.trust
    }

    /// The node's own TLS certificate as it is now.
    pub fn own_cert(&self) -> Option<CertSummary> {
        CertSummary::parse(&self.key_pair.leaf())
    }

    /// What is wrong with the node's own TLS certificate now, if anything.
    pub fn own_validity(&self) -> Option<Validity> {
        self.own_cert()?.validity_problem(now_s())
    }

    fn log_own_validity(&self) {
        let Some(cert) = self.own_cert() else {
            return;
        };
        let file = self.key_pair.cert_path().display().to_string();
        match cert.validity_problem(now_s()) {
            Some(Validity::Expired) => error!(
                %file, subject = %cert.subject, not_after = %rfc3339(cert.not_after),
                "this node's TLS certificate has EXPIRED: other nodes will refuse it; renew it \
                 (ordo crypto renew) and it is picked up without a restart"
            ),
            Some(Validity::NotYetValid) => error!(
                %file, subject = %cert.subject, not_before = %rfc3339(cert.not_before),
                "this node's TLS certificate is not valid yet: other nodes will refuse it \
                 (check the clocks)"
            ),
            Some(Validity::ExpiresSoon) => warn!(
                %file, subject = %cert.subject, not_after = %rfc3339(cert.not_after),
                days_left = cert.remaining_s(now_s()) / 86_400,
                "this node's TLS certificate expires soon: renew it (ordo crypto renew)"
            ),
            None => info!(
                %file, subject = %cert.subject, not_after = %rfc3339(cert.not_after),
                hosts = %cert.hosts.join(","), "TLS certificate loaded"
            ),
        }
    }

    /// Re-reads the key pair now (SIGHUP); on failure the previous pair stays in use.
    pub fn reload(&self) {
        match self.key_pair.reload() {
            Ok(()) => self.log_own_validity(),
            Err(e) => {
                error!(error = %e, "TLS key pair not reloaded; the previous one stays in use")
            }
        }
    }

    /// Reloads the key pair on SIGHUP and whenever its files change, until `shutdown`.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let tls = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hup_recv = async {
                    match hup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hup_recv = std::future::pending::<Option<()>>();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = hup_recv => {
                        info!("SIGHUP: reloading the TLS key pair");
                        tls.reload();
                    }
                    _ = tick.tick() => match tls.key_pair.reload_if_changed() {
                        Ok(Reload::Reloaded) => {
                            info!("TLS key pair files changed: reloaded");
                            tls.log_own_validity();
                        }
                        Ok(Reload::Unchanged) => {}
                        Err(e) => warn!(error = %e, "TLS key pair files changed but do not load; the previous pair stays in use"),
                    },
                }
            }
        });
    }
}
