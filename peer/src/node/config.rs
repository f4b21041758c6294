//! The peer's node configuration: a TOML file with `ORDO_` environment overrides
//! (`ORDO_NODE_LISTEN_ADDR=…`), every field documented with its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ordo_node::{ConnectionsSection, TlsSection};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Sections that environment overrides may address.
const SECTIONS: [&str; 9] = [
    "node",
    "identity",
    "deliver",
    "log",
    "gateway",
    "tls",
    "connections",
    "ledger",
    "discovery",
];

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum PeerConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file or an override does not parse, or names an unknown field.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's complaint.
        reason: String,
    },
}

/// The whole peer configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Where the node listens and keeps its data.
    #[serde(default)]
    pub node: PeerNodeSection,
    /// The peer's identity (role `peer`); it signs Deliver requests to the orderers.
    pub identity: PeerIdentitySection,
    /// How the peer follows the orderers.
    #[serde(default)]
    pub deliver: PeerDeliverSection,
    /// Logging.
    #[serde(default)]
    pub log: PeerLogSection,
    /// The Gateway for applications.
    #[serde(default)]
    pub gateway: PeerGatewaySection,
    /// TLS on the gRPC listener and on connections to orderers, endorsers and external
    /// chaincode.
    #[serde(default)]
    pub tls: TlsSection,
    /// Limits on the listener's connections.
    #[serde(default)]
    pub connections: ConnectionsSection,
    /// Upkeep of the channel ledgers (the background scrub).
    #[serde(default)]
    pub ledger: ordo_node::LedgerSection,
    /// How the peer announces itself and finds the channels' other peers.
    #[serde(default)]
    pub discovery: PeerDiscoverySection,
    /// This peer's runtime for a chaincode, by name: `builtin:<name>` or
    /// `external:<host:port>` (the org's own chaincode server). Wins over the runtime in
    /// the chaincode's definition, so each org chooses where its endorsements run without
    /// a channel change. Default: none (every chaincode on its definition's runtime).
    #[serde(default)]
    pub chaincodes: std::collections::BTreeMap<String, String>,
}

/// `[discovery]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeerDiscoverySection {
    /// Whether the peer announces itself and its gateway uses the peers it learns of.
    /// Default: true.
    pub enabled: bool,
    /// `host:port` other nodes reach this peer at, as announced. Default: empty, meaning
    /// `[node] listen_addr` unless that is an unspecified address (then nothing is
    /// announced, with a warning).
    pub endpoint: String,
    /// How often the peer announces itself to each channel's anchor peers, ms. Default:
    /// 3,000.
    pub announce_interval_ms: u64,
    /// How long an announcement counts after it was signed, ms. Default: 20,000.
    pub ttl_ms: u64,
}

impl Default for PeerDiscoverySection {
    fn default() -> Self {
        Self {
            enabled: true,
            endpoint: String::new(),
            announce_interval_ms: 3_000,
            ttl_ms: 20_000,
        }
    }
}

/// `[gateway]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeerGatewaySection {
    /// Other orgs' peers (`host:port`) asked for endorsements until a chaincode's
    /// endorsement policy is met: in parallel, as few as the policy needs, the work
    /// rotating over them. Default: none (this peer alone).
    pub endorsers: Vec<String>,
    /// Per-peer wait for an endorsement, ms. Default: 5,000.
    pub endorse_timeout_ms: u64,
    /// Per-orderer wait when submitting, ms. Default: 5,000.
    pub submit_timeout_ms: u64,
    /// Longest CommitStatus wait, ms. Default: 60,000.
    pub commit_timeout_ms: u64,
    /// Gateway requests handled at once (Evaluate, Endorse, Submit); more are answered
    /// RESOURCE_EXHAUSTED. Default: 1,024.
    pub max_concurrent: usize,
    /// CommitStatus calls waiting at once for their transaction; more are answered
    /// RESOURCE_EXHAUSTED. Counted apart from `max_concurrent` because a waiter costs a
    /// few hundred bytes and no CPU until its block commits. Default: 16,384.
    pub max_commit_waiters: usize,
}

impl Default for PeerGatewaySection {
    fn default() -> Self {
        Self {
            endorsers: Vec::new(),
            endorse_timeout_ms: 5_000,
            submit_timeout_ms: 5_000,
            commit_timeout_ms: 60_000,
            max_concurrent: 1_024,
            max_commit_waiters: 16_384,
        }
    }
}

/// `[node]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeerNodeSection {
    /// Node name, for logs. Default: `peer0`.
    pub name: String,
    /// gRPC address: Admin (channel join/list/remove/info) and Query. Default:
    /// `127.0.0.1:7051`.
    pub listen_addr: SocketAddr,
    /// Operations address: `/healthz`, `/readyz`, `/metrics`. Default: `127.0.0.1:9443`.
    pub ops_listen_addr: SocketAddr,
    /// Data directory; each channel's ledger and state live in `<data_dir>/channels/<id>`.
    /// Default: `peer-data`, relative to the config file.
    pub data_dir: PathBuf,
    /// `/readyz` answers 200 while every channel is at most this many blocks behind the
    /// ordering service. Default: 5.
    pub ready_max_lag_blocks: u64,
}

impl Default for PeerNodeSection {
    fn default() -> Self {
        Self {
            name: "peer0".into(),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7051)),
            ops_listen_addr: SocketAddr::from(([127, 0, 0, 1], 9443)),
            data_dir: PathBuf::from("peer-data"),
            ready_max_lag_blocks: 5,
        }
    }
}

/// `[identity]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerIdentitySection {
    /// Hex Ed25519 seed file, relative to the config file.
    pub key_file: PathBuf,
    /// Hex certificate file, relative to the config file.
    pub cert_file: PathBuf,
}

/// `[deliver]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeerDeliverSection {
    /// Orderer endpoints (`host:port`) tried after those in the channel configuration.
    /// Default: none.
    pub orderer_endpoints: Vec<String>,
    /// First reconnection backoff, milliseconds (doubling, capped). Default: 100.
    pub backoff_base_ms: u64,
    /// Largest reconnection backoff, milliseconds. Default: 10,000.
    pub backoff_max_ms: u64,
    /// How long an orderer that served a bad block is avoided, milliseconds. Default:
    /// 300,000.
    pub avoid_ms: u64,
    /// A stream silent this long is dropped and reopened, milliseconds. Default: 60,000.
    pub idle_timeout_ms: u64,
}

impl Default for PeerDeliverSection {
    fn default() -> Self {
        Self {
            orderer_endpoints: Vec::new(),
            backoff_base_ms: 100,
            backoff_max_ms: 10_000,
            avoid_ms: 300_000,
            idle_timeout_ms: 60_000,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeerLogSection {
    /// `tracing` filter; `RUST_LOG` wins when set. Default: `info`.
    pub filter: String,
    /// `text` or `json`. Default: `text`.
    pub format: String,
}

impl Default for PeerLogSection {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: "text".into(),
        }
    }
}

impl PeerConfig {
    /// Loads `path` with `ORDO_` overrides from the environment; relative paths are taken
    /// from the file's directory.
    pub fn load(path: &Path) -> Result<Self, PeerConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| PeerConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::parse(
            &text,
            &env,
            path.parent().unwrap_or_else(|| Path::new(".")),
            &path.display().to_string(),
        )
    }

    /// Parses TOML text with the given overrides.
    pub fn parse(
        text: &str,
        env: &[(String, String)],
        base: &Path,
        origin: &str,
    ) -> Result<Self, PeerConfigError> {
        let err = |reason: String| PeerConfigError::Parse {
            path: origin.to_string(),
            reason,
        };
        let cfg: PeerConfig = ordo_sdk::config::parse_node_config(
            text,
            env,
            &SECTIONS,
            base,
            |c: &mut PeerConfig| {
                let mut paths = vec![
                    &mut c.node.data_dir,
                    &mut c.identity.key_file,
                    &mut c.identity.cert_file,
                ];
                paths.extend(c.tls.paths_mut());
                paths.extend(c.ledger.archive_dir.as_mut());
                paths
            },
        )
        .map_err(err)?;
        cfg.tls.validate().map_err(err)?;
        cfg.connections.validate().map_err(err)?;
        cfg.ledger.validate().map_err(err)?;
        if !cfg.discovery.endpoint.is_empty() {
            ordo_proto::config::check_endpoint(&cfg.discovery.endpoint)
                .map_err(|why| err(format!("discovery.endpoint: {why}")))?;
        }
        if cfg.discovery.announce_interval_ms == 0
            || cfg.discovery.ttl_ms < 2 * cfg.discovery.announce_interval_ms
        {
            return Err(err(format!(
                "discovery: announce_interval_ms ({}) must be positive and ttl_ms ({}) at least \
                 twice it, or one late announcement would drop a live peer",
                cfg.discovery.announce_interval_ms, cfg.discovery.ttl_ms
            )));
        }
        for (name, runtime) in &cfg.chaincodes {
            if runtime.is_empty() {
                return Err(err(format!(
                    "chaincodes.{name}: an empty runtime binds nothing"
                )));
            }
            ordo_proto::config::check_runtime(runtime)
                .map_err(|why| err(format!("chaincodes.{name}: {why}")))?;
        }
        for e in &cfg.gateway.endorsers {
            ordo_proto::config::check_endpoint(e)
                .map_err(|why| err(format!("gateway.endorsers: {why}")))?;
        }
        if !matches!(cfg.log.format.as_str(), "text" | "json") {
            return Err(err(format!(
                "log.format {:?} is not text or json",
                cfg.log.format
            )));
        }
        Ok(cfg)
    }

    /// A commented example configuration with every default spelled out
    /// (`ordo peer --print-example-config`).
    pub fn example() -> String {
        format!(
            "{}{}",
            include_str!("../../peer.example.toml"),
            ordo_node::tls::EXAMPLE_SECTIONS
        )
    }

    /// The gateway's settings.
    pub fn gateway_settings(&self) -> crate::node::gateway::GatewaySettings {
        let ms = std::time::Duration::from_millis;
        crate::node::gateway::GatewaySettings {
            endorsers: self.gateway.endorsers.clone(),
            endorse_timeout: ms(self.gateway.endorse_timeout_ms.max(1)),
            submit_timeout: ms(self.gateway.submit_timeout_ms.max(1)),
            commit_timeout: ms(self.gateway.commit_timeout_ms.max(1)),
            max_concurrent: self.gateway.max_concurrent.max(1),
            max_commit_waiters: self.gateway.max_commit_waiters.max(1),
        }
    }

    /// The `host:port` this peer announces: `[discovery] endpoint`, else `[node]
    /// listen_addr` when it names a specific address. `None`: nothing to announce.
    pub fn announced_endpoint(&self) -> Option<String> {
        if !self.discovery.endpoint.is_empty() {
            return Some(self.discovery.endpoint.clone());
        }
        let listen = self.node.listen_addr;
        (!listen.ip().is_unspecified()).then(|| listen.to_string())
    }

    /// Discovery's settings.
    pub fn discovery_settings(&self) -> crate::node::discovery::DiscoverySettings {
        crate::node::discovery::DiscoverySettings {
            enabled: self.discovery.enabled,
            endpoint: self.announced_endpoint(),
            interval: std::time::Duration::from_millis(self.discovery.announce_interval_ms),
            ttl_ms: self.discovery.ttl_ms,
        }
    }

    /// The deliver client's settings.
    pub fn deliver_config(&self) -> crate::deliver::DeliverConfig {
        crate::deliver::DeliverConfig {
            backoff_base_ms: self.deliver.backoff_base_ms,
            backoff_max_ms: self.deliver.backoff_max_ms,
            avoid_ms: self.deliver.avoid_ms,
            idle_timeout_ms: self.deliver.idle_timeout_ms,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let text = "[identity]\nkey_file = \"p.key\"\ncert_file = \"p.cert\"\n";
        let env = vec![
            (
                "ORDO_DELIVER_ORDERER_ENDPOINTS".to_string(),
                "[\"127.0.0.1:7050\"]".to_string(),
            ),
            (
                "ORDO_LEDGER_SCRUB_BYTES_PER_SEC".to_string(),
                "1048576".to_string(),
            ),
        ];
        let defaults = PeerConfig::parse(text, &[], Path::new("/etc"), "t").expect("valid");
        assert_eq!(defaults.ledger.scrub_bytes_per_sec, 4 * 1024 * 1024);
        let c = PeerConfig::parse(text, &env, Path::new("/etc"), "t").expect("valid");
        assert_eq!(c.ledger.scrub_bytes_per_sec, 1024 * 1024);
        assert_eq!(c.node.listen_addr.port(), 7051);
        assert_eq!(
            c.deliver.orderer_endpoints,
            vec!["127.0.0.1:7050".to_string()]
        );
        assert_eq!(c.identity.key_file, PathBuf::from("/etc/p.key"));
        assert!(PeerConfig::parse(
            "[identity]\nkey_file=\"a\"\ncert_file=\"b\"\n[node]\nbogus=1\n",
            &[],
            Path::new("/"),
            "t"
        )
        .is_err());
    }

    #[test]
    fn discovery_settings_and_chaincode_bindings_are_checked() {
        let parse = |extra: &str| {
            PeerConfig::parse(
                &format!("[identity]\nkey_file=\"a\"\ncert_file=\"b\"\n{extra}"),
                &[],
                Path::new("/"),
                "t",
            )
        };
        let c = parse("").expect("defaults");
        assert_eq!(c.announced_endpoint().as_deref(), Some("127.0.0.1:7051"));
        let c = parse(
            "[chaincodes]\nbank = \"external:cc.banka.example:9999\"\nnotes = \"builtin:kv\"\n",
        )
        .expect("bindings");
        assert_eq!(c.chaincodes.len(), 2);
        let c = parse("[node]\nlisten_addr = \"0.0.0.0:7051\"\n").expect("valid");
        assert_eq!(
            c.announced_endpoint(),
            None,
            "unspecified: nothing to announce"
        );
        let c = parse(
            "[node]\nlisten_addr = \"0.0.0.0:7051\"\n[discovery]\nendpoint = \"peer.a:7051\"\n",
        )
        .expect("valid");
        assert_eq!(c.announced_endpoint().as_deref(), Some("peer.a:7051"));
        for bad in [
            "[discovery]\nendpoint = \"peer.a\"\n",
            "[discovery]\nannounce_interval_ms = 0\n",
            "[discovery]\nannounce_interval_ms = 5000\nttl_ms = 6000\n",
            "[gateway]\nendorsers = [\"nope\"]\n",
            "[chaincodes]\nbank = \"\"\n",
            "[chaincodes]\nbank = \"docker:bank\"\n",
            "[chaincodes]\nbank = \"external:nohost\"\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_example_file_parses_to_the_defaults() {
        let example = PeerConfig::parse(&PeerConfig::example(), &[], Path::new("/"), "example")
            .expect("example is valid");
        let minimal = PeerConfig::parse(
            "[identity]\nkey_file = \"peer.key\"\ncert_file = \"peer.cert\"\n",
            &[],
            Path::new("/"),
            "t",
        )
        .expect("valid");
        assert_eq!(example, minimal, "the example spells out every default");
    }
}
