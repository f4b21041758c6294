//! `network.json`: the description of a running (or startable) Ordo network.
//!
//! `ordo up` writes it; client commands (`ordo channel`, `ordo block`, `ordo bench`, …)
//! read it with `--network DIR/network.json`. Paths in it are absolute, so the file can be
//! used from any working directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ordo_proto::identity::{Identity, IdentityError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of the file format written by this build.
pub const NETWORK_FILE_VERSION: u32 = 1;

/// Why a network file could not be used.
#[derive(Debug, Error)]
pub enum NetworkError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a network description this build understands.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A node, org or identity named on the command line is not in the file.
    #[error("{0}")]
    NotFound(String),
    /// An identity file could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A TLS file could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A member's signing identity together with how it reaches nodes: what every client
/// command needs to talk to a node.
#[derive(Debug, Clone)]
pub struct Member {
    /// Signs requests and transactions.
    pub identity: Identity,
    /// Plaintext, or mutual TLS with the member's TLS certificate.
    pub transport: crate::transport::Transport,
}

/// A whole local network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// File format version ([`NETWORK_FILE_VERSION`]).
    pub version: u32,
    /// The network's directory.
    pub dir: PathBuf,
    /// Where `ordo crypto init` put the keys and certificates.
    pub crypto_dir: PathBuf,
    /// The channels every node serves.
    pub channels: Vec<ChannelEntry>,
    /// The nodes, in start order.
    pub nodes: Vec<NodeEntry>,
    /// Identity files per org and member name (`admin`, `client`, `orderer`, `peer`).
    pub identities: BTreeMap<String, BTreeMap<String, IdentityFiles>>,
}

/// One channel of the network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelEntry {
    /// Channel id.
    pub name: String,
    /// "solo", "kafka" or "raft".
    pub consensus: String,
    /// "enqueued" or "committed".
    pub ack_mode: String,
    /// The genesis block file.
    pub genesis_block: PathBuf,
}

/// One node process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// Unique node name, e.g. `orderer0`.
    pub name: String,
    /// "orderer" or "peer".
    pub role: String,
    /// The org that runs it.
    pub org: String,
    /// gRPC address (host:port).
    pub grpc_addr: String,
    /// Operations address (host:port) serving /healthz and /metrics.
    pub ops_addr: String,
    /// Process id while running; `None` when stopped.
    pub pid: Option<u32>,
    /// The exact command line that starts the node again.
    pub command: Vec<String>,
    /// The node's config file.
    pub config: PathBuf,
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// The node's log file.
    pub log_file: PathBuf,
}

/// A member's key and certificate files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentityFiles {
    /// Hex Ed25519 seed.
    pub key: PathBuf,
    /// Hex encoded certificate.
    pub cert: PathBuf,
    /// The member's TLS key pair and the CAs it trusts; absent for networks made before
    /// TLS or with `--insecure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsFiles>,
}

impl IdentityFiles {
    /// Loads the identity.
    pub fn load(&self) -> Result<Identity, IdentityError> {
        Identity::load(&self.key, &self.cert)
    }

    /// How this member connects to nodes: mutual TLS with its TLS files, or plaintext
    /// when it has none.
    pub fn transport(&self) -> Result<crate::transport::Transport, crate::tls::TlsError> {
        match &self.tls {
            Some(files) => Ok(crate::transport::Transport::Tls(
                crate::tls::ClientTls::from_files(files)?,
            )),
            None => Ok(crate::transport::Transport::Plain),
        }
    }
}

impl Network {
    /// Reads and checks a network file.
    pub fn load(path: &Path) -> Result<Self, NetworkError> {
        let text = std::fs::read_to_string(path).map_err(|source| NetworkError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let net: Network = serde_json::from_str(&text).map_err(|e| NetworkError::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if net.version != NETWORK_FILE_VERSION {
            return Err(NetworkError::Format {
                path: path.display().to_string(),
                reason: format!(
                    "format version {} (this build reads {NETWORK_FILE_VERSION})",
                    net.version
                ),
            });
        }
        Ok(net)
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), NetworkError> {
        let io = |source| NetworkError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| NetworkError::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&NodeEntry, NetworkError> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            NetworkError::NotFound(format!(
                "no node {name:?} in the network (nodes: {})",
                self.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The nodes with the given role (`orderer` or `peer`).
    pub fn nodes_with_role<'a>(
        &'a self,
        role: &'a str,
    ) -> impl Iterator<Item = &'a NodeEntry> + 'a {
        self.nodes.iter().filter(move |n| n.role == role)
    }

    /// The first orderer, the default target of client commands.
    pub fn first_orderer(&self) -> Result<&NodeEntry, NetworkError> {
        self.nodes_with_role("orderer")
            .next()
            .ok_or_else(|| NetworkError::NotFound("the network has no orderer".into()))
    }

    /// The channel called `name`, or the only/first channel when `name` is `None`.
    pub fn channel(&self, name: Option<&str>) -> Result<&ChannelEntry, NetworkError> {
        match name {
            Some(n) => {
                self.channels.iter().find(|c| c.name == n).ok_or_else(|| {
                    NetworkError::NotFound(format!("no channel {n:?} in the network"))
                })
            }
            None => self
                .channels
                .first()
                .ok_or_else(|| NetworkError::NotFound("the network has no channel".into())),
        }
    }

    /// Loads `member` of `org` (the first org when `None`) with its transport: mutual TLS
    /// with the member's TLS files, or plaintext in a network without TLS.
    pub fn member(&self, org: Option<&str>, member: &str) -> Result<Member, NetworkError> {
        let files = self.identity_files(org, member)?;
        Ok(Member {
            identity: files.load()?,
            transport: files.transport()?,
        })
    }

    /// How `member` of `org` connects to the network's nodes.
    pub fn transport(
        &self,
        org: Option<&str>,
        member: &str,
    ) -> Result<crate::transport::Transport, NetworkError> {
        Ok(self.identity_files(org, member)?.transport()?)
    }

    /// Loads the identity `member` (`admin`, `client`, …) of `org`; the first org when
    /// `org` is `None`.
    pub fn identity(&self, org: Option<&str>, member: &str) -> Result<Identity, NetworkError> {
        Ok(self.identity_files(org, member)?.load()?)
    }

    /// The files of `member` of `org` (the first org when `None`).
    pub fn identity_files(
        &self,
        org: Option<&str>,
        member: &str,
    ) -> Result<&IdentityFiles, NetworkError> {
        let (org_name, members) =
            match org {
                Some(o) => self.identities.get_key_value(o).ok_or_else(|| {
                    NetworkError::NotFound(format!("no org {o:?} in the network"))
                })?,
                None => self.identities.iter().next().ok_or_else(|| {
                    NetworkError::NotFound("the network has no identities".into())
                })?,
            };
        members.get(member).ok_or_else(|| {
            NetworkError::NotFound(format!("org {org_name:?} has no member {member:?}"))
        })
    }
}
