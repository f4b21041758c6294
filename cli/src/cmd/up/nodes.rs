//! Starting and stopping the processes of an `ordo up` network: orderers, peers, the
//! kafka mock cluster, and waiting until the network orders.

use super::*;

/// Polls a channel's info on an orderer until its chain takes envelopes: a kafka chain
/// is ready (role `kafka`), a raft chain knows its leader.
pub(super) async fn wait_orderable(
    addr: &str,
    admin: &Member,
    channel: &str,
    consensus: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut role = String::new();
    while tokio::time::Instant::now() < deadline {
        let info = crate::client::admin(
            addr,
            admin,
            channel,
            admin_command::Command::Info(GetChannelInfo {
                channel_id: channel.to_string(),
            }),
        )
        .await;
        if let Ok(resp) = info {
            let info = resp.channel.unwrap_or_default();
            let ready = match consensus {
                "kafka" => info.role == "kafka",
                "raft" => !info.leader.is_empty(),
                _ => true,
            };
            if ready {
                return Ok(());
            }
            role = info.role;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the {consensus} chain was not ready after {timeout:?} (state: {role:?}); see the orderer's log"
    )
}

/// Polls every peer's discovery until each sees all `peers` of the network on `channel`
/// (their gateways can then reach every org's endorsers), for a channel whose genesis
/// configuration names anchor peers; a channel without anchors is not waited for.
pub(super) async fn wait_discovered(
    network: &Network,
    channel: &ChannelEntry,
    timeout: Duration,
) -> anyhow::Result<()> {
    let genesis = std::fs::read(&channel.genesis_block)
        .with_context(|| format!("reading {}", channel.genesis_block.display()))?;
    let genesis = <ordo_proto::pb::common::Block as prost::Message>::decode(genesis.as_slice())
        .context("decoding the genesis block")?;
    let config = ordo_proto::config::config_from_block(&genesis)?;
    if config.orgs.iter().all(|o| o.anchor_peers.is_empty()) {
        return Ok(());
    }
    let peers: Vec<&NodeEntry> = network.nodes_with_role("peer").collect();
    let deadline = tokio::time::Instant::now() + timeout;
    for peer in &peers {
        let member = network.member(Some(&peer.org), "client")?;
        let gateway = ordo_sdk::gateway::Gateway::connect(
            &peer.grpc_addr,
            &member.transport,
            member.identity,
        )
        .await?;
        let mut seen = Vec::new();
        while seen.len() < peers.len() {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} discovered {} of the {} peers on channel {} within {timeout:?} ({}); \
                     see the peers' logs",
                    peer.name,
                    seen.len(),
                    peers.len(),
                    channel.name,
                    seen.join(", ")
                );
            }
            seen = gateway
                .peers(&channel.name)
                .await
                .map(|p| p.into_iter().map(|p| p.endpoint).collect())
                .unwrap_or_default();
            if seen.len() < peers.len() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}

/// Marks a network directory whose kafka channels ran on the mock cluster.
pub(super) const MOCK_MARKER: &str = "kafka-mock.brokers";

/// Starts `ordo kafka mock` with a topic per channel and returns it with its bootstrap
/// address (the first line it prints).
pub(super) async fn start_kafka_mock(
    dir: &Path,
    channels: &[String],
    exe: &Path,
) -> anyhow::Result<(tokio::process::Child, String)> {
    use tokio::io::AsyncBufReadExt;
    let log_file = dir.join("kafka-mock.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_file)
        .with_context(|| format!("opening {}", log_file.display()))?;
    let topics: Vec<String> = channels
        .iter()
        .map(|c| ordo_consensus::kafka::default_topic(c))
        .collect();
    let mut child = tokio::process::Command::new(exe)
        .args([
            "kafka",
            "mock",
            "--brokers",
            "3",
            "--topics",
            &topics.join(","),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .context("starting the kafka mock cluster")?;
    let stdout = child.stdout.take().context("mock cluster stdout")?;
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    let brokers = line.trim().to_string();
    if !matches!(read, Ok(Ok(n)) if n > 0) || brokers.is_empty() {
        stop(&mut child).await;
        bail!(
            "the kafka mock cluster did not start; see {}",
            log_file.display()
        );
    }
    Ok((child, brokers))
}

/// Writes the config of the peer of `org` (first run), starts it, and waits until its
/// Admin service answers.
/// The gRPC and operations addresses of org `org`'s peer (index `index`): the earlier
/// run's, or the defaults after the first orderer's ports.
pub(super) fn peer_addrs(
    org: &str,
    index: usize,
    args: &UpArgs,
    previous: Option<&Network>,
) -> (String, String) {
    let name = format!("peer0.{org}");
    match previous.and_then(|p| p.node(&name).ok()) {
        Some(n) => (n.grpc_addr.clone(), n.ops_addr.clone()),
        None => (
            format!("127.0.0.1:{}", args.port + 1 + index as u16),
            format!("127.0.0.1:{}", args.ops_port + 1 + index as u16),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn start_peer(
    dir: &Path,
    org: &crate::cmd::crypto::OrgEntry,
    addrs: &(String, String),
    orderer_addrs: &[String],
    args: &UpArgs,
    exe: &Path,
    network: &Network,
    tls: bool,
) -> anyhow::Result<(NodeEntry, tokio::process::Child)> {
    let name = format!("peer0.{}", org.name);
    let node_dir = dir.join(&name);
    std::fs::create_dir_all(&node_dir)?;
    let config_path = node_dir.join("peer.toml");
    let (grpc_addr, ops_addr) = addrs.clone();
    let files = org
        .members
        .get("peer")
        .context("org has no peer identity")?;
    if !config_path.exists() {
        let spec = NodeSpec {
            written_by: "Written by `ordo up`".into(),
            name: name.clone(),
            listen_addr: grpc_addr.clone(),
            ops_listen_addr: ops_addr.clone(),
            data_dir: node_dir.join("data"),
            files: node_files(org, files, tls)?,
        };
        let text = crate::cmd::config::peer_toml(&spec, orderer_addrs, &[], None);
        std::fs::write(&config_path, text)
            .with_context(|| format!("writing {}", config_path.display()))?;
    }
    let command = vec![
        exe.display().to_string(),
        "peer".into(),
        "--config".into(),
        config_path.display().to_string(),
    ];
    let log_file = node_dir.join("peer.log");
    let mut child = spawn(&command, &log_file)?;
    let admin = network.member(Some(&org.name), "admin")?;
    if let Err(e) = wait_ready(
        &name,
        &grpc_addr,
        &admin,
        &mut child,
        &log_file,
        Duration::from_secs(args.ready_timeout_s),
    )
    .await
    {
        stop(&mut child).await;
        return Err(e);
    }
    let entry = NodeEntry {
        name,
        role: "peer".into(),
        org: org.name.clone(),
        grpc_addr,
        ops_addr,
        pid: child.id(),
        command,
        config: config_path,
        data_dir: node_dir.join("data"),
        log_file,
    };
    Ok((entry, child))
}

/// The files a node's config names: its identity and TLS key pairs in the crypto
/// directory, trusting its own org's TLS CA (every other org's comes with the channel
/// configs); no TLS with --insecure.
pub(super) fn node_files(
    org: &crate::cmd::crypto::OrgEntry,
    files: &IdentityFiles,
    tls: bool,
) -> anyhow::Result<NodeFiles> {
    let tls = if tls {
        let (Some(pair), Some(ca)) = (&files.tls, &org.tls_ca) else {
            bail!(
                "org {} has no TLS certificates (a crypto directory from before TLS); \
                 use --insecure or start a fresh network directory",
                org.name
            );
        };
        Some((pair.cert.clone(), pair.key.clone(), vec![ca.clone()]))
    } else {
        None
    };
    Ok(NodeFiles {
        key: files.key.clone(),
        cert: files.cert.clone(),
        tls,
    })
}

/// Writes orderer `index`'s config (first run) and starts it.
pub(super) fn start_orderer(
    dir: &Path,
    index: usize,
    org: &str,
    node_files: &NodeFiles,
    grpc_addr: &str,
    ops_addr: &str,
    exe: &Path,
) -> anyhow::Result<(NodeEntry, tokio::process::Child)> {
    let name = format!("orderer{index}");
    let node_dir = dir.join(&name);
    std::fs::create_dir_all(&node_dir)?;
    let config_path = node_dir.join("orderer.toml");
    if !config_path.exists() {
        let spec = NodeSpec {
            written_by: "Written by `ordo up`".into(),
            name: name.clone(),
            listen_addr: grpc_addr.to_string(),
            ops_listen_addr: ops_addr.to_string(),
            data_dir: node_dir.join("data"),
            files: node_files.clone(),
        };
        std::fs::write(&config_path, crate::cmd::config::orderer_toml(&spec))
            .with_context(|| format!("writing {}", config_path.display()))?;
    }
    let command = vec![
        exe.display().to_string(),
        "orderer".to_string(),
        "--config".to_string(),
        config_path.display().to_string(),
    ];
    let log_file = node_dir.join("orderer.log");
    let child = spawn(&command, &log_file)?;
    let entry = NodeEntry {
        name,
        role: "orderer".into(),
        org: org.to_string(),
        grpc_addr: grpc_addr.to_string(),
        ops_addr: ops_addr.to_string(),
        pid: child.id(),
        command,
        config: config_path,
        data_dir: node_dir.join("data"),
        log_file,
    };
    Ok((entry, child))
}

/// Stops every node of `nodes`.
pub(super) async fn stop_all(nodes: &mut [(String, tokio::process::Child)]) {
    for (_, c) in nodes.iter_mut() {
        stop(c).await;
    }
}

/// Starts a node: `command` (as recorded in `network.json`), with `ordo up`'s
/// environment, output appended to `log_file`. The one way nodes are started, by `ordo
/// up` and by `ordo node start`, so a restarted node runs exactly as the first one did.
///
/// The node gets a process group of its own: a Ctrl-C in the terminal reaches only `ordo
/// up`, which then stops the nodes in order (peers first), rather than every node at
/// once racing the supervisor (which would see them as crashed).
pub(crate) fn spawn(command: &[String], log_file: &Path) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .with_context(|| format!("opening {}", log_file.display()))?;
    let err = log.try_clone()?;
    let (prog, rest) = command.split_first().context("empty command")?;
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.spawn()
        .with_context(|| format!("starting {}", command.join(" ")))
}

/// Fails, naming the node and the address, when another process already listens on the
/// node's gRPC or operations address (the node itself would only log a bind error and
/// exit). `hint` ends the message: what the user can do about it.
pub(crate) fn check_ports_free(
    name: &str,
    grpc_addr: &str,
    ops_addr: &str,
    hint: &str,
) -> anyhow::Result<()> {
    for (what, addr) in [("gRPC", grpc_addr), ("operations", ops_addr)] {
        // std's listener sets SO_REUSEADDR, as the nodes' do: a port in TIME_WAIT after a
        // node stopped counts as free, as it is for the node.
        match std::net::TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
                "{name} cannot start: its {what} address {addr} is already in use by another \
                 process{hint}"
            ),
            // Anything else (an address that does not resolve, …) the node reports itself.
            _ => {}
        }
    }
    Ok(())
}

/// Polls the Admin service of node `name` until it answers; returns the channels it
/// serves. Fails when the process exits first (with the end of its log) or after
/// `timeout`.
pub(crate) async fn wait_ready(
    name: &str,
    addr: &str,
    admin: &Member,
    child: &mut tokio::process::Child,
    log_file: &Path,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_err = String::new();
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "{name} exited during start-up ({status}); the last lines of {}:\n{}",
                log_file.display(),
                tail(log_file, 20)
            );
        }
        match crate::client::admin(
            addr,
            admin,
            "",
            admin_command::Command::List(ListChannels {}),
        )
        .await
        {
            Ok(resp) => {
                return Ok(resp
                    .list
                    .unwrap_or_default()
                    .channels
                    .into_iter()
                    .map(|c| c.channel_id)
                    .collect());
            }
            Err(e) => last_err = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "{name} at {addr} was not ready after {timeout:?} (last error: {last_err}); see {}",
        log_file.display()
    )
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// SIGTERM, then SIGKILL after 20 s; the exit status (unknown when waiting failed).
pub(crate) async fn stop(child: &mut tokio::process::Child) -> Option<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        #[cfg(unix)]
        #[allow(unsafe_code)]
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is
        // our own child's, which we have not yet reaped, so it cannot have been reused.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    }
}
