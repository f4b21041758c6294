//! The node listener over real sockets and real TLS: what it accepts, what it refuses and
//! why, and that refusals never disturb established connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ordo_node::listener::Refusal;
use ordo_node::{ChannelTrust, ListenerLimits, ListenerMetrics, NodeTls, TlsSection};
use ordo_sdk::tls::{ClientTls, TlsFiles};
use ordo_sdk::transport::{connect, Transport};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A test TLS CA that writes PEM files into a directory.
struct Ca {
    dir: PathBuf,
    name: String,
    key: KeyPair,
    params: CertificateParams,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("tlsca.{name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-signed");
        std::fs::write(dir.join(format!("{name}-ca.crt")), cert.pem()).expect("write");
        Self {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            key,
            params,
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.crt", self.name))
    }

    /// Issues `who` for `hosts`, valid between the two offsets from now (seconds).
    fn issue(&self, who: &str, hosts: &[&str], from_s: i64, until_s: i64) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(hosts).expect("params");
        params.distinguished_name.push(DnType::CommonName, who);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::seconds(from_s);
        params.not_after = now + time::Duration::seconds(until_s);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed");
        let cert_file = self.dir.join(format!("{who}.crt"));
        let key_file = self.dir.join(format!("{who}.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write");
        std::fs::write(&key_file, key.serialize_pem()).expect("write");
        (cert_file, key_file)
    }

    fn valid(&self, who: &str) -> (PathBuf, PathBuf) {
        self.issue(who, &["localhost", "127.0.0.1"], -3600, 86_400)
    }
}

struct Server {
    addr: String,
    metrics: Arc<ListenerMetrics>,
    tls: Option<Arc<NodeTls>>,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(tls: Option<Arc<NodeTls>>, limits: ListenerLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let metrics = ListenerMetrics::new();
    let stop = CancellationToken::new();
    let incoming = ordo_node::incoming(
        listener,
        tls.as_ref().map(|t| t.server_config()),
        limits,
        metrics.clone(),
        stop.clone(),
    );
    let ready: ordo_node::health::ReadinessProbe = Arc::new(|| true);
    let health = ordo_node::health::serve_health(&["test.Service"], ready, stop.clone()).await;
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, async move { token.cancelled().await })
            .await;
    });
    Server {
        addr,
        metrics,
        tls,
        stop,
    }
}

fn node_tls(cert: &(PathBuf, PathBuf), ca: &[PathBuf]) -> Arc<NodeTls> {
    let section = TlsSection {
        enabled: true,
        cert_file: cert.0.clone(),
        key_file: cert.1.clone(),
        ca_files: ca.to_vec(),
        ..TlsSection::default()
    };
    NodeTls::load(&section).expect("node TLS loads")
}

fn client(cert: &(PathBuf, PathBuf), ca: &Path) -> Transport {
    Transport::Tls(
        ClientTls::from_files(&TlsFiles {
            cert: cert.0.clone(),
            key: cert.1.clone(),
            ca: vec![ca.to_path_buf()],
        })
        .expect("client TLS loads"),
    )
}

/// One health check over `transport`; Ok(status) or the error text.
async fn check(addr: &str, transport: &Transport) -> Result<i32, String> {
    let ch = connect(addr, transport)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut c = HealthClient::new(ch);
    c.check(HealthCheckRequest {
        service: "test.Service".into(),
    })
    .await
    .map(|r| r.into_inner().status)
    .map_err(|s| format!("{s:?}"))
}

async fn wait_refused(m: &ListenerMetrics, reason: Refusal, n: u64) {
    for _ in 0..200 {
        if m.refused(reason) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "expected {n} refusals for {}, saw {}",
        reason.label(),
        m.refused(reason)
    );
}

const SERVING: i32 = 1;

#[tokio::test]
async fn mutual_tls_serves_a_trusted_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "orgA");
    let server = serve(
        Some(node_tls(&ca.valid("node"), &[ca.ca_file()])),
        ListenerLimits::default(),
    )
    .await;
    let t = client(&ca.valid("client"), &ca.ca_file());
    assert_eq!(check(&server.addr, &t).await, Ok(SERVING));
    assert_eq!(server.metrics.accepted(), 1);
    let peer = server
        .tls
        .as_ref()
        .and_then(|t| t.own_cert())
        .expect("own cert");
    assert_eq!(peer.subject, "node");
    assert!(peer.hosts.contains(&"127.0.0.1".to_string()));
}

#[tokio::test]
async fn a_plaintext_client_is_refused_and_named_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "orgA");
    let server = serve(
        Some(node_tls(&ca.valid("node"), &[ca.ca_file()])),
        ListenerLimits::default(),
    )
    .await;
    assert!(check(&server.addr, &Transport::Plain).await.is_err());
    wait_refused(&server.metrics, Refusal::Plaintext, 1).await;
    assert_eq!(server.metrics.accepted(), 0);
}

#[tokio::test]
async fn certificates_the_node_must_not_accept_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "orgA");
    let stranger = Ca::new(dir.path(), "stranger");
    let server = serve(
        Some(node_tls(&ca.valid("node"), &[ca.ca_file()])),
        ListenerLimits::default(),
    )
    .await;
    // Unknown CA, expired, not yet valid: each refused in the handshake.
    let unknown = client(&stranger.valid("intruder"), &ca.ca_file());
    let expired = client(
        &ca.issue("expired", &["localhost"], -7200, -3600),
        &ca.ca_file(),
    );
    let early = client(
        &ca.issue("early", &["localhost"], 3600, 7200),
        &ca.ca_file(),
    );
    for (n, t) in [unknown, expired, early].iter().enumerate() {
        assert!(check(&server.addr, t).await.is_err(), "case {n} accepted");
        wait_refused(&server.metrics, Refusal::Handshake, n as u64 + 1).await;
    }
    // No client certificate at all, while one is required.
    let anonymous = Transport::Tls(
        ClientTls::with_verifier(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(ordo_sdk::tls::read_roots(&[ca.ca_file()]).expect("roots")),
                ordo_sdk::tls::provider(),
            )
            .build()
            .expect("verifier"),
            None,
        )
        .expect("client"),
    );
    assert!(check(&server.addr, &anonymous).await.is_err());
    wait_refused(&server.metrics, Refusal::Handshake, 4).await;
    assert_eq!(server.metrics.accepted(), 0);
}

#[tokio::test]
async fn a_certificate_revoked_by_channel_config_is_refused_from_the_next_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "orgA");
    let tls = node_tls(&ca.valid("node"), &[ca.ca_file()]);
    let server = serve(Some(tls.clone()), ListenerLimits::default()).await;
    let pair = ca.valid("client");
    let t = client(&pair, &ca.ca_file());
    assert_eq!(check(&server.addr, &t).await, Ok(SERVING));
    let der = ordo_sdk::tls::read_certs(&pair.0).expect("cert")[0].to_vec();
    tls.trust().set_channel(
        "ch",
        ChannelTrust {
            roots: Vec::new(),
            revoked: vec![ordo_node::trust::cert_hash(&der).to_vec()],
        },
    );
    assert!(check(&server.addr, &t).await.is_err());
    wait_refused(&server.metrics, Refusal::Handshake, 1).await;
    // Another certificate of the same CA still works.
    let other = client(&ca.valid("other"), &ca.ca_file());
    assert_eq!(check(&server.addr, &other).await, Ok(SERVING));
}

#[tokio::test]
async fn trust_comes_from_channel_configs_and_goes_with_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let own = Ca::new(dir.path(), "orgA");
    let other = Ca::new(dir.path(), "orgB");
    let tls = node_tls(&own.valid("node"), &[own.ca_file()]);
    let server = serve(Some(tls.clone()), ListenerLimits::default()).await;
    let b_client = client(&other.valid("b-client"), &own.ca_file());
    assert!(check(&server.addr, &b_client).await.is_err());
    let root = ordo_sdk::tls::read_certs(&other.ca_file()).expect("ca")[0].to_vec();
    tls.trust().set_channel(
        "ch",
        ChannelTrust {
            roots: vec![root],
            revoked: Vec::new(),
        },
    );
    assert_eq!(check(&server.addr, &b_client).await, Ok(SERVING));
    tls.trust().remove_channel("ch");
    // A new connection (new transport: the old channel's connection is still up and is
    // not cut) is refused again.
    let b_again = client(&other.valid("b-client2"), &own.ca_file());
    assert!(check(&server.addr, &b_again).await.is_err());
}

#[tokio::test]
async fn the_client_refuses_a_server_certificate_for_another_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "orgA");
    let wrong = ca.issue("elsewhere", &["elsewhere.example"], -3600, 86_400);
    let server = serve(
        Some(node_tls(&wrong, &[ca.ca_file()])),
        ListenerLimits::default(),
    )
    .await;
    let t = client(&ca.valid("client"), &ca.ca_file());
    let err = check(&server.addr, &t)
        .await
        .expect_err("wrong SAN accepted");
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for"),
        "{err}"
    );
}

#[tokio::test]
async fn silent_and_half_done_handshakes_are_closed_after_the_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "orgA");
    let limits = ListenerLimits {
        handshake_timeout: Duration::from_millis(300),
        ..ListenerLimits::default()
    };
    let server = serve(Some(node_tls(&ca.valid("node"), &[ca.ca_file()])), limits).await;
    // Silent: connects and sends nothing.
    let mut silent = TcpStream::connect(&server.addr).await.expect("connect");
    // Half a ClientHello: a TLS record header that promises more than it sends.
    let mut half = TcpStream::connect(&server.addr).await.expect("connect");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    wait_refused(&server.metrics, Refusal::HandshakeTimeout, 2).await;
    // Both sockets were closed by the node: reads see EOF.
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 8];
    for s in [&mut silent, &mut half] {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed within the deadline");
        assert!(matches!(n, Ok(0) | Err(_)), "socket still open: {n:?}");
    }
}

#[tokio::test]
async fn a_burst_over_the_connection_cap_is_refused_without_touching_established_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "orgA");
    let limits = ListenerLimits {
        max_connections: 4,
        ..ListenerLimits::default()
    };
    let server = serve(Some(node_tls(&ca.valid("node"), &[ca.ca_file()])), limits).await;
    let t = client(&ca.valid("client"), &ca.ca_file());
    let established = connect(&server.addr, &t).await.expect("connect");
    let mut health = HealthClient::new(established);
    let req = || HealthCheckRequest {
        service: "test.Service".into(),
    };
    assert_eq!(
        health
            .check(req())
            .await
            .expect("check")
            .into_inner()
            .status,
        SERVING
    );
    // A burst of raw connections: three fit (they then time out in their handshakes),
    // the rest are refused at once.
    let mut burst = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(&server.addr).await {
            burst.push(s);
        }
    }
    wait_refused(&server.metrics, Refusal::NodeCapacity, 150).await;
    // The established connection still works, many times over.
    for _ in 0..20 {
        assert_eq!(
            health
                .check(req())
                .await
                .expect("check")
                .into_inner()
                .status,
            SERVING
        );
    }
    assert_eq!(server.metrics.open(), 1);
}

#[tokio::test]
async fn one_identity_cannot_hold_more_than_its_share() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "orgA");
    let limits = ListenerLimits {
        max_connections_per_identity: 2,
        ..ListenerLimits::default()
    };
    let server = serve(Some(node_tls(&ca.valid("node"), &[ca.ca_file()])), limits).await;
    let greedy = client(&ca.valid("greedy"), &ca.ca_file());
    let mut held = Vec::new();
    for _ in 0..2 {
        let ch = connect(&server.addr, &greedy).await.expect("connect");
        let mut c = HealthClient::new(ch.clone());
        c.check(HealthCheckRequest::default()).await.expect("check");
        held.push(ch);
    }
    assert!(check(&server.addr, &greedy).await.is_err());
    wait_refused(&server.metrics, Refusal::IdentityCapacity, 1).await;
    let modest = client(&ca.valid("modest"), &ca.ca_file());
    assert_eq!(check(&server.addr, &modest).await, Ok(SERVING));
}

#[tokio::test]
async fn a_renewed_key_pair_is_used_by_new_handshakes_while_old_connections_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "orgA");
    let pair = ca.valid("node");
    let tls = node_tls(&pair, &[ca.ca_file()]);
    let server = serve(Some(tls.clone()), ListenerLimits::default()).await;
    let t = client(&ca.valid("client"), &ca.ca_file());
    let old = connect(&server.addr, &t).await.expect("connect");
    let mut old_client = HealthClient::new(old);
    old_client
        .check(HealthCheckRequest::default())
        .await
        .expect("check");
    let before = tls.own_cert().expect("cert");
    // Renew: a new key and certificate written over the same files, then reload.
    let renewed = ca.valid("node-renewed");
    std::fs::copy(&renewed.0, &pair.0).expect("copy cert");
    std::fs::copy(&renewed.1, &pair.1).expect("copy key");
    tls.reload();
    let after = tls.own_cert().expect("cert");
    assert_ne!(before.subject, after.subject);
    assert_eq!(after.subject, "node-renewed");
    // New handshakes work with the new pair; the old connection keeps working.
    assert_eq!(check(&server.addr, &t).await, Ok(SERVING));
    old_client
        .check(HealthCheckRequest::default())
        .await
        .expect("old connection continues");
    // A broken pair (key of another certificate) is refused and the renewed one stays.
    let other = ca.valid("other");
    std::fs::copy(&other.1, &pair.1).expect("copy key");
    tls.reload();
    assert_eq!(tls.own_cert().expect("cert").subject, "node-renewed");
    assert_eq!(check(&server.addr, &t).await, Ok(SERVING));
}

#[tokio::test]
async fn health_answers_not_serving_until_ready() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let stop = CancellationToken::new();
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe: ordo_node::health::ReadinessProbe = {
        let ready = ready.clone();
        Arc::new(move || ready.load(std::sync::atomic::Ordering::Relaxed))
    };
    let health = ordo_node::health::serve_health(&["test.Service"], probe, stop.clone()).await;
    let incoming = ordo_node::incoming(
        listener,
        None,
        ListenerLimits::default(),
        ListenerMetrics::new(),
        stop.clone(),
    );
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, async move { token.cancelled().await })
            .await;
    });
    const NOT_SERVING: i32 = 2;
    assert_eq!(check(&addr, &Transport::Plain).await, Ok(NOT_SERVING));
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut status = NOT_SERVING;
    for _ in 0..50 {
        status = check(&addr, &Transport::Plain).await.expect("check");
        if status == SERVING {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, SERVING);
    stop.cancel();
}

#[test]
fn a_pinned_certificate_accepts_its_renewal_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "orgA");
    let stranger = Ca::new(dir.path(), "orgB");
    let der =
        |pair: &(PathBuf, PathBuf)| ordo_sdk::tls::read_certs(&pair.0).expect("cert")[0].to_vec();
    let pinned = der(&ca.valid("orderer0"));
    let renewed = der(&ca.valid("orderer0"));
    assert_ne!(pinned, renewed, "a new key and certificate");
    use ordo_node::certinfo::same_or_renewed;
    assert!(same_or_renewed(&pinned, &pinned));
    assert!(same_or_renewed(&pinned, &renewed));
    // Another node of the same org, the same name from another CA, garbage: refused.
    assert!(!same_or_renewed(&pinned, &der(&ca.valid("orderer1"))));
    assert!(!same_or_renewed(&pinned, &der(&stranger.valid("orderer0"))));
    assert!(!same_or_renewed(&pinned, b"not a certificate"));
}
