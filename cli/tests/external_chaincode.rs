//! Chaincode as a service over real processes: `ordo chaincode serve --builtin bank` runs
//! the bank through the SDK's shim as its own process, a channel defines it with runtime
//! `external:<addr>`, and the peer's gateway gives the same results as the built-in. A
//! server killed in the middle of an invocation gives a clean error naming it and leaves
//! no partial state; a server that is down is reported the same way. A gateway limited to
//! one request at a time answers a second one RESOURCE_EXHAUSTED.
//!
//! Over mutual TLS (a TLS peer, a server started with `--tls-cert/--tls-key/--tls-ca`):
//! the same calls work over one kept connection; a plaintext client and a client
//! certificate of an unknown CA are refused by the server with a log line naming the
//! reason; a server whose certificate the peer does not trust fails the endorsement with a
//! message naming the server, and so does a plaintext server (a TLS peer never falls
//! back), which logs that a TLS client reached it; none of them leaves anything behind.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use bytes::Bytes;
use common::*;
use ordo_proto::config;
use ordo_proto::pb::chaincode::chaincode_client::ChaincodeClient;
use ordo_proto::pb::chaincode::{chaincode_message, peer_message, Invocation, PeerMessage};
use ordo_proto::pb::common::{Block, ChaincodeDefinition, Role};
use ordo_proto::policy::build as policy;
use ordo_sdk::gateway::{Contract, GatewayError};
use ordo_sdk::tls::{ClientTls, TlsFiles};
use ordo_sdk::transport::Transport;
use prost::Message;

const CHANNEL: &str = "extcc";

fn args(a: &[&str]) -> Vec<Bytes> {
    a.iter().map(|s| Bytes::from(s.to_string())).collect()
}

/// Starts `ordo chaincode serve` on `listen`; returns the process and its address.
fn serve(listen: &str, extra: &[&str]) -> (Child, String) {
    serve_logged(listen, extra, Stdio::null())
}

/// [`serve`] with the server's stderr (its log) going to `stderr`.
fn serve_logged(listen: &str, extra: &[&str], stderr: Stdio) -> (Child, String) {
    let mut child = ordo()
        .args([
            "chaincode",
            "serve",
            "--builtin",
            "bank",
            "--listen",
            listen,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("chaincode server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    (child, line.trim().to_string())
}

/// A genesis block with `bank` built in and `ebank` on the external servers.
fn genesis(c: &Consortium, orderer: &str, servers: &[(&str, &str)]) -> std::path::PathBuf {
    let path = c.genesis(
        CHANNEL,
        &[
            "--orderer-endpoints",
            orderer,
            "--batch-timeout-ms",
            "30",
            "--chaincode",
            "bank:1",
        ],
    );
    let block = Block::decode(std::fs::read(&path).expect("read").as_slice()).expect("block");
    let mut cfg = config::config_from_block(&block).expect("config");
    for (name, addr) in servers {
        cfg.chaincodes.push(ChaincodeDefinition {
            name: name.to_string(),
            version: "1".into(),
            endorsement_policy: Some(policy::n_out_of(1, &[("BankA", Role::Peer)])),
            runtime: format!("external:{addr}"),
            sequence: 1,
            retired: false,
        });
    }
    std::fs::write(
        &path,
        config::genesis_block(&cfg, 0)
            .expect("genesis")
            .encode_to_vec(),
    )
    .expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_bank_matches_the_builtin_and_a_killed_server_leaves_nothing() {
    let (mut server, addr) = serve("127.0.0.1:0", &[]);
    let (mut slow, slow_addr) = serve("127.0.0.1:0", &["--pause-before-writes-ms", "1500"]);
    let c = Consortium::new("BankA,BankB");
    let admin = c.identity("BankA", "admin");
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin).await;
    let path = genesis(&c, &o.addr, &[("ebank", &addr), ("slowbank", &slow_addr)]);
    join(&o.addr, &admin, &path).await;
    // One gateway request at a time: a second one meanwhile is RESOURCE_EXHAUSTED.
    let mut p = PeerProcess::start_peer_at(
        &c,
        "peer0.BankA",
        "BankA",
        &[],
        None,
        "[gateway]\nmax_concurrent = 1\n",
    );
    p.wait_ready(&admin).await;
    join(&p.addr, &admin, &path).await;
    let client = c.identity("BankA", "client");
    let peer_addr = p.addr.clone();
    let contract = |name: &'static str| {
        let (addr, client) = (peer_addr.clone(), client.clone());
        async move {
            Contract::connect(&addr, &common::transport_for(&addr), client, CHANNEL, name).await
        }
    };

    // The same calls on the built-in and on the external server give the same answers.
    let mut outcomes = Vec::new();
    for name in ["bank", "ebank"] {
        let cc = contract(name).await.expect("gateway");
        let mut seen = Vec::new();
        for call in [
            ("open", vec!["alice", "100"]),
            ("open", vec!["bob", "0"]),
            ("transfer", vec!["alice", "bob", "30"]),
        ] {
            let done = cc.submit(call.0, args(&call.1)).await.expect("committed");
            seen.push(done.result);
        }
        seen.push(
            cc.evaluate("balance", args(&["bob"]))
                .await
                .expect("balance"),
        );
        let history = cc
            .evaluate("history", args(&["bob"]))
            .await
            .expect("history");
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&history).expect("json");
        seen.push(Bytes::from(entries.len().to_string()));
        match cc.submit("transfer", args(&["bob", "alice", "1000"])).await {
            Err(GatewayError::Chaincode {
                status, message, ..
            }) => {
                assert_eq!(status, 400, "{name}: {message}");
                assert!(message.contains("insufficient funds"), "{name}: {message}")
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
        outcomes.push(seen);
    }
    let expected: Vec<Bytes> = ["100", "0", "70", "30", "2"]
        .iter()
        .map(|s| Bytes::from(*s))
        .collect();
    assert_eq!(outcomes[0], expected);
    assert_eq!(outcomes[0], outcomes[1], "external and built-in agree");

    // Killed in the middle of a transfer (it pauses before each write): a clean error
    // that names the server, and no partial state.
    let s = contract("slowbank").await.expect("gateway");
    s.submit("open", args(&["carol", "10"]))
        .await
        .expect("opened");
    s.submit("open", args(&["dave", "10"]))
        .await
        .expect("opened");
    let pid = slow.id();
    let other = contract("bank").await.expect("gateway");
    let killer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        // The gateway is busy with the paused transfer.
        let busy = other.evaluate("balance", args(&["alice"])).await;
        signal(pid, libc::SIGKILL);
        busy
    });
    match s.submit("transfer", args(&["carol", "dave", "5"])).await {
        Err(GatewayError::Chaincode {
            step,
            status,
            message,
            ..
        }) => {
            assert_eq!(step, "Endorse");
            assert!(message.contains(&slow_addr), "names the server: {message}");
            assert_eq!(status, 500, "{message}");
        }
        other => panic!("a killed server must fail the invocation: {other:?}"),
    }
    match killer.await.expect("killer") {
        Err(GatewayError::Refused { code, message, .. }) => {
            assert_eq!(code, tonic::Code::ResourceExhausted, "{message}")
        }
        other => panic!("admission control must refuse: {other:?}"),
    }
    let _ = slow.wait();
    // The killed server is down now and the error says so; once a server is back on the
    // same address, carol still has 10.
    match s.evaluate("balance", args(&["carol"])).await {
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&slow_addr), "{message}")
        }
        other => panic!("a server that is down must be reported: {other:?}"),
    }
    let port = slow_addr.rsplit_once(':').map(|(_, p)| p).expect("port");
    let (mut back, _) = serve(&format!("127.0.0.1:{port}"), &[]);
    let s = contract("slowbank").await.expect("gateway");
    let mut carol = Bytes::new();
    for _ in 0..50 {
        match s.evaluate("balance", args(&["carol"])).await {
            Ok(b) => {
                carol = b;
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(carol, "10", "nothing of the killed transfer was kept");
    let _ = back.kill();
    let _ = server.kill();
}

/// Starts `ordo chaincode serve` over mutual TLS on a free port, presenting `server`'s
/// certificate and accepting clients of `client_cas`, logging to `log`.
fn serve_tls(server: &TlsFiles, client_cas: &[PathBuf], log: &Path) -> (Child, String) {
    let file = std::fs::File::create(log).expect("log file");
    let mut extra = vec![
        "--tls-cert".to_string(),
        server.cert.display().to_string(),
        "--tls-key".to_string(),
        server.key.display().to_string(),
    ];
    for ca in client_cas {
        extra.push("--tls-ca".into());
        extra.push(ca.display().to_string());
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    serve_logged("127.0.0.1:0", &extra, Stdio::from(file))
}

/// `ordo crypto issue` of a chaincode server identity `name` of `org`, TLS for 127.0.0.1.
fn issue_server(c: &Consortium, org: &str, name: &str) -> TlsFiles {
    run_ok(&[
        "crypto",
        "issue",
        "--crypto",
        c.crypto().to_str().expect("utf8"),
        "--org",
        org,
        "--name",
        name,
        "--role",
        "client",
        "--hosts",
        "127.0.0.1",
    ]);
    c.tls_files(org, name)
}

/// One `balance alice` invocation sent straight to the chaincode server at `addr` over
/// `transport`, answering its state reads as a peer would (nothing found); the error says
/// what failed.
async fn invoke_directly(addr: &str, transport: &Transport) -> Result<(), String> {
    let ch = ordo_sdk::transport::connect(addr, transport)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut client = ChaincodeClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(PeerMessage {
        kind: Some(peer_message::Kind::Invoke(Invocation {
            tx_id: "direct".into(),
            channel_id: CHANNEL.into(),
            function: "balance".into(),
            args: args(&["alice"]),
            transient: Default::default(),
        })),
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut inbound = client
        .invoke(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("invoke: {e:?}"))?
        .into_inner();
    loop {
        let msg = inbound
            .message()
            .await
            .map_err(|e| format!("stream: {e:?}"))?
            .ok_or("the server closed the stream")?;
        match msg.kind {
            Some(chaincode_message::Kind::Completed(_)) => return Ok(()),
            Some(_) => tx
                .send(PeerMessage {
                    kind: Some(peer_message::Kind::Result(Default::default())),
                })
                .await
                .map_err(|e| e.to_string())?,
            None => return Err("an empty message".into()),
        }
    }
}

/// Waits (at most 10 s) until `log` holds `needle`; the log text.
fn wait_for_log(log: &Path, needle: &str) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{} never logged {needle:?}:\n{text}", log.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_chaincode_over_mutual_tls_and_what_it_refuses() {
    let c = Consortium::new("BankA,BankB");
    let bank_a_ca = c.crypto().join("BankA").join("tls").join("ca.crt");
    let server_files = issue_server(&c, "BankA", "bankcc");
    // An org no one here knows: its TLS CA is in no channel and no node's ca_files.
    let rogue = Consortium::new("Rogue");
    let rogue_files = issue_server(&rogue, "Rogue", "roguecc");
    let log = c.dir.path().join("bankcc.log");
    let rogue_log = c.dir.path().join("roguecc.log");
    let (mut server, addr) = serve_tls(&server_files, std::slice::from_ref(&bank_a_ca), &log);
    // Accepts BankA's peers, but presents a certificate they cannot verify.
    let (mut rogue_server, rogue_addr) =
        serve_tls(&rogue_files, std::slice::from_ref(&bank_a_ca), &rogue_log);
    // Started without TLS: a TLS peer must not fall back to plaintext for it.
    let plain_log = c.dir.path().join("plaincc.log");
    let (mut plain_server, plain_addr) = serve_logged(
        "127.0.0.1:0",
        &[],
        Stdio::from(std::fs::File::create(&plain_log).expect("log file")),
    );
    wait_for_log(&log, "mutual TLS");

    let admin = c.identity("BankA", "admin");
    let mut o = OrdererProcess::start_tls(&c, "orderer0", "BankA", "orderer", "");
    o.wait_ready(&admin).await;
    let path = genesis(
        &c,
        &o.addr,
        &[
            ("ebank", &addr),
            ("roguebank", &rogue_addr),
            ("plainbank", &plain_addr),
        ],
    );
    join(&o.addr, &admin, &path).await;
    let mut p = PeerProcess::start_peer_at(
        &c,
        "peer0.BankA",
        "BankA",
        &[],
        None,
        &c.tls_toml("BankA", "peer"),
    );
    set_transport(&p.addr, c.tls_transport("BankA", "admin"));
    p.wait_ready(&admin).await;
    join(&p.addr, &admin, &path).await;
    let client = c.identity("BankA", "client");
    let transport = c.tls_transport("BankA", "client");
    let contract = |name: &'static str| {
        let (addr, transport, client) = (p.addr.clone(), transport.clone(), client.clone());
        async move { Contract::connect(&addr, &transport, client, CHANNEL, name).await }
    };

    // End to end over mutual TLS: client → TLS peer → TLS chaincode server.
    let cc = contract("ebank").await.expect("gateway");
    for call in [
        ("open", vec!["alice", "100"]),
        ("open", vec!["bob", "0"]),
        ("transfer", vec!["alice", "bob", "30"]),
    ] {
        cc.submit(call.0, args(&call.1)).await.expect("committed");
    }
    assert_eq!(
        cc.evaluate("balance", args(&["bob"]))
            .await
            .expect("balance"),
        "30"
    );
    // Four invocations, one connection: the peer keeps it in its pool.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.matches("chaincode connection accepted").count(),
        1,
        "the peer dials once and keeps the connection:\n{text}"
    );

    // The server's own refusals, each with a log line that says why. A client with the
    // right certificate gets through, so the refusals are about what they present.
    let peer_tls = c.tls_files("BankA", "peer");
    let trusted = Transport::Tls(ClientTls::from_files(&peer_tls).expect("peer TLS files"));
    invoke_directly(&addr, &trusted)
        .await
        .expect("a BankA certificate is accepted");
    let plain = invoke_directly(&addr, &Transport::Plain).await;
    assert!(plain.is_err(), "a plaintext client must be refused");
    wait_for_log(&log, "plaintext client on a TLS listener");
    let stranger = Transport::Tls(
        ClientTls::from_files(&TlsFiles {
            ca: vec![bank_a_ca.clone()],
            ..rogue.tls_files("Rogue", "client")
        })
        .expect("rogue TLS files"),
    );
    let unknown = invoke_directly(&addr, &stranger).await;
    assert!(
        unknown.is_err(),
        "a certificate of an unknown CA must be refused"
    );
    let text = wait_for_log(&log, "TLS handshake failed");
    assert!(
        text.lines()
            .any(|l| l.contains("TLS handshake failed") && l.contains("UnknownIssuer")),
        "the refusal names the reason:\n{text}"
    );

    // Nothing of those was applied, and the server still serves the peer.
    assert_eq!(
        cc.evaluate("balance", args(&["bob"]))
            .await
            .expect("balance"),
        "30"
    );
    assert_eq!(
        cc.evaluate("balance", args(&["alice"]))
            .await
            .expect("balance"),
        "70"
    );

    // A server whose certificate the peer does not trust: the endorsement fails with a
    // message naming the server and why, and nothing is ordered.
    let height = channel_info(&p.addr, &admin, CHANNEL).await.height;
    let r = contract("roguebank").await.expect("gateway");
    match r.submit("open", args(&["mallory", "1000000"])).await {
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("Endorse"), "{message}");
            assert!(message.contains(&rogue_addr), "names the server: {message}");
            assert!(
                message.contains("certificate") || message.contains("UnknownIssuer"),
                "says it is the certificate: {message}"
            );
        }
        other => panic!("an untrusted chaincode server must fail the endorsement: {other:?}"),
    }
    assert!(
        r.evaluate("balance", args(&["mallory"])).await.is_err(),
        "and every invocation on it"
    );
    let text = std::fs::read_to_string(&rogue_log).unwrap_or_default();
    assert!(
        !text.contains("chaincode connection accepted"),
        "the peer never completed a connection to the untrusted server:\n{text}"
    );
    // A plaintext server: the TLS peer refuses to fall back, the server says why.
    let pb = contract("plainbank").await.expect("gateway");
    match pb.evaluate("balance", args(&["alice"])).await {
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&plain_addr), "names the server: {message}")
        }
        other => panic!("a TLS peer must not call a plaintext server: {other:?}"),
    }
    wait_for_log(&plain_log, "TLS client on a plaintext listener");
    // A later block (the next transfer) proves the channel moved on without any of it.
    cc.submit("transfer", args(&["bob", "alice", "5"]))
        .await
        .expect("committed");
    assert_eq!(
        channel_info(&p.addr, &admin, CHANNEL).await.height,
        height + 1,
        "only the transfer was ordered"
    );
    assert_eq!(
        cc.evaluate("balance", args(&["bob"]))
            .await
            .expect("balance"),
        "25"
    );
    let _ = plain_server.kill();
    let _ = rogue_server.kill();
    let _ = server.kill();
}
