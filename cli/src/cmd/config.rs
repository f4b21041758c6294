//! `ordo config orderer|peer`: the config file and key directory of one node, for the
//! host it runs on.
//!
//! Across machines, an org's admin runs this where the org's crypto directory is, once per
//! node, and installs the directory it writes on the node's host (a volume, a Kubernetes
//! Secret, `/etc/ordo`): the node's own key pairs, its org's TLS CA and a config that names
//! them by relative paths (taken from the config file's directory, so the directory can be
//! installed anywhere). No CA key and no other member's key is copied. The listen
//! addresses default to every interface (`0.0.0.0`), as a node other hosts dial needs;
//! the example configs' `127.0.0.1` suits only `ordo up`.
//!
//! `ordo up` writes its nodes' configs with the same functions ([`orderer_toml`],
//! [`peer_toml`]), naming the crypto directory's files in place.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::cmd::bundle;
use crate::cmd::crypto::{Manifest, OrgEntry};

/// `ordo config ...`
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Write an orderer's config and key directory for the host it runs on.
    Orderer(OrdererConfigArgs),
    /// Write a peer's config and key directory for the host it runs on.
    Peer(PeerConfigArgs),
}

/// Flags every node kind takes.
#[derive(Args, Clone)]
pub struct NodeConfigArgs {
    /// The org's crypto directory (`ordo crypto init`).
    #[arg(long)]
    pub crypto: PathBuf,
    /// The node's org.
    #[arg(long)]
    pub org: String,
    /// The member whose identity the node runs with (default: `orderer` or `peer`; a
    /// second orderer of the org: the name given to `ordo crypto issue --name`).
    #[arg(long)]
    pub member: Option<String>,
    /// The node's name in logs (and an orderer's consenter id): default `<member>.<org>`,
    /// the id `ordo channel genesis --org-bundle` gives the bundle's orderers.
    #[arg(long)]
    pub name: Option<String>,
    /// gRPC listen address on the node's host (default `0.0.0.0:7050` for an orderer,
    /// `0.0.0.0:7051` for a peer: every interface).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Operations (health, metrics) listen address (default `0.0.0.0:8443` for an orderer,
    /// `0.0.0.0:9443` for a peer). Plain HTTP: keep it on the monitoring network.
    #[arg(long)]
    pub ops_listen: Option<std::net::SocketAddr>,
    /// The node's data directory on its host.
    #[arg(long, default_value = "/var/lib/ordo")]
    pub data_dir: PathBuf,
    /// The directory to write: the config file and the node's key material (created with
    /// mode 0700; keys 0600). Install it on the node's host.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a config and key files already in `--out`.
    #[arg(long)]
    pub force: bool,
    /// No TLS: plaintext gRPC. Development only.
    #[arg(long)]
    pub insecure: bool,
}

/// `ordo config orderer`
#[derive(Args)]
pub struct OrdererConfigArgs {
    #[command(flatten)]
    pub node: NodeConfigArgs,
}

/// `ordo config peer`
#[derive(Args)]
pub struct PeerConfigArgs {
    #[command(flatten)]
    pub node: NodeConfigArgs,
    /// Where other nodes reach this peer, `HOST:PORT`, as it announces itself to the
    /// channel (`[discovery] endpoint`). Needed when --listen is an unspecified address
    /// (the default 0.0.0.0): then nothing else says how the peer is reached.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// A peer asked for endorsements besides those discovery finds, `HOST:PORT`
    /// (repeatable, in order). Not needed when the channel names anchor peers.
    #[arg(long = "endorser")]
    pub endorsers: Vec<String>,
    /// Org bundles of the channel's orgs: every other org's peer endpoint becomes an
    /// endorser (after those given with --endorser). Not needed when the channel names
    /// anchor peers (a channel made from bundles does: their peer endpoints).
    #[arg(long = "org-bundle")]
    pub org_bundles: Vec<PathBuf>,
    /// An orderer to pull blocks from when the channel's consenters cannot be reached,
    /// `HOST:PORT` (repeatable; the channel config's consenters come first).
    #[arg(long = "orderer")]
    pub orderers: Vec<String>,
}

/// The files a node config names, as written into it (relative to the config file or
/// absolute).
#[derive(Debug, Clone)]
pub struct NodeFiles {
    /// Identity key.
    pub key: PathBuf,
    /// Identity certificate.
    pub cert: PathBuf,
    /// TLS certificate, key and the CA certificates to trust; `None`: plaintext.
    pub tls: Option<(PathBuf, PathBuf, Vec<PathBuf>)>,
}

/// What both node kinds' `[node]` and `[identity]` sections say.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// First line: who wrote the file.
    pub written_by: String,
    /// `[node] name`.
    pub name: String,
    /// `[node] listen_addr`.
    pub listen_addr: String,
    /// `[node] ops_listen_addr`.
    pub ops_listen_addr: String,
    /// `[node] data_dir`.
    pub data_dir: PathBuf,
    /// Key and certificate files.
    pub files: NodeFiles,
}

/// A TOML string literal (quotes and escapes as TOML needs).
fn lit(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn path_lit(p: &Path) -> String {
    lit(&p.display().to_string())
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| lit(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn common_sections(spec: &NodeSpec, kind: &str) -> String {
    let f = &spec.files;
    let mut text = format!(
        "# {}. Every field with its default: `ordo {kind} --print-example-config`;\n\
         # any field can be overridden with ORDO_<SECTION>_<KEY>.\n\
         # Relative paths are taken from this file's directory.\n\
         [node]\nname = {}\nlisten_addr = {}\nops_listen_addr = {}\ndata_dir = {}\n\n\
         [identity]\nkey_file = {}\ncert_file = {}\n",
        spec.written_by,
        lit(&spec.name),
        lit(&spec.listen_addr),
        lit(&spec.ops_listen_addr),
        path_lit(&spec.data_dir),
        path_lit(&f.key),
        path_lit(&f.cert),
    );
    if let Some((cert, key, cas)) = &f.tls {
        let cas: Vec<String> = cas.iter().map(|c| c.display().to_string()).collect();
        text.push_str(&format!(
            "\n[tls]\n# Mutual TLS; the channel configs add every other org's TLS CA.\n\
             enabled = true\ncert_file = {}\nkey_file = {}\nca_files = {}\n",
            path_lit(cert),
            path_lit(key),
            list(&cas)
        ));
    }
    text
}

/// An orderer's config file.
pub fn orderer_toml(spec: &NodeSpec) -> String {
    common_sections(spec, "orderer")
}

/// A peer's config file: `orderer_endpoints` for `[deliver]`, `endorsers` for
/// `[gateway]`, the announced `endpoint` for `[discovery]` (default: the listen address).
pub fn peer_toml(
    spec: &NodeSpec,
    orderer_endpoints: &[String],
    endorsers: &[String],
    endpoint: Option<&str>,
) -> String {
    format!(
        "{}\n[deliver]\n# Tried after the channel configuration's consenters.\norderer_endpoints = {}\n\n\
         [gateway]\n# Peers asked for endorsements besides those discovery finds.\nendorsers = {}\n\n\
         [discovery]\n# Where the channel's other peers reach this one (empty: the listen address).\n\
         endpoint = {}\n",
        common_sections(spec, "peer"),
        list(orderer_endpoints),
        list(endorsers),
        lit(endpoint.unwrap_or(""))
    )
}

/// Runs a config command.
pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Orderer(a) => {
            let written = write_node_dir(&a.node, Kind::Orderer, |spec| Ok(orderer_toml(spec)))?;
            report(&written);
        }
        ConfigCommand::Peer(a) => {
            for e in a.endorsers.iter().chain(&a.orderers).chain(&a.endpoint) {
                if !bundle::valid_endpoint(e) {
                    bail!("{e:?} is not HOST:PORT");
                }
            }
            let mut endorsers = a.endorsers.clone();
            for path in &a.org_bundles {
                let b = bundle::load(path)?;
                if b.org == a.node.org {
                    continue;
                }
                for p in &b.peers {
                    if let Some(e) = &p.endpoint {
                        if !endorsers.contains(e) {
                            endorsers.push(e.clone());
                        }
                    }
                }
            }
            let written = write_node_dir(&a.node, Kind::Peer, |spec| {
                Ok(peer_toml(
                    spec,
                    &a.orderers,
                    &endorsers,
                    a.endpoint.as_deref(),
                ))
            })?;
            report(&written);
            let unspecified = written
                .spec
                .listen_addr
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|l| l.ip().is_unspecified());
            if a.endpoint.is_none() && unspecified {
                println!(
                    "note: no --endpoint: the peer listens on {} and cannot say where it is \
                     reached, so other gateways will not discover it (give --endpoint \
                     HOST:PORT)",
                    written.spec.listen_addr
                );
            }
        }
    }
    Ok(())
}

fn report(w: &Written) {
    println!(
        "wrote {} and the {} key files it names to {} (listen {}, ops {}, data {}{})",
        w.config.display(),
        w.key_files,
        w.dir.display(),
        w.spec.listen_addr,
        w.spec.ops_listen_addr,
        w.spec.data_dir.display(),
        if w.spec.files.tls.is_some() {
            ", mutual TLS"
        } else {
            ", PLAINTEXT"
        }
    );
    println!(
        "install the directory on the node's host and start it with `ordo {} --config {}`",
        w.kind.command(),
        w.config
            .file_name()
            .map(|f| Path::new("DIR").join(f))
            .unwrap_or_default()
            .display()
    );
}

/// The node kind being configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Orderer,
    Peer,
}

impl Kind {
    fn command(self) -> &'static str {
        match self {
            Kind::Orderer => "orderer",
            Kind::Peer => "peer",
        }
    }

    fn default_ports(self) -> (u16, u16) {
        match self {
            Kind::Orderer => (7050, 8443),
            Kind::Peer => (7051, 9443),
        }
    }

    fn role(self) -> ordo_proto::pb::common::Role {
        match self {
            Kind::Orderer => ordo_proto::pb::common::Role::Orderer,
            Kind::Peer => ordo_proto::pb::common::Role::Peer,
        }
    }
}

/// What [`write_node_dir`] wrote.
struct Written {
    kind: Kind,
    dir: PathBuf,
    config: PathBuf,
    key_files: usize,
    spec: NodeSpec,
}

/// Copies the member's key material into `args.out`, writes the config `render` makes,
/// then loads the written config exactly as the node will (parse, validate, identity key
/// against its certificate, TLS pair), so a directory this returns is one the node
/// starts from. Nothing is written when the member is missing or has the wrong role; an
/// existing config is replaced only with `--force`.
fn write_node_dir(
    args: &NodeConfigArgs,
    kind: Kind,
    render: impl FnOnce(&NodeSpec) -> anyhow::Result<String>,
) -> anyhow::Result<Written> {
    let manifest = Manifest::load(&args.crypto)?;
    let org: &OrgEntry = manifest
        .org(&args.org)
        .with_context(|| format!("{}", args.crypto.display()))?;
    let member = args
        .member
        .clone()
        .unwrap_or_else(|| kind.command().to_string());
    let files = org.members.get(&member).with_context(|| {
        format!(
            "{} has no member {member:?} (members: {}); a second {} is made with `ordo crypto \
             issue --org {} --name NAME --role {}`",
            org.name,
            org.members.keys().cloned().collect::<Vec<_>>().join(", "),
            kind.command(),
            org.name,
            kind.command()
        )
    })?;
    let identity = files
        .load()
        .with_context(|| format!("loading {member} of {}", org.name))?;
    if identity.role() != kind.role() {
        bail!(
            "{member} of {} has role {:?}, not {}: a {} runs with a {} identity",
            org.name,
            identity.role(),
            kind.command(),
            kind.command(),
            kind.command()
        );
    }
    let tls = match (&files.tls, &org.tls_ca, args.insecure) {
        (_, _, true) => None,
        (Some(pair), Some(ca), false) => Some((pair.cert.clone(), pair.key.clone(), ca.clone())),
        _ => bail!(
            "{member} of {} has no TLS certificate (`ordo crypto renew --org {} --name {member} \
             --tls-only --hosts ...` makes one naming the node's hosts), or pass --insecure \
             for a plaintext development node",
            org.name,
            org.name
        ),
    };

    let (port, ops_port) = kind.default_ports();
    let config_name = format!("{}.toml", kind.command());
    let config_path = args.out.join(&config_name);
    if config_path.exists() && !args.force {
        bail!(
            "{} exists: pass --force to replace it (and the key files beside it)",
            config_path.display()
        );
    }
    // Copies: (source, file name in --out, private).
    let mut copies: Vec<(PathBuf, String, bool)> = vec![
        (files.key.clone(), format!("{member}.key"), true),
        (files.cert.clone(), format!("{member}.cert"), false),
    ];
    if let Some((cert, key, ca)) = &tls {
        copies.push((cert.clone(), format!("{member}.tls.crt"), false));
        copies.push((key.clone(), format!("{member}.tls.key"), true));
        copies.push((ca.clone(), "tls-ca.crt".into(), false));
    }
    create_private_dir(&args.out)?;
    for (from, name, private) in &copies {
        install(from, &args.out.join(name), *private)?;
    }
    let spec = NodeSpec {
        written_by: format!(
            "Written by `ordo config {}` for {member} of {}",
            kind.command(),
            org.name
        ),
        name: args
            .name
            .clone()
            .unwrap_or_else(|| format!("{member}.{}", org.name)),
        listen_addr: args
            .listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| format!("0.0.0.0:{port}")),
        ops_listen_addr: args
            .ops_listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| format!("0.0.0.0:{ops_port}")),
        data_dir: args.data_dir.clone(),
        files: NodeFiles {
            key: format!("{member}.key").into(),
            cert: format!("{member}.cert").into(),
            tls: tls.as_ref().map(|_| {
                (
                    PathBuf::from(format!("{member}.tls.crt")),
                    PathBuf::from(format!("{member}.tls.key")),
                    vec![PathBuf::from("tls-ca.crt")],
                )
            }),
        },
    };
    let text = render(&spec)?;
    check_loads(kind, &text, &args.out)?;
    write_file(&config_path, text.as_bytes(), false)?;
    Ok(Written {
        kind,
        dir: args.out.clone(),
        config: config_path,
        key_files: copies.len(),
        spec,
    })
}

/// Loads `text` as the node would from `dir`: parses and validates the config (no
/// environment overrides), and loads the identity and the TLS key pair it names.
fn check_loads(kind: Kind, text: &str, dir: &Path) -> anyhow::Result<()> {
    let (identity, tls) = match kind {
        Kind::Orderer => {
            let c = ordo_orderer::config::OrdererConfig::parse(text, &[], dir, "the new config")?;
            ((c.identity.key_file, c.identity.cert_file), c.tls)
        }
        Kind::Peer => {
            let c = ordo_peer::node::config::PeerConfig::parse(text, &[], dir, "the new config")?;
            ((c.identity.key_file, c.identity.cert_file), c.tls)
        }
    };
    ordo_proto::identity::Identity::load(&identity.0, &identity.1)?;
    if tls.enabled {
        ordo_sdk::tls::ServerTls::from_files(&ordo_sdk::tls::TlsFiles {
            cert: tls.cert_file.clone(),
            key: tls.key_file.clone(),
            ca: tls.ca_files.clone(),
        })?;
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
    }
    Ok(())
}

fn install(from: &Path, to: &Path, private: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write_file(to, &bytes, private)
}

/// Writes `bytes` to `path` through a temporary file and a rename, with mode 0600 for
/// private files (0644 otherwise), so a reader never sees half a key.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tls: bool) -> NodeSpec {
        NodeSpec {
            written_by: "test".into(),
            name: "orderer.\"Bank\"A".into(),
            listen_addr: "0.0.0.0:7050".into(),
            ops_listen_addr: "0.0.0.0:8443".into(),
            data_dir: "/var/lib/ordo".into(),
            files: NodeFiles {
                key: "o.key".into(),
                cert: "o.cert".into(),
                tls: tls.then(|| {
                    (
                        "o.tls.crt".into(),
                        "o.tls.key".into(),
                        vec!["ca.crt".into()],
                    )
                }),
            },
        }
    }

    #[test]
    fn orderer_config_parses_as_written_with_paths_from_its_directory() {
        for tls in [false, true] {
            let text = orderer_toml(&spec(tls));
            let c =
                ordo_orderer::config::OrdererConfig::parse(&text, &[], Path::new("/etc/ordo"), "t")
                    .expect("parses");
            assert_eq!(c.node.name, "orderer.\"Bank\"A", "quotes escaped");
            assert_eq!(c.node.listen_addr.to_string(), "0.0.0.0:7050");
            assert_eq!(c.identity.key_file, PathBuf::from("/etc/ordo/o.key"));
            assert_eq!(c.node.data_dir, PathBuf::from("/var/lib/ordo"));
            assert_eq!(c.tls.enabled, tls);
            if tls {
                assert_eq!(c.tls.ca_files, vec![PathBuf::from("/etc/ordo/ca.crt")]);
            }
        }
    }

    #[test]
    fn peer_config_carries_orderers_and_endorsers() {
        let text = peer_toml(
            &spec(true),
            &["o.example:7050".into()],
            &["peer.bankb:7051".into(), "peer.bankc:7051".into()],
            Some("peer.banka:7051"),
        );
        let c = ordo_peer::node::config::PeerConfig::parse(&text, &[], Path::new("/k"), "t")
            .expect("parses");
        assert_eq!(c.announced_endpoint().as_deref(), Some("peer.banka:7051"));
        assert_eq!(
            c.deliver.orderer_endpoints,
            vec!["o.example:7050".to_string()]
        );
        assert_eq!(c.gateway.endorsers.len(), 2);
        assert!(c.tls.enabled);
    }
}
