//! What every client command shares: where the orderer is and who signs, given either
//! explicitly (`--orderer ADDR --key K --cert C`) or through `--network DIR/network.json`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::{admin_command, AdminResponse};
use ordo_sdk::network::{Member, Network};
use ordo_sdk::tls::{ClientTls, TlsFiles};
use ordo_sdk::transport::Transport;

/// Target node and signing identity.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The network file written by `ordo up` (instead of --orderer/--key/--cert).
    #[arg(long, env = "ORDO_NETWORK")]
    pub network: Option<PathBuf>,
    /// gRPC address (host:port) of the node to talk to: an orderer, or a peer (`--peer`).
    #[arg(long, visible_alias = "peer")]
    pub orderer: Option<String>,
    /// Node name in the network file (default: the first orderer).
    #[arg(long)]
    pub node: Option<String>,
    /// Org whose identity signs, from the network file (default: the first org).
    #[arg(long)]
    pub org: Option<String>,
    /// Key file of the signing identity (with --cert).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Certificate file of the signing identity (with --key).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS CA certificate (PEM) to trust for the node; repeat for several. Connects over
    /// mutual TLS (with --tls-cert/--tls-key) instead of what --network says.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Vec<PathBuf>,
    /// TLS client certificate (PEM) presented to the node (with --tls-ca).
    #[arg(long, requires = "tls_ca")]
    pub tls_cert: Option<PathBuf>,
    /// TLS client key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_ca")]
    pub tls_key: Option<PathBuf>,
}

impl ClientArgs {
    /// The network file, when given.
    pub fn load_network(&self) -> anyhow::Result<Option<Network>> {
        self.network
            .as_ref()
            .map(|p| Network::load(p).with_context(|| format!("loading {}", p.display())))
            .transpose()
    }

    /// The orderer address: --orderer, else --node or the first orderer of the network.
    pub fn orderer_addr(&self) -> anyhow::Result<String> {
        if let Some(a) = &self.orderer {
            return Ok(a.clone());
        }
        let Some(net) = self.load_network()? else {
            bail!("say which orderer: --orderer HOST:PORT or --network DIR/network.json");
        };
        let node = match &self.node {
            Some(n) => net.node(n)?,
            None => net.first_orderer()?,
        };
        Ok(node.grpc_addr.clone())
    }

    /// The orderers a read may ask, in order: the one --orderer or --node names, else every
    /// orderer of the network (so that a read still answers while the first one is down).
    pub fn orderer_addrs(&self) -> anyhow::Result<Vec<(String, String)>> {
        if self.orderer.is_none() && self.node.is_none() {
            if let Some(net) = self.load_network()? {
                let all: Vec<_> = net
                    .nodes_with_role("orderer")
                    .map(|n| (n.name.clone(), n.grpc_addr.clone()))
                    .collect();
                if !all.is_empty() {
                    return Ok(all);
                }
            }
        }
        let addr = self.orderer_addr()?;
        Ok(vec![(addr.clone(), addr)])
    }

    /// The signing identity: --key/--cert, else `member` of --org (or the first org) from
    /// the network file.
    pub fn identity(&self, member: &str) -> anyhow::Result<Identity> {
        if let (Some(k), Some(c)) = (&self.key, &self.cert) {
            return Identity::load(k, c)
                .with_context(|| format!("loading identity {}", k.display()));
        }
        let Some(net) = self.load_network()? else {
            bail!("say who signs: --key FILE --cert FILE or --network DIR/network.json");
        };
        Ok(net.identity(self.org.as_deref(), member)?)
    }

    /// How to reach the node: --tls-ca/--tls-cert/--tls-key, else the TLS files of
    /// `member` of --org in the network file, else plaintext.
    pub fn transport(&self, member: &str) -> anyhow::Result<Transport> {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: self.tls_ca.clone(),
            };
            return Ok(Transport::Tls(
                ClientTls::from_files(&files).context("loading the TLS files")?,
            ));
        }
        match self.load_network()? {
            Some(net) => Ok(net.transport(self.org.as_deref(), member)?),
            None => Ok(Transport::Plain),
        }
    }

    /// The signing identity and the transport of `member` (see [`ClientArgs::identity`]
    /// and [`ClientArgs::transport`]).
    pub fn member(&self, member: &str) -> anyhow::Result<Member> {
        Ok(Member {
            identity: self.identity(member)?,
            transport: self.transport(member)?,
        })
    }
}

/// The first of `candidates` (name, address) that accepts a connection; each one skipped
/// is named on stderr, so the answer's source is never a surprise.
pub async fn first_reachable(
    candidates: &[(String, String)],
    member: &Member,
) -> anyhow::Result<String> {
    let mut failures = Vec::new();
    for (name, addr) in candidates {
        match ordo_sdk::orderer::connect(addr, &member.transport).await {
            Ok(_) => {
                if !failures.is_empty() {
                    eprintln!("{}; asking {name} ({addr})", failures.join("; "));
                }
                return Ok(addr.clone());
            }
            Err(e) => failures.push(format!("{name} ({addr}) is unreachable: {e}")),
        }
    }
    bail!("no orderer answers: {}", failures.join("; "))
}

/// Sends an admin command and returns the response, or an error naming its gRPC status
/// (`PERMISSION_DENIED: ...`).
pub async fn admin(
    addr: &str,
    member: &Member,
    channel: &str,
    command: admin_command::Command,
) -> anyhow::Result<AdminResponse> {
    let ch = ordo_sdk::orderer::connect(addr, &member.transport)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut client = ordo_sdk::orderer::admin_client(ch);
    let req = ordo_sdk::orderer::admin_request(&member.identity, channel, command);
    match client.execute(req).await {
        Ok(resp) => Ok(resp.into_inner()),
        Err(s) => bail!(
            "admin request to {addr}: {}: {}",
            ordo_proto::status::code_name(s.code()),
            s.message()
        ),
    }
}
