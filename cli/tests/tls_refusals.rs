//! Bad input at the TLS edge of real orderer processes (a 3-node raft channel over mutual
//! TLS): each kind of connection the issue lists is refused, counted in a metric and
//! logged, while a client on an established connection keeps ordering and loses nothing;
//! a replayed Admin request is refused too.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::raft::*;
use common::*;
use ordo_proto::cluster_auth::{self, Purpose};
use ordo_proto::identity::Identity;
use ordo_proto::pb::cluster::cluster_client::ClusterClient;
use ordo_proto::pb::cluster::SubmitRequest;
use ordo_sdk::tls::{ClientTls, TlsFiles};
use ordo_sdk::transport::Transport;
use tokio::io::AsyncReadExt;

const CHANNEL: &str = "edge";
const ORGS: [&str; 3] = ["BankA", "BankB", "BankC"];
/// Small enough that a burst overflows it and a silent socket is closed quickly.
const EDGE_LIMITS: &str = "[connections]\nhandshake_timeout_ms = 500\nmax_connections = 64\n";

/// A TLS certificate for `name` from `org`'s TLS CA, valid from `from_s` to `to_s`
/// seconds relative to now, for 127.0.0.1 (or only for the DNS name `host` when given);
/// returns (cert, key) files.
fn issue(
    c: &Consortium,
    org: &str,
    name: &str,
    (from_s, to_s): (i64, i64),
    host: Option<&str>,
) -> (PathBuf, PathBuf) {
    use rcgen::{CertificateParams, DnType, Issuer, KeyPair, SanType};
    let ca_dir = c.crypto().join(org).join("tls");
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("ca.key")).expect("key"))
        .expect("CA key");
    let issuer = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(ca_dir.join("ca.crt")).expect("cert"),
        ca_key,
    )
    .expect("CA cert");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name}.{org}"));
    params.subject_alt_names = vec![match host {
        Some(h) => SanType::DnsName(h.to_string().try_into().expect("DNS name")),
        None => SanType::IpAddress([127, 0, 0, 1].into()),
    }];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::seconds(from_s);
    params.not_after = now + time::Duration::seconds(to_s);
    let cert = params.signed_by(&key, &issuer).expect("signed");
    let dir = c.dir.path().join("edge-certs");
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_file, key_file) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_file, cert.pem()).expect("write");
    std::fs::write(&key_file, key.serialize_pem()).expect("write");
    (cert_file, key_file)
}

fn transport(cert: &Path, key: &Path, ca: Vec<PathBuf>) -> Transport {
    Transport::Tls(
        ClientTls::from_files(&TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ca,
        })
        .expect("client TLS"),
    )
}

/// The orderer's count of connections refused for `reason`.
fn refused(ops: &str, reason: &str) -> u64 {
    let (_, text) = http_get(ops, "/metrics");
    let needle = format!("reason=\"{reason}\"");
    text.lines()
        .filter(|l| {
            l.starts_with("ordo_orderer_transport_connections_refused_total") && l.contains(&needle)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn wait_refused(ops: &str, reason: &str, at_least: u64) {
    for _ in 0..100 {
        if refused(ops, reason) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no {at_least} refusals for {reason}: {}",
        http_get(ops, "/metrics").1
    );
}

/// Whether a signed Admin List through `transport` is answered.
async fn answered(addr: &str, transport: &Transport, admin: &Identity) -> Result<(), String> {
    let ch = ordo_sdk::orderer::connect(addr, transport)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut client = ordo_sdk::orderer::admin_client(ch);
    let req = ordo_sdk::orderer::admin_request(
        admin,
        "",
        ordo_proto::pb::admin::admin_command::Command::List(ordo_proto::pb::admin::ListChannels {}),
    );
    client
        .execute(req)
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connections_are_refused_at_the_edge_and_nothing_is_lost() {
    let c = Consortium::new(&ORGS.join(","));
    let mut nodes: Vec<OrdererProcess> = ORGS
        .iter()
        .enumerate()
        .map(|(i, org)| {
            OrdererProcess::start_tls(&c, &format!("orderer{i}"), org, "orderer", EDGE_LIMITS)
        })
        .collect();
    let admins: Vec<Identity> = ORGS.iter().map(|o| c.identity(o, "admin")).collect();
    for (n, a) in nodes.iter_mut().zip(&admins) {
        n.wait_ready(a).await;
    }
    let endpoints: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let endpoints = endpoints.join(",");
    let genesis = c.genesis(
        CHANNEL,
        &[
            "--consensus",
            "raft",
            "--orderer-endpoints",
            &endpoints,
            "--ack-mode",
            "committed",
            "--batch-timeout-ms",
            "50",
            "--raft-tick-ms",
            "50",
        ],
    );
    for (n, a) in nodes.iter().zip(&admins) {
        join(&n.addr, a, &genesis).await;
    }
    let all: Vec<(&str, &Identity)> = nodes
        .iter()
        .zip(&admins)
        .map(|(n, a)| (n.addr.as_str(), a))
        .collect();
    agreed_leader(CHANNEL, &all).await;
    let target = &nodes[0];
    let client = c.identity("BankA", "client");
    let mut acked = submit_all(CHANNEL, &target.addr, &client, 0, 20).await;

    // An Admin request captured and replayed byte for byte over a good connection: the
    // join executes once; the copy is refused and changes nothing.
    let solo = c.genesis("replayed", &["--consensus", "solo"]);
    let req = ordo_sdk::orderer::admin_request(
        &admins[0],
        "",
        ordo_proto::pb::admin::admin_command::Command::Join(ordo_proto::pb::admin::JoinChannel {
            genesis_block: std::fs::read(&solo).expect("genesis").into(),
        }),
    );
    let mut admin_client =
        ordo_sdk::orderer::admin_client(connect(&target.addr).await.expect("connect"));
    admin_client
        .execute(req.clone())
        .await
        .expect("the first join executes");
    let again = admin_client
        .execute(req)
        .await
        .expect_err("a copy is refused");
    assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again:?}");

    // A plaintext client.
    let err = answered(&target.addr, &Transport::Plain, &admins[0]).await;
    assert!(err.is_err(), "plaintext was answered");
    wait_refused(&target.ops, "plaintext", 1).await;

    // A client certificate from a CA no channel trusts.
    let stranger = Consortium::new("Mallory");
    let st = stranger.tls_files("Mallory", "client");
    let all_cas = c.tls_files("BankA", "client").ca;
    let unknown = transport(&st.cert, &st.key, all_cas.clone());
    assert!(answered(&target.addr, &unknown, &admins[0]).await.is_err());
    wait_refused(&target.ops, "handshake", 1).await;

    // Expired and not-yet-valid certificates of a trusted CA.
    let before = refused(&target.ops, "handshake");
    for (name, from, to) in [("expired", -7200, -3600), ("early", 3600, 7200)] {
        let (cert, key) = issue(&c, "BankA", name, (from, to), None);
        let t = transport(&cert, &key, all_cas.clone());
        assert!(
            answered(&target.addr, &t, &admins[0]).await.is_err(),
            "{name} accepted"
        );
    }
    wait_refused(&target.ops, "handshake", before + 2).await;
    let log = target.log_text();
    assert!(
        log.contains("expired") || log.contains("Expired"),
        "the log names the expiry:\n{log}"
    );

    // A node whose server certificate names another host: the client refuses it.
    let (cert, key) = issue(
        &c,
        "BankB",
        "elsewhere",
        (-60, 3600),
        Some("elsewhere.example"),
    );
    let cas = all_cas
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut misnamed = OrdererProcess::start_as(
        &c,
        "misnamed",
        "BankB",
        "orderer",
        &format!(
            "[tls]\nenabled = true\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_files = [{cas}]\n",
            cert.display(),
            key.display(),
        ),
    );
    let good_client = c.tls_transport("BankB", "admin");
    let mut last = String::new();
    for _ in 0..100 {
        match answered(&misnamed.addr, &good_client, &admins[1]).await {
            Ok(()) => panic!("a server certificate for another name was accepted"),
            Err(e) if e.contains("NotValidForName") || e.contains("not valid for name") => {
                last.clear();
                break;
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.is_empty(), "never refused for its name: {last}");
    misnamed.kill();

    // A consenter's proof of identity over another node's valid certificate: orderer1
    // signs, but the connection presents BankB's admin TLS certificate.
    let orderer1 = c.identity("BankB", "orderer");
    let admin_tls = c.tls_transport("BankB", "admin");
    let ch = ordo_sdk::orderer::connect(&target.addr, &admin_tls)
        .await
        .expect("connect");
    let envelope = ordo_proto::envelope::create_signed(
        &client,
        CHANNEL,
        ordo_proto::pb::common::HeaderType::Message,
        bytes::Bytes::from_static(b"x"),
        ordo_proto::now_ms(),
    )
    .0;
    let envelope = prost::Message::encode_to_vec(&envelope);
    let digest = ordo_proto::hash::sha256(&envelope);
    let auth = cluster_auth::sign(
        &orderer1,
        Purpose::Submit,
        CHANNEL,
        &digest,
        ordo_proto::now_ms(),
    );
    let answer = ClusterClient::new(ch)
        .submit(SubmitRequest {
            channel: CHANNEL.into(),
            envelope: envelope.into(),
            tx_id: "impostor".into(),
            config_seq: 0,
            is_config: false,
            auth: Some(auth),
        })
        .await;
    let status = answer.expect_err("a consenter over another certificate was accepted");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("pins"), "{status:?}");

    // Load on an established connection while silent sockets and a burst hit the node.
    let channel = connect(&target.addr).await.expect("connect");
    let load = {
        let client = client.clone();
        let channel = channel.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..10u64 {
                let envs: Vec<_> = (0..20u64)
                    .map(|i| message(&client, CHANNEL, 200, 10_000 + round * 100 + i))
                    .collect();
                let mut bc = ordo_sdk::orderer::broadcast_client(channel.clone());
                let (envs, these): (Vec<_>, Vec<_>) = envs.into_iter().unzip();
                let mut answers = bc
                    .broadcast(tokio_stream::iter(envs))
                    .await
                    .expect("broadcast on the established connection")
                    .into_inner();
                let mut n = 0;
                while let Some(a) = answers.message().await.expect("answers") {
                    if a.status == ordo_proto::pb::common::Status::Success as i32 {
                        ids.push(these[n].clone());
                    }
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ids
        })
    };
    // Slowloris: a socket that never sends is closed after the handshake deadline.
    let mut silent = tokio::net::TcpStream::connect(&target.addr)
        .await
        .expect("tcp");
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("closed by the node");
    assert!(matches!(n, Ok(0) | Err(_)), "still open: {n:?}");
    wait_refused(&target.ops, "handshake_timeout", 1).await;
    // A burst of 10,000 connection attempts, far over the cap of 64.
    let mut held = Vec::new();
    for i in 0..10_000 {
        if let Ok(s) = tokio::net::TcpStream::connect(&target.addr).await {
            held.push(s);
        }
        if i % 1_000 == 999 {
            held.clear();
        }
    }
    drop(held);
    wait_refused(&target.ops, "node_capacity", 1_000).await;
    let during = load.await.expect("load task");
    assert_eq!(
        during.len(),
        200,
        "every envelope on the established connection was acknowledged"
    );
    acked.extend(during);
    // The node still accepts new, good clients, and nothing acknowledged is missing.
    acked.extend(submit_all(CHANNEL, &target.addr, &client, 50_000, 20).await);
    converged(CHANNEL, &all, &acked).await;
    for n in nodes.iter_mut() {
        n.stop();
    }
}
