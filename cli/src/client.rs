//! What every client command shares: where the orderer is and who signs, given either
//! explicitly (`--orderer ADDR --key K --cert C`) or through `--network DIR/network.json`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::{admin_command, AdminResponse};
use ordo_proto::pb::common::Status as Code;
use ordo_sdk::network::Network;

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
}

/// Sends an admin command and returns the response, or an error naming its status.
pub async fn admin(
    addr: &str,
    identity: &Identity,
    channel: &str,
    command: admin_command::Command,
) -> anyhow::Result<AdminResponse> {
    let ch = ordo_sdk::orderer::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut client = ordo_sdk::orderer::admin_client(ch);
    let req = ordo_sdk::orderer::admin_request(identity, channel, command);
    let resp = client
        .execute(req)
        .await
        .with_context(|| format!("admin request to {addr}"))?
        .into_inner();
    if resp.status != Code::Success as i32 {
        let name = Code::try_from(resp.status)
            .map(|c| c.as_str_name())
            .unwrap_or("UNKNOWN");
        bail!("{name}: {}", resp.info);
    }
    Ok(resp)
}
