//! Discovery over real processes: an `ordo up` network whose peers' configs list no
//! endorsers finds them through the channel's anchor peers; with `bank` needing 2 of 3
//! orgs, transfers go on while one org's peer is dead, and a peer that joins later (a
//! second peer of BankB, started by hand) is used without touching any other node's
//! config. Forged announcements are refused with their reasons and never shown.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::common::Role;
use ordo_proto::pb::discovery::discovery_client::DiscoveryClient;
use ordo_proto::pb::discovery::{PeerInfo, SignedPeerInfo};
use ordo_sdk::gateway::{DiscoveredPeer, Gateway, RetryPolicy};
use ordo_sdk::network::Network;

/// Longest wait for discovery to see a change: a few announcement rounds (3 s each).
const DISCOVERY_WAIT: Duration = Duration::from_secs(30);

/// A peer process started by the test, killed when dropped.
struct Extra(Child);

impl Drop for Extra {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn args(a: &[&str]) -> Vec<Bytes> {
    a.iter().map(|s| Bytes::from(s.to_string())).collect()
}

/// What BankA's peer's discovery sees, polled until `done` holds.
async fn discovered_until(
    gateway: &Gateway,
    channel: &str,
    what: &str,
    done: impl Fn(&[DiscoveredPeer]) -> bool,
) -> Vec<DiscoveredPeer> {
    let deadline = tokio::time::Instant::now() + DISCOVERY_WAIT;
    loop {
        let peers = gateway.peers(channel).await.expect("Discovery.Peers");
        if done(&peers) {
            return peers;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "discovery never saw {what}; it sees {peers:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kill_node(network: &Path, name: &str) {
    let net = network.to_str().expect("utf8");
    run_ok(&["node", "kill", name, "--network", net]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_find_endorsers_by_discovery_survive_a_dead_peer_and_use_a_new_one() {
    let (tmp, network_path, _up) = up_in_temp_dir();
    let net = Network::load(&network_path).expect("network.json");
    let channel = net.channel(None).expect("channel").name.clone();

    // No peer config lists endorsers: the genesis block names each org's peer as anchor.
    for p in net.nodes_with_role("peer") {
        let cfg = ordo_peer::node::config::PeerConfig::load(&p.config).expect("peer config");
        assert!(
            cfg.gateway.endorsers.is_empty(),
            "{}: {:?}",
            p.name,
            cfg.gateway.endorsers
        );
    }
    let gateway = Gateway::for_org(&net, "BankA", "client")
        .await
        .expect("BankA gateway");
    let seen = discovered_until(&gateway, &channel, "all three banks", |p| p.len() == 3).await;
    let mut orgs: Vec<&str> = seen.iter().map(|p| p.org.as_str()).collect();
    orgs.sort();
    assert_eq!(orgs, ["BankA", "BankB", "BankC"]);
    for p in &seen {
        assert_eq!(p.chaincodes, ["bank", "kv"], "{p:?}");
        let node = net
            .nodes_with_role("peer")
            .find(|n| n.org == p.org)
            .expect("peer of org");
        assert_eq!(p.endpoint, node.grpc_addr);
    }
    // The CLI shows the same.
    let out = run_ok(&[
        "channel",
        "info",
        "--peers",
        "--json",
        "--network",
        network_path.to_str().expect("utf8"),
    ]);
    let shown: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["peers"].as_array().map(Vec::len), Some(3), "{out}");

    let bank = gateway
        .contract(&channel, "bank")
        .with_retry_policy(RetryPolicy::with_attempts(8));
    bank.submit_with_retry("open", args(&["alice", "100"]))
        .await
        .expect("open alice");
    bank.submit_with_retry("open", args(&["bob", "0"]))
        .await
        .expect("open bob");
    let mut moved = 0;
    let transfer = |n: usize| {
        let bank = bank.clone();
        async move {
            for _ in 0..n {
                bank.submit_with_retry("transfer", args(&["alice", "bob", "1"]))
                    .await
                    .expect("transfer commits");
            }
            n
        }
    };
    moved += transfer(3).await;

    // BankC's peer dies: BankA and BankB endorse.
    kill_node(&network_path, "peer0.BankC");
    moved += transfer(5).await;

    // A second peer of BankB joins: its own identity and config, nothing else changes.
    let crypto = net.crypto_dir.to_str().expect("utf8").to_string();
    run_ok(&[
        "crypto", "issue", "--crypto", &crypto, "--org", "BankB", "--name", "peer1", "--role",
        "peer",
    ]);
    let ports = free_ports(2);
    let (addr, ops) = (
        format!("127.0.0.1:{ports}"),
        format!("127.0.0.1:{}", ports + 1),
    );
    let node_dir = tmp.path().join("peer1.BankB");
    run_ok(&[
        "config",
        "peer",
        "--crypto",
        &crypto,
        "--org",
        "BankB",
        "--member",
        "peer1",
        "--listen",
        &addr,
        "--ops-listen",
        &ops,
        "--data-dir",
        node_dir.join("data").to_str().expect("utf8"),
        "--out",
        node_dir.to_str().expect("utf8"),
    ]);
    let log = std::fs::File::create(tmp.path().join("peer1.BankB.log")).expect("log");
    let _peer1 = Extra(
        ordo()
            .args(["peer", "--config"])
            .arg(node_dir.join("peer.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("peer1 starts"),
    );
    let b_admin = net.member(Some("BankB"), "admin").expect("BankB admin");
    set_transport(&addr, b_admin.transport.clone());
    wait_port(&addr).await;
    let genesis = &net.channel(None).expect("channel").genesis_block;
    join(&addr, &b_admin.identity, genesis).await;
    discovered_until(&gateway, &channel, "peer1 of BankB", |p| {
        p.iter().any(|p| p.endpoint == addr && p.org == "BankB")
    })
    .await;

    // BankB's first peer dies too: only the newcomer can give BankB's endorsement.
    kill_node(&network_path, "peer0.BankB");
    moved += transfer(5).await;

    // Money is conserved, and BankA's peer and the newcomer agree.
    assert_eq!(bank_balance(&bank, "alice").await, 100 - moved as i64);
    assert_eq!(bank_balance(&bank, "bob").await, moved as i64);
    let a = net.node("peer0.BankA").expect("peer0.BankA");
    let a_admin = net.identity(Some("BankA"), "admin").expect("admin");
    wait_peers_agree(
        &[
            (a.grpc_addr.clone(), a_admin),
            (addr.clone(), b_admin.identity.clone()),
        ],
        &channel,
    )
    .await;

    forged_announcements_are_refused(&net, &channel, &gateway).await;
}

/// Announcements no channel peer signed, sent to BankA's peer: each refused with its
/// reason, none shown by Peers.
async fn forged_announcements_are_refused(net: &Network, channel: &str, gateway: &Gateway) {
    let a = net.node("peer0.BankA").expect("peer0.BankA");
    let transport = net.transport(Some("BankA"), "client").expect("transport");
    let conn = ordo_sdk::orderer::connect(&a.grpc_addr, &transport)
        .await
        .expect("connect");
    let mut client = DiscoveryClient::new(conn);
    let info = |who: &Identity, channel: &str| PeerInfo {
        channel_id: channel.into(),
        endpoint: "evil.example:7051".into(),
        certificate: who.cert_bytes().clone(),
        chaincodes: vec!["bank".into()],
        height: 1,
        issued_ms: ordo_proto::now_ms(),
    };
    let client_id = net.identity(Some("BankA"), "client").expect("client");
    let stranger = Identity::enroll(
        &ordo_proto::crypto::generate_signing_key(),
        ordo_proto::crypto::generate_signing_key(),
        &Enrollment::new("BankA", Role::Peer, "mallory"),
    );
    let peer = net.identity(Some("BankA"), "peer").expect("peer identity");
    let mut tampered = ordo_proto::discovery::sign(&peer, &info(&peer, channel));
    let mut other = info(&peer, channel);
    other.endpoint = "evil.example:7051".into();
    other.chaincodes.push("kv".into());
    tampered.info = prost::Message::encode_to_vec(&other).into();
    let cases: Vec<(&str, SignedPeerInfo, tonic::Code, &str)> = vec![
        (
            "garbage",
            SignedPeerInfo {
                info: Bytes::from_static(b"\xff\xff"),
                signature: Bytes::new(),
            },
            tonic::Code::InvalidArgument,
            "malformed",
        ),
        (
            "a client's",
            ordo_proto::discovery::sign(&client_id, &info(&client_id, channel)),
            tonic::Code::PermissionDenied,
            "not a peer",
        ),
        (
            "a stranger CA's",
            ordo_proto::discovery::sign(&stranger, &info(&stranger, channel)),
            tonic::Code::PermissionDenied,
            "certificate",
        ),
        (
            "tampered",
            tampered,
            tonic::Code::PermissionDenied,
            "does not verify",
        ),
        (
            "another channel's",
            ordo_proto::discovery::sign(&peer, &info(&peer, "nochannel")),
            tonic::Code::NotFound,
            "not served",
        ),
    ];
    for (what, signed, code, says) in cases {
        let err = client.announce(signed).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {}", err.message());
        assert!(err.message().contains(says), "{what}: {}", err.message());
    }
    let shown = gateway.peers(channel).await.expect("peers");
    assert!(
        shown.iter().all(|p| p.endpoint != "evil.example:7051"),
        "{shown:#?}"
    );
}

/// Waits until something listens on `addr`.
async fn wait_port(addr: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} never listened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
