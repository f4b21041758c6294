//! The orderer's node configuration: a TOML file with `ORDO_` environment overrides.
//!
//! Every field has a documented default that makes a working single-machine node, so a
//! config file only needs the identity. An environment variable `ORDO_<SECTION>_<KEY>`
//! (upper case) overrides `<key>` in `[<section>]`, e.g. `ORDO_NODE_LISTEN_ADDR=0.0.0.0:7050`;
//! values are read as TOML scalars (numbers, booleans) and otherwise as strings.
//! Unknown fields are an error, never silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ordo_node::{ConnectionsSection, TlsSection};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Sections that environment overrides may address.
const SECTIONS: [&str; 8] = [
    "node",
    "identity",
    "limits",
    "log",
    "kafka",
    "tls",
    "connections",
    "ledger",
];

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
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
    /// Fields that parse but do not make sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole node configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrdererConfig {
    /// Where the node listens and keeps its data.
    #[serde(default)]
    pub node: NodeSection,
    /// The node's signing identity.
    pub identity: IdentitySection,
    /// Limits on what clients may send.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// How this node reaches the Kafka brokers of kafka channels.
    #[serde(default)]
    pub kafka: KafkaSection,
    /// TLS on the gRPC listener and on connections to other nodes.
    #[serde(default)]
    pub tls: TlsSection,
    /// Limits on the listener's connections.
    #[serde(default)]
    pub connections: ConnectionsSection,
    /// Upkeep of the channel ledgers (the background scrub).
    #[serde(default)]
    pub ledger: ordo_node::LedgerSection,
}

/// `[kafka]`: this node's side of the Kafka channels. The channel config names the
/// brokers and the topic (every orderer must read the same partition); credentials and
/// client tuning are each node's own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// `host:port,...` to use instead of the channel config's broker list, for a node
    /// that reaches the same cluster through other addresses. Default: empty (the
    /// channel's list). `ORDO_KAFKA_BROKERS` sets it.
    pub brokers: String,
    /// librdkafka client properties passed through as they are, after Ordo's own, e.g.
    /// `"security.protocol" = "SASL_SSL"`, `"sasl.mechanism" = "SCRAM-SHA-512"`,
    /// `"sasl.username"`, `"sasl.password"`, `"ssl.ca.location"`. Default: none.
    pub properties: std::collections::BTreeMap<String, String>,
    /// How long a produced message may wait for the in-sync replicas before Broadcast
    /// answers SERVICE_UNAVAILABLE for it, in milliseconds. Default: 10,000.
    pub delivery_timeout_ms: u64,
    /// Wait between attempts to reach the brokers, in milliseconds. Default: 500.
    pub retry_backoff_ms: u64,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            properties: Default::default(),
            delivery_timeout_ms: 10_000,
            retry_backoff_ms: 500,
        }
    }
}

/// `[node]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Node name, used in logs and as the consenter id. Default: `orderer0`.
    pub name: String,
    /// gRPC address for Broadcast, Deliver and Admin. Default: `127.0.0.1:7050`.
    pub listen_addr: SocketAddr,
    /// Operations address for `/healthz` and `/metrics`. Default: `127.0.0.1:8443`.
    pub ops_listen_addr: SocketAddr,
    /// Data directory; each channel's ledger lives in `<data_dir>/channels/<id>`.
    /// Default: `./ordo-data`. Relative paths are taken from the config file's directory.
    pub data_dir: PathBuf,
    /// Local IP address that connections to other consenters (raft traffic, block pulls)
    /// leave from. Default: unset, the operating system picks one. On a host with several
    /// networks this keeps consensus traffic on the cluster network; the chaos tests give
    /// each node its own loopback address so a proxy can tell the nodes' links apart.
    pub cluster_source_addr: Option<std::net::IpAddr>,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: "orderer0".into(),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7050)),
            ops_listen_addr: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: PathBuf::from("ordo-data"),
            cluster_source_addr: None,
        }
    }
}

/// `[identity]`: the node's key and certificate (role `orderer`), as written by
/// `ordo crypto init`. Admins of the certificate's org (same issuing CA) may run channel
/// participation commands on this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Hex Ed25519 seed file. Relative to the config file's directory.
    pub key_file: PathBuf,
    /// Hex certificate file. Relative to the config file's directory.
    pub cert_file: PathBuf,
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest gRPC message accepted, in bytes; envelopes above a channel's
    /// `absolute_max_bytes` are refused per envelope with REQUEST_ENTITY_TOO_LARGE.
    /// Default: 80 MiB (above the largest allowed block).
    pub max_grpc_message_bytes: usize,
    /// Concurrent gRPC streams per connection. Default: 256.
    pub max_concurrent_streams: u32,
    /// Recent tx ids remembered per channel for duplicate detection; it must cover the
    /// envelopes accepted but not yet in a block. Older duplicates are the peers' to catch
    /// (DUPLICATE_TXID): an orderer's ledger keeps no tx-id index. Default: 100,000
    /// (about 5 MB per channel).
    pub dedupe_window: usize,
    /// Envelopes a Broadcast stream may have in flight (received, not yet answered).
    /// Default: 4,096.
    pub broadcast_inflight: usize,
    /// Bytes of Broadcast envelopes the node holds at once before checking them, over
    /// every stream, partial messages included; a stream that finds no room for 10 s ends
    /// with RESOURCE_EXHAUSTED. At least `max_grpc_message_bytes`. Default: 256 MiB.
    pub broadcast_buffer_bytes: usize,
    /// How far an admin request's timestamp may be from the node's clock, in seconds
    /// (replay protection). Default: 300.
    pub admin_clock_skew_s: u64,
    /// Envelopes per channel whose Broadcast may wait for their block at once
    /// (`committed` ack mode); beyond it, envelopes are refused SERVICE_UNAVAILABLE before
    /// they are ordered. Default: 100,000.
    pub commit_waiters: usize,
    /// How long, in seconds, a `committed` ack waits for its block before the client is
    /// told it timed out (the envelope may still be ordered); answered within a tenth of
    /// this (at least 100 ms, at most 1 s) after it passes. Default: 120.
    pub commit_wait_s: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_grpc_message_bytes: 80 * 1024 * 1024,
            max_concurrent_streams: 256,
            dedupe_window: 100_000,
            broadcast_inflight: 4096,
            broadcast_buffer_bytes: 256 * 1024 * 1024,
            admin_clock_skew_s: 300,
            commit_waiters: 100_000,
            commit_wait_s: 120,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `tracing` filter, e.g. `info` or `ordo_orderer=debug,info`. Default: `info`;
    /// the `RUST_LOG` environment variable wins when set.
    pub filter: String,
    /// `text` or `json`. Default: `text`.
    pub format: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: "text".into(),
        }
    }
}

impl OrdererConfig {
    /// Loads `path`, applies `ORDO_` overrides from the process environment, resolves
    /// relative paths against the file's directory and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, &vars, base, &path.display().to_string())
    }

    /// Parses TOML text with the given overrides; `base` resolves relative paths.
    pub fn parse(
        text: &str,
        env: &[(String, String)],
        base: &Path,
        origin: &str,
    ) -> Result<Self, ConfigError> {
        let cfg: OrdererConfig = ordo_sdk::config::parse_node_config(
            text,
            env,
            &SECTIONS,
            base,
            |c: &mut OrdererConfig| {
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
        .map_err(|reason| ConfigError::Parse {
            path: origin.to_string(),
            reason,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks relations between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.ledger.validate().map_err(ConfigError::Invalid)?;
        if self.node.name.is_empty() {
            return Err(ConfigError::Invalid("node.name is empty".into()));
        }
        if self.limits.max_grpc_message_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "limits.max_grpc_message_bytes below 1 MiB".into(),
            ));
        }
        if self.limits.commit_waiters == 0 || self.limits.commit_wait_s == 0 {
            return Err(ConfigError::Invalid(
                "limits.commit_waiters and limits.commit_wait_s must be positive (a committed ack needs room and time to wait)"
                    .into(),
            ));
        }
        if self.limits.broadcast_buffer_bytes < self.limits.max_grpc_message_bytes {
            return Err(ConfigError::Invalid(
                "limits.broadcast_buffer_bytes below limits.max_grpc_message_bytes (the largest envelope must fit)".into(),
            ));
        }
        if self.limits.broadcast_inflight == 0 || self.limits.max_concurrent_streams == 0 {
            return Err(ConfigError::Invalid(
                "limits.broadcast_inflight and limits.max_concurrent_streams must be positive"
                    .into(),
            ));
        }
        if !(100..=600_000).contains(&self.kafka.delivery_timeout_ms) {
            return Err(ConfigError::Invalid(format!(
                "kafka.delivery_timeout_ms {} not in 100..=600000",
                self.kafka.delivery_timeout_ms
            )));
        }
        self.tls.validate().map_err(ConfigError::Invalid)?;
        self.connections.validate().map_err(ConfigError::Invalid)?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log.format {:?} is not text or json",
                self.log.format
            )));
        }
        Ok(())
    }

    /// A commented example configuration with every default spelled out.
    pub fn example() -> String {
        format!(
            "{}{}",
            include_str!("../orderer.example.toml"),
            ordo_node::tls::EXAMPLE_SECTIONS
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[identity]\nkey_file = \"o.key\"\ncert_file = \"o.cert\"\n";

    #[test]
    fn defaults_fill_everything_but_the_identity() {
        let c = OrdererConfig::parse(MINIMAL, &[], Path::new("/etc/ordo"), "t").expect("valid");
        assert_eq!(c.node.listen_addr.port(), 7050);
        assert_eq!(c.identity.key_file, PathBuf::from("/etc/ordo/o.key"));
        assert_eq!(c.node.data_dir, PathBuf::from("/etc/ordo/ordo-data"));
        assert_eq!(c.limits.dedupe_window, 100_000);
        assert_eq!(c.limits.commit_waiters, 100_000);
        assert_eq!(c.limits.commit_wait_s, 120);
    }

    #[test]
    fn environment_overrides_win() {
        let env = vec![
            (
                "ORDO_NODE_LISTEN_ADDR".to_string(),
                "0.0.0.0:9000".to_string(),
            ),
            ("ORDO_LIMITS_DEDUPE_WINDOW".to_string(), "10".to_string()),
            (
                "ORDO_KAFKA_BROKERS".to_string(),
                "elsewhere:9092".to_string(),
            ),
        ];
        let c = OrdererConfig::parse(MINIMAL, &env, Path::new("/"), "t").expect("valid");
        assert_eq!(c.node.listen_addr.port(), 9000);
        assert_eq!(c.limits.dedupe_window, 10);
        assert_eq!(c.kafka.brokers, "elsewhere:9092");
    }

    #[test]
    fn the_ledger_scrub_defaults_on_and_an_override_turns_it_off() {
        let c = OrdererConfig::parse(MINIMAL, &[], Path::new("/"), "t").expect("valid");
        assert_eq!(c.ledger.scrub_bytes_per_sec, 4 * 1024 * 1024);
        let env = vec![(
            "ORDO_LEDGER_SCRUB_BYTES_PER_SEC".to_string(),
            "0".to_string(),
        )];
        let c = OrdererConfig::parse(MINIMAL, &env, Path::new("/"), "t").expect("valid");
        assert_eq!(c.ledger.scrub_bytes_per_sec, 0);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        let bad = format!("{MINIMAL}[node]\nlisten_adr = \"x\"\n");
        assert!(matches!(
            OrdererConfig::parse(&bad, &[], Path::new("/"), "t"),
            Err(ConfigError::Parse { .. })
        ));
        let env = vec![("ORDO_NODE_BOGUS".to_string(), "1".to_string())];
        assert!(OrdererConfig::parse(MINIMAL, &env, Path::new("/"), "t").is_err());
        let zero = format!("{MINIMAL}[limits]\ncommit_wait_s = 0\n");
        assert!(matches!(
            OrdererConfig::parse(&zero, &[], Path::new("/"), "t"),
            Err(ConfigError::Invalid(_))
        ));
        let bad = format!("{MINIMAL}[log]\nformat = \"xml\"\n");
        assert!(matches!(
            OrdererConfig::parse(&bad, &[], Path::new("/"), "t"),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn the_example_file_parses() {
        OrdererConfig::parse(&OrdererConfig::example(), &[], Path::new("/"), "example")
            .expect("example is valid");
    }
}
