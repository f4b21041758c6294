//! The three-bank compose consortium (`deploy/compose/`) on the real Docker engine, built
//! from the image of `deploy/docker/` with the `ordo` binary under test.
//!
//! One test walks the whole life of the consortium: the image builds offline (a base made
//! by debootstrap, the binary stripped into it), `docker compose up` brings three banks'
//! orderers and peers up and prints its ready line, 1,000 bank transfers go through each
//! bank's gateway, and then the consortium is hurt in the ways operators hurt it — the raft
//! leader's container is killed, one bank's orderer is cut off the consortium network and
//! reconnected, every container is rolled onto a new image one at a time, and the whole
//! project goes `down` and `up` again with its volumes kept — with more transfers after
//! each step. At the end money is conserved on every peer, every acknowledged transfer is
//! VALID on every peer, the peers agree on their commit hash and the orderers on their
//! chain.
//!
//! A second test starts containers with bad input (no key files, a data volume the node
//! user cannot write) and checks each exits non-zero with one line naming the problem.
//!
//! Needs Docker with compose (`docker compose` or `docker-compose`) and debootstrap for the
//! base image (`.ci/run` installs it); `ORDO_SKIP_DOCKER=1` skips on purpose.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ordo_proto::identity::Identity;
use ordo_sdk::gateway::{Contract, GatewayError, RetryPolicy};
use ordo_sdk::network::{ChannelEntry, IdentityFiles, Network, NodeEntry};
use ordo_sdk::tls::TlsFiles;

const CHANNEL: &str = "payments";
const BANKS: [(&str, &str); 3] = [("BankA", "banka"), ("BankB", "bankb"), ("BankC", "bankc")];
const ACCOUNTS: usize = 120;
const OPENING_BALANCE: u64 = 1_000;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Whether these tests are skipped on purpose.
fn skipped() -> bool {
    if std::env::var_os("ORDO_SKIP_DOCKER").is_some() {
        eprintln!("ORDO_SKIP_DOCKER is set: skipping the Docker tests");
        return true;
    }
    false
}

/// Runs a command, asserting success; stdout.
fn sh_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start: {e} (is Docker installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker(args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(args);
    c
}

/// `ordo-test:<tag>` built once per test binary from the binary under test (the base
/// image is made once per machine: `base-image.sh` keeps an existing one).
fn image(revision: &str) -> String {
    static BUILT: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tag) = built.get(revision) {
        return tag.clone();
    }
    let tag = format!("ordo-test:{revision}-{}", std::process::id());
    let script = repo_root().join("deploy/docker/build-image.sh");
    sh_ok(
        Command::new(&script)
            .arg(&tag)
            .arg(env!("CARGO_BIN_EXE_ordo"))
            .env("ORDO_IMAGE_REVISION", revision),
    );
    built.insert(revision.to_string(), tag.clone());
    tag
}

/// One compose project, taken down with its volumes when dropped.
/// Untags the test's images (best effort; an image still in use stays until it is not).
fn remove_images(tags: &[&str]) {
    for t in tags {
        let _ = docker(&["image", "rm", "-f", t]).output();
    }
}

struct Project {
    name: String,
    base: Vec<String>,
    env: Vec<(String, String)>,
    ports: BTreeMap<String, u16>,
    /// Containers and volumes made outside compose (a restored peer), removed on drop.
    extra_containers: Vec<String>,
    extra_volumes: Vec<String>,
}

impl Project {
    fn new(image: &str) -> Self {
        let base = if Command::new("docker")
            .args(["compose", "version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            vec!["docker".to_string(), "compose".to_string()]
        } else {
            vec!["docker-compose".to_string()]
        };
        let name = format!("ordoci{}", std::process::id());
        let mut ports = BTreeMap::new();
        let mut env = vec![("ORDO_IMAGE".to_string(), image.to_string())];
        for (_, dom) in BANKS.iter().chain([&("BankD", "bankd")]) {
            for role in ["orderer", "peer"] {
                let port = common::free_port();
                let var = format!("ORDO_{}_{}_PORT", dom.to_uppercase(), role.to_uppercase());
                env.push((var, port.to_string()));
                ports.insert(format!("{role}.{dom}"), port);
            }
        }
        Self {
            name,
            base,
            env,
            ports,
            extra_containers: Vec::new(),
            extra_volumes: Vec::new(),
        }
    }

    fn compose(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.base[0]);
        c.args(&self.base[1..])
            .arg("-f")
            .arg(repo_root().join("deploy/compose/docker-compose.yml"))
            .arg("-f")
            .arg(repo_root().join("deploy/compose/bankd.yml"))
            .args(["-p", &self.name])
            .args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn set_image(&mut self, image: &str) {
        for (k, v) in &mut self.env {
            if k == "ORDO_IMAGE" {
                *v = image.to_string();
            }
        }
    }

    fn up(&self) {
        let out = self.compose(&["up", "-d"]).output().expect("compose up");
        assert!(
            out.status.success(),
            "compose up failed:\n{}\n--- logs ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs("")
        );
        let ready = self.container("ready");
        let code = sh_ok(&mut docker(&["wait", &ready]));
        let logs = self.logs("ready");
        assert_eq!(
            code.trim(),
            "0",
            "the ready step failed:\n{logs}\n{}",
            self.logs("")
        );
        assert!(
            logs.contains("ordo consortium ready: channel payments"),
            "no ready line:\n{logs}"
        );
    }

    fn container(&self, service: &str) -> String {
        let id = sh_ok(&mut self.compose(&["ps", "-a", "-q", service]));
        let id = id.lines().next().unwrap_or("").trim().to_string();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn logs(&self, service: &str) -> String {
        let mut args = vec!["logs", "--no-color"];
        if !service.is_empty() {
            args.push(service);
        }
        let out = self.compose(&args).output().expect("compose logs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn network(&self) -> String {
        format!("{}_consortium", self.name)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        for c in &self.extra_containers {
            let _ = docker(&["rm", "-f", "-v", c]).output();
        }
        let _ = self
            .compose(&[
                "--profile",
                "admin",
                "--profile",
                "cli",
                "down",
                "-v",
                "--remove-orphans",
                "-t",
                "5",
            ])
            .output();
        for v in &self.extra_volumes {
            let _ = docker(&["volume", "rm", "-f", v]).output();
        }
    }
}

/// `compose run --rm SERVICE ARGS...` (a one-shot of the `admin` or `cli` profile),
/// asserting success; stdout.
fn run_service(project: &Project, service: &str, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", "-T", service];
    all.extend_from_slice(args);
    sh_ok(&mut project.compose(&all))
}

/// A fourth bank joins the running consortium the way deploy/compose/bankd.yml lists:
/// its own keys, the org added by a majority of the three (each signing with its own
/// keys only), its orderer made a consenter by three of four, its nodes joined. Returns
/// the tx id of a transfer BankD's gateway got endorsed and committed.
fn fourth_bank_joins(project: &Project) -> String {
    run_service(project, "setup-bankd", &[]);
    run_service(project, "admin-banka", &["propose-org", "BankD", CHANNEL]);
    run_service(project, "admin-banka", &["sign", "add-org-BankD"]);
    let signed = run_service(project, "admin-bankb", &["sign", "add-org-BankD"]);
    assert!(
        signed.contains("Admins policy: met"),
        "two of three should do: {signed}"
    );
    run_service(project, "admin-banka", &["submit", "add-org-BankD"]);
    run_service(
        project,
        "admin-banka",
        &["propose-consenter", "BankD", CHANNEL],
    );
    for admin in ["admin-banka", "admin-bankb", "admin-bankc"] {
        run_service(project, admin, &["sign", "add-consenter-BankD"]);
    }
    run_service(
        project,
        "admin-banka",
        &["submit", "add-consenter-BankD", "join-bankd.block"],
    );
    sh_ok(&mut project.compose(&["up", "-d", "--no-deps", "orderer-bankd", "peer-bankd"]));
    wait_healthy(&project.container("orderer-bankd"));
    wait_healthy(&project.container("peer-bankd"));
    run_service(project, "join-bankd", &[]);
    let out = run_service(
        project,
        "cli-bankd",
        &[
            "tx",
            "invoke",
            "--org",
            "BankD",
            "--chaincode",
            "bank",
            "--fn",
            "transfer",
            "--args",
            "acct0",
            "acct1",
            "1",
            "--json",
        ],
    );
    let done: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("BankD's invoke printed {out:?}: {e}"));
    assert_eq!(done["code"], "VALID", "BankD's transfer: {done}");
    done["tx_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no tx id in {done}"))
        .to_string()
}

/// A backup of BankA's running peer, restored into a new volume and served by a new
/// container on the consortium network (published on `port`). Returns the container.
fn restore_peer_backup(project: &mut Project, image: &str, port: u16) -> String {
    let out = run_service(
        project,
        "cli-banka",
        &[
            "node",
            "backup",
            "--name",
            "ci-1",
            "--node",
            "peer.BankA",
            "--org",
            "BankA",
            "--json",
        ],
    );
    let backup: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("backup answered {out:?}: {e}"));
    assert!(
        backup["channels"].as_array().is_some_and(|c| !c.is_empty()),
        "the backup holds no channel: {backup}"
    );
    let source = format!("{}_banka-peer-data", project.name);
    let restored = format!("{}_restored-peer-data", project.name);
    project.extra_volumes.push(restored.clone());
    sh_ok(&mut docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{source}:/src:ro"),
        "-v",
        &format!("{restored}:/var/lib/ordo"),
        image,
        "node",
        "restore",
        "--backup",
        "/src/backups/ci-1",
        "--data-dir",
        "/var/lib/ordo",
    ]));
    let name = format!("{}-restored-peer", project.name);
    project.extra_containers.push(name.clone());
    sh_ok(&mut docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &project.network(),
        "-p",
        &format!("127.0.0.1:{port}:7051"),
        "-v",
        &format!("{restored}:/var/lib/ordo"),
        "-v",
        &format!("{}_banka-peer-keys:/etc/ordo/keys:ro", project.name),
        image,
        "peer",
        "--config",
        "/etc/ordo/keys/peer.toml",
    ]));
    wait_healthy(&name);
    name
}

/// `ordo channel info --json` of a BankD node, asked from BankD's client container.
fn bankd_info(project: &Project, node: &str) -> serde_json::Value {
    let out = run_service(
        project,
        "cli-bankd",
        &[
            "channel",
            "info",
            "--node",
            node,
            "--org",
            "BankD",
            "--channel",
            CHANNEL,
            "--json",
        ],
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{node} info {out:?}: {e}"))
}

/// The host's view of the consortium: every bank's client and admin material copied out
/// of the banks' volumes, nodes at their published ports.
fn host_network(project: &Project, dir: &Path) -> Network {
    let shared = dir.join("shared");
    sh_ok(&mut docker(&[
        "cp",
        &format!("{}:/etc/ordo/shared", project.container("genesis")),
        shared.to_str().expect("utf-8"),
    ]));
    let cas: Vec<PathBuf> = BANKS
        .iter()
        .map(|(org, _)| shared.join(format!("tls-ca-{org}.crt")))
        .collect();
    let mut identities = BTreeMap::new();
    for (org, dom) in BANKS {
        let to = dir.join(dom);
        sh_ok(&mut docker(&[
            "cp",
            &format!("{}:/org", project.container(&format!("setup-{dom}"))),
            to.to_str().expect("utf-8"),
        ]));
        let files = to.join("crypto").join(org);
        let member = |m: &str| IdentityFiles {
            key: files.join(format!("{m}.key")),
            cert: files.join(format!("{m}.cert")),
            tls: Some(TlsFiles {
                cert: files.join(format!("{m}.tls.crt")),
                key: files.join(format!("{m}.tls.key")),
                ca: cas.clone(),
            }),
        };
        let mut members = BTreeMap::new();
        members.insert("admin".to_string(), member("admin"));
        members.insert("client".to_string(), member("client"));
        identities.insert(org.to_string(), members);
    }
    let mut nodes = Vec::new();
    for role in ["orderer", "peer"] {
        for (org, dom) in BANKS {
            nodes.push(NodeEntry {
                name: format!("{role}.{org}"),
                role: role.to_string(),
                org: org.to_string(),
                grpc_addr: format!("127.0.0.1:{}", project.ports[&format!("{role}.{dom}")]),
                ops_addr: String::new(),
                pid: None,
                command: Vec::new(),
                config: PathBuf::new(),
                data_dir: PathBuf::new(),
                log_file: PathBuf::new(),
            });
        }
    }
    let net = Network {
        version: ordo_sdk::network::NETWORK_FILE_VERSION,
        dir: dir.to_path_buf(),
        crypto_dir: dir.to_path_buf(),
        channels: vec![ChannelEntry {
            name: CHANNEL.to_string(),
            consensus: "raft".to_string(),
            ack_mode: "committed".to_string(),
            genesis_block: shared.join("payments.block"),
        }],
        nodes,
        identities,
    };
    net.save(&dir.join("network.json")).expect("network.json");
    net
}

/// What the transfers did: acknowledged (VALID) transaction ids, and how many outcomes
/// were unknown (an error after the transaction may have reached the orderers).
#[derive(Default)]
struct Ledger {
    acked: Vec<String>,
    ambiguous: usize,
    refused: usize,
}

/// `n` transfers of 1–5 units between random accounts through `org`'s gateway, `workers`
/// at a time. MVCC conflicts and refusals before the transaction left the gateway are
/// retried with a fresh proposal (nothing was ordered); other failures count as
/// ambiguous and are not retried (a retry could apply a transfer twice).
async fn transfers(
    net: &Network,
    org: &str,
    n: usize,
    workers: usize,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
) {
    let contract = common::org_contract(net, org, CHANNEL, "bank").await;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut contract = contract.clone();
        let ledger = ledger.clone();
        let share = n / workers + usize::from(w < n % workers);
        let mut rng = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(w as u64 * 1442695040888963407 + 1);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let from = (rng >> 33) as usize % ACCOUNTS;
                let to = (from + 1 + (rng >> 17) as usize % (ACCOUNTS - 1)) % ACCOUNTS;
                let amount = 1 + (rng >> 50) % 5;
                transfer_once(&mut contract, from, to, amount, &ledger).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("transfer worker");
    }
}

async fn transfer_once(
    contract: &mut Contract,
    from: usize,
    to: usize,
    amount: u64,
    ledger: &Mutex<Ledger>,
) {
    let args = vec![
        Bytes::from(format!("acct{from}")),
        Bytes::from(format!("acct{to}")),
        Bytes::from(amount.to_string()),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match contract.submit("transfer", args.clone()).await {
            Ok(done) => {
                ledger
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .acked
                    .push(done.tx_id);
                return;
            }
            Err(e) => {
                let safe_to_retry = match &e {
                    GatewayError::NotValid { .. } => true,
                    GatewayError::Connect { .. } => true,
                    GatewayError::Refused { step, .. } => *step == "Endorse" || *step == "Evaluate",
                    GatewayError::Chaincode { .. } => true,
                    GatewayError::Retried { .. } => false,
                };
                {
                    let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
                    if !safe_to_retry {
                        l.ambiguous += 1;
                        return;
                    }
                    l.refused += 1;
                }
                if Instant::now() > deadline {
                    panic!("transfer acct{from}->acct{to} kept failing for 60 s: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Transfers through all three banks' gateways at once.
async fn transfers_everywhere(
    net: &Network,
    per_bank: usize,
    seed: u64,
    ledger: &Arc<Mutex<Ledger>>,
) {
    let mut all = Vec::new();
    for (i, (org, _)) in BANKS.iter().enumerate() {
        let net = net.clone();
        let ledger = ledger.clone();
        let org = org.to_string();
        all.push(tokio::spawn(async move {
            transfers(&net, &org, per_bank, 8, seed * 10 + i as u64, ledger).await
        }));
    }
    for t in all {
        t.await.expect("bank transfers");
    }
}

fn admin_of(net: &Network, org: &str) -> Identity {
    net.member(Some(org), "admin").expect("admin").identity
}

fn node_addr(net: &Network, name: &str) -> String {
    net.node(name).expect("node").grpc_addr.clone()
}

/// Channel info of every node, once all are at one height (waits up to `wait`).
async fn converge(
    net: &Network,
    wait: Duration,
) -> BTreeMap<String, ordo_proto::pb::admin::ChannelInfo> {
    let deadline = Instant::now() + wait;
    loop {
        let mut infos = BTreeMap::new();
        for n in &net.nodes {
            let admin = admin_of(net, &n.org);
            if let Ok(Ok(info)) =
                tokio::time::timeout(Duration::from_secs(5), try_info(&n.grpc_addr, &admin)).await
            {
                infos.insert(n.name.clone(), info);
            }
        }
        let heights: Vec<u64> = infos.values().map(|i| i.height).collect();
        if infos.len() == net.nodes.len() && heights.iter().all(|h| *h == heights[0]) {
            return infos;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not converge within {wait:?}: {:?}",
            infos
                .iter()
                .map(|(n, i)| (n.clone(), i.height))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn try_info(
    addr: &str,
    admin: &Identity,
) -> Result<ordo_proto::pb::admin::ChannelInfo, String> {
    use ordo_proto::pb::admin::{admin_command, GetChannelInfo};
    let ch = common::connect(addr).await.map_err(|e| e.to_string())?;
    let mut client = ordo_sdk::orderer::admin_client(ch);
    let req = ordo_sdk::orderer::admin_request(
        admin,
        CHANNEL,
        admin_command::Command::Info(GetChannelInfo {
            channel_id: CHANNEL.into(),
        }),
    );
    let resp = client
        .execute(req)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    resp.channel
        .ok_or_else(|| "an info answer without the channel".to_string())
}

/// The raft leader's compose service (`orderer-bankb`), as the first orderer that
/// answers sees it; with `not`, waits until a leader other than that service is known
/// (the killed leader's own node cannot be asked, and the others need an election).
async fn leader_service(net: &Network, not: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (org, dom) in BANKS {
            if not == Some(format!("orderer-{dom}").as_str()) {
                continue;
            }
            let name = format!("orderer.{org}");
            let info = tokio::time::timeout(
                Duration::from_secs(5),
                try_info(&node_addr(net, &name), &admin_of(net, org)),
            )
            .await;
            if let Ok(Ok(i)) = info {
                if let Some(leader) = i.leader.strip_prefix("orderer.") {
                    let service = format!("orderer-{}", leader.to_lowercase());
                    if not != Some(service.as_str()) {
                        return service;
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no raft leader (other than {not:?}) known for 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn wait_healthy(container: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = sh_ok(&mut docker(&[
            "inspect",
            "-f",
            "{{.State.Health.Status}}",
            container,
        ]));
        if state.trim() == "healthy" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{container} not healthy after 120 s: {state}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_banks_in_compose_survive_kills_partitions_rolling_upgrades_and_restarts() {
    if skipped() {
        return;
    }
    let first = image("r1");
    let mut project = Project::new(&first);
    let started = Instant::now();
    project.up();
    eprintln!("consortium ready after {:?}", started.elapsed());

    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = host_network(&project, dir.path());
    common::register_network(dir.path().to_str().expect("utf-8"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // Accounts, each opened once through BankA's gateway, eight at a time.
    let bank_a = common::org_contract(&net, "BankA", CHANNEL, "bank").await;
    let mut openers = Vec::new();
    for w in 0..8 {
        let contract = bank_a.clone();
        openers.push(tokio::spawn(async move {
            for i in (w..ACCOUNTS).step_by(8) {
                contract
                    .with_retry_policy(RetryPolicy::with_attempts(10))
                    .submit_with_retry(
                        "open",
                        vec![
                            Bytes::from(format!("acct{i}")),
                            Bytes::from(OPENING_BALANCE.to_string()),
                        ],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("opening acct{i}: {e}"));
            }
        }));
    }
    for o in openers {
        o.await.expect("account opener");
    }

    // 1,000 transfers through each bank's gateway.
    let t = Instant::now();
    transfers_everywhere(&net, 1_000, 1, &ledger).await;
    eprintln!("3,000 transfers in {:?}", t.elapsed());

    // The raft leader's container dies; a new leader serves, the old one comes back.
    let leader = leader_service(&net, None).await;
    let leader_container = project.container(&leader);
    sh_ok(&mut docker(&["kill", &leader_container]));
    transfers_everywhere(&net, 100, 2, &ledger).await;
    let new_leader = leader_service(&net, Some(&leader)).await;
    assert_ne!(new_leader, leader);
    sh_ok(&mut docker(&["start", &leader_container]));
    wait_healthy(&leader_container);
    converge(&net, Duration::from_secs(120)).await;

    // BankC's orderer is cut off the consortium network, then reconnected: it catches up.
    let cut = project.container("orderer-bankc");
    sh_ok(&mut docker(&[
        "network",
        "disconnect",
        &project.network(),
        &cut,
    ]));
    transfers_everywhere(&net, 100, 3, &ledger).await;
    sh_ok(&mut docker(&[
        "network",
        "connect",
        "--alias",
        "orderer.bankc",
        &project.network(),
        &cut,
    ]));
    converge(&net, Duration::from_secs(120)).await;

    // Rolling restart onto a new image: one container at a time, transfers after each.
    let second = image("r2");
    project.set_image(&second);
    for (round, service) in [
        "orderer-banka",
        "peer-banka",
        "orderer-bankb",
        "peer-bankb",
        "orderer-bankc",
        "peer-bankc",
    ]
    .iter()
    .enumerate()
    {
        sh_ok(&mut project.compose(&["up", "-d", "--no-deps", service]));
        let c = project.container(service);
        let running = sh_ok(&mut docker(&["inspect", "-f", "{{.Config.Image}}", &c]));
        assert_eq!(
            running.trim(),
            second,
            "{service} did not move to the new image"
        );
        wait_healthy(&c);
        converge(&net, Duration::from_secs(120)).await;
        transfers_everywhere(&net, 20, 10 + round as u64, &ledger).await;
    }

    // Everything down and up again, volumes kept.
    sh_ok(&mut project.compose(&["down", "-t", "30"]));
    project.up();
    transfers_everywhere(&net, 100, 4, &ledger).await;

    // A fourth bank joins, endorses and commits.
    let bankd_tx = fourth_bank_joins(&project);
    ledger
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .acked
        .push(bankd_tx);
    transfers_everywhere(&net, 30, 5, &ledger).await;

    // A backup of BankA's running peer, restored into a new container, catches up and
    // agrees (it joins the verdict below as one more peer).
    let restored_port = common::free_port();
    let restored_image = project
        .env
        .iter()
        .find(|(k, _)| k == "ORDO_IMAGE")
        .map(|(_, v)| v.clone())
        .expect("image");
    restore_peer_backup(&mut project, &restored_image, restored_port);
    let restored_addr = format!("127.0.0.1:{restored_port}");
    net.nodes.push(NodeEntry {
        name: "peer.BankA-restored".to_string(),
        role: "peer".to_string(),
        org: "BankA".to_string(),
        grpc_addr: restored_addr.clone(),
        ops_addr: String::new(),
        pid: None,
        command: Vec::new(),
        config: PathBuf::new(),
        data_dir: PathBuf::new(),
        log_file: PathBuf::new(),
    });
    common::set_transport(
        &restored_addr,
        net.transport(Some("BankA"), "client")
            .expect("client transport"),
    );
    transfers_everywhere(&net, 30, 6, &ledger).await;

    // The verdict.
    let infos = converge(&net, Duration::from_secs(120)).await;
    let height = infos["peer.BankA"].height;
    let peer_hash = hex::encode(&infos["peer.BankA"].commit_hash);
    let orderer_hash = hex::encode(&infos["orderer.BankA"].last_block_hash);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = bankd_info(&project, "peer.BankD");
        let o = bankd_info(&project, "orderer.BankD");
        if p["height"] == height && o["height"] == height {
            assert_eq!(
                p["commit_hash"],
                peer_hash.as_str(),
                "BankD's peer disagrees"
            );
            assert_eq!(
                o["last_block_hash"],
                orderer_hash.as_str(),
                "BankD's chain differs"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "BankD's nodes did not reach height {height}: peer {p}, orderer {o}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let orderer_hashes: Vec<_> = infos
        .iter()
        .filter(|(n, _)| n.starts_with("orderer."))
        .map(|(_, i)| i.last_block_hash.clone())
        .collect();
    assert_eq!(orderer_hashes.len(), 3);
    assert!(
        orderer_hashes.iter().all(|h| *h == orderer_hashes[0]),
        "orderers' chains differ at the same height"
    );
    let commit_hashes: Vec<_> = infos
        .iter()
        .filter(|(n, _)| n.starts_with("peer."))
        .map(|(_, i)| i.commit_hash.clone())
        .collect();
    assert_eq!(commit_hashes.len(), 4, "three peers and the restored one");
    assert!(!commit_hashes[0].is_empty(), "peers report no commit hash");
    assert!(
        commit_hashes.iter().all(|h| *h == commit_hashes[0]),
        "peers' commit hashes differ at the same height"
    );
    let ledger = Arc::try_unwrap(ledger)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|_| panic!("transfer tasks still hold the ledger"));
    eprintln!(
        "{} transfers acknowledged, {} ambiguous, {} refused and retried",
        ledger.acked.len(),
        ledger.ambiguous,
        ledger.refused
    );
    assert!(
        ledger.acked.len() >= 3_000,
        "too few transfers acknowledged"
    );
    for (org, _) in BANKS {
        let contract = common::org_contract(&net, org, CHANNEL, "bank").await;
        let mut total = 0u64;
        for i in 0..ACCOUNTS {
            let b = contract
                .evaluate("balance", vec![Bytes::from(format!("acct{i}"))])
                .await
                .unwrap_or_else(|e| panic!("balance of acct{i} on {org}'s peer: {e}"));
            total += String::from_utf8_lossy(&b)
                .trim()
                .parse::<u64>()
                .expect("a balance is a number");
        }
        assert_eq!(
            total,
            OPENING_BALANCE * ACCOUNTS as u64,
            "money not conserved on {org}'s peer"
        );
        for tx in &ledger.acked {
            let status = tokio::time::timeout(Duration::from_secs(10), contract.commit_status(tx))
                .await
                .unwrap_or_else(|_| panic!("acknowledged tx {tx} unknown to {org}'s peer"))
                .unwrap_or_else(|e| panic!("commit status of {tx} on {org}'s peer: {e}"));
            assert_eq!(
                status.code,
                ordo_proto::pb::peer::TxValidationCode::Valid,
                "acknowledged tx {tx} is not VALID on {org}'s peer"
            );
        }
    }
    drop(project);
    remove_images(&[&second, &first]);
}

/// Runs an orderer container from `image` with `mounts` (`-v` specs) and its config at
/// /etc/ordo/keys/orderer.toml, asserting it exits non-zero (`what` says which case);
/// its stderr.
fn orderer_refused(image: &str, mounts: &[&str], what: &str) -> String {
    let mut args = vec!["run", "--rm"];
    for m in mounts {
        args.extend_from_slice(&["-v", m]);
    }
    args.extend_from_slice(&[image, "orderer", "--config", "/etc/ordo/keys/orderer.toml"]);
    let out = docker(&args).output().expect("docker run");
    assert!(!out.status.success(), "{what} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A container with bad input exits non-zero and says what is wrong in one line.
#[test]
fn containers_with_missing_or_wrong_keys_or_an_unwritable_volume_exit_with_one_clear_line() {
    if skipped() {
        return;
    }
    let image = image("r1");
    let tag = format!("ordoci-bad-{}", std::process::id());
    let keys = format!("{tag}-keys");
    let data = format!("{tag}-data");
    struct Volumes(Vec<String>);
    impl Drop for Volumes {
        fn drop(&mut self) {
            for v in &self.0 {
                let _ = docker(&["volume", "rm", "-f", v]).output();
            }
        }
    }
    let _cleanup = Volumes(vec![keys.clone(), data.clone()]);

    // No configuration or key files at all.
    let keys_mount = format!("{keys}:/etc/ordo/keys");
    let err = orderer_refused(&image, &[&keys_mount], "a node without its config");
    assert!(
        err.contains("/etc/ordo/keys/orderer.toml"),
        "the missing file is not named: {err}"
    );

    // A config whose key files are missing: the key file is named.
    let config = "[node]\nlisten_addr = \"0.0.0.0:7050\"\nops_listen_addr = \"0.0.0.0:8443\"\ndata_dir = \"/var/lib/ordo\"\n[identity]\nkey_file = \"/etc/ordo/keys/orderer.key\"\ncert_file = \"/etc/ordo/keys/orderer.cert\"\n";
    let write = format!(
        "printf '{}' > /etc/ordo/keys/orderer.toml",
        config.replace('\n', "\\n")
    );
    sh_ok(&mut docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/bash",
        "-v",
        &format!("{keys}:/etc/ordo/keys"),
        &image,
        "-c",
        &write,
    ]));
    let err = orderer_refused(&image, &[&keys_mount], "a node without its keys");
    assert!(
        err.contains("orderer.key"),
        "the missing key file is not named: {err}"
    );

    // A data volume owned by root that the node user cannot write.
    sh_ok(&mut docker(&[
        "run", "--rm", "--user", "0:0", "--entrypoint", "/bin/bash", "-v",
        &format!("{data}:/var/lib/ordo"), &image, "-c",
        "touch /var/lib/ordo/left-by-root && chown root:root /var/lib/ordo && chmod 0755 /var/lib/ordo",
    ]));
    let c = common::Consortium::new("BankA");
    let files = c.crypto().join("BankA");
    let mounted = tempfile::tempdir().expect("tempdir");
    for f in ["orderer.key", "orderer.cert"] {
        std::fs::copy(files.join(f), mounted.path().join(f)).expect("copy key file");
    }
    std::fs::write(mounted.path().join("orderer.toml"), config).expect("config");
    for f in ["orderer.key", "orderer.cert", "orderer.toml"] {
        set_mode(&mounted.path().join(f), 0o644);
    }
    set_mode(mounted.path(), 0o755);
    let data_mount = format!("{data}:/var/lib/ordo");
    let keys_mount = format!("{}:/etc/ordo/keys:ro", mounted.path().display());
    let err = orderer_refused(
        &image,
        &[&data_mount, &keys_mount],
        "a node with an unwritable data volume",
    );
    assert!(
        err.contains("/var/lib/ordo") && err.to_lowercase().contains("permission denied"),
        "the unwritable data directory is not named: {err}"
    );

    // A key that is not the certificate's (another member's key under the node's name),
    // on a fresh data volume: refused before the volume is touched.
    std::fs::copy(files.join("peer.key"), mounted.path().join("orderer.key")).expect("copy");
    set_mode(&mounted.path().join("orderer.key"), 0o644);
    let fresh = format!("{tag}-fresh");
    let _fresh_cleanup = Volumes(vec![fresh.clone()]);
    let fresh_mount = format!("{fresh}:/var/lib/ordo");
    let err = orderer_refused(
        &image,
        &[&fresh_mount, &keys_mount],
        "a node whose key is not its certificate's",
    );
    let naming: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("orderer.cert") && l.contains("orderer.key"))
        .collect();
    assert_eq!(
        naming.len(),
        1,
        "one line names the certificate and the key that do not match: {err}"
    );
    let listing = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/ls",
        "-v",
        &fresh_mount,
        &image,
        "-A",
        "/var/lib/ordo",
    ])
    .output()
    .expect("docker run ls");
    assert!(
        listing.status.success() && listing.stdout.is_empty(),
        "the data volume was touched: {}",
        String::from_utf8_lossy(&listing.stdout)
    );
}
