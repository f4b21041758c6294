//! Hostile clients against real processes (`ordo up`, TLS, one orderer, three peers):
//! garbage, truncated and oversized messages to every RPC of every service; to every RPC
//! again, well-formed requests for another channel, badly signed, or signed an hour ago,
//! and copies of every request that changed something; a thousand idle connections that
//! never finish a handshake, half-open Broadcast streams (never sending, or never reading
//! their answers), and Deliver and BlockEvents readers that never read. Every bad request
//! gets a precise status; afterwards a normal transfer still commits and every peer
//! agrees.

mod common;

use common::*;
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_sdk::gateway::{Gateway, StartAt};
use ordo_sdk::network::Network;
use prost::Message;

const CHANNEL: &str = "ordo-channel";

/// Every unary-request RPC a peer serves (server streams included: their request is one
/// message).
const PEER_PATHS: [&str; 11] = [
    "/ordo.gateway.Gateway/Evaluate",
    "/ordo.gateway.Gateway/Endorse",
    "/ordo.gateway.Gateway/Submit",
    "/ordo.gateway.Gateway/CommitStatus",
    "/ordo.gateway.Endorser/ProcessProposal",
    "/ordo.gateway.Events/ChaincodeEvents",
    "/ordo.gateway.Events/BlockEvents",
    "/ordo.query.Query/Query",
    "/ordo.discovery.Discovery/Announce",
    "/ordo.discovery.Discovery/Peers",
    "/ordo.admin.Admin/Execute",
];

/// Every unary-request RPC an orderer serves to clients.
const ORDERER_PATHS: [&str; 2] = [
    "/ordo.orderer.AtomicBroadcast/Deliver",
    "/ordo.admin.Admin/Execute",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_precise_statuses_and_the_network_carries_on() {
    let (_tmp, network_file, _up) = up_in_temp_dir();
    let net = Network::load(&network_file).expect("network");
    let orderer = net.first_orderer().expect("orderer").grpc_addr.clone();
    let peers: Vec<String> = net
        .nodes_with_role("peer")
        .map(|p| p.grpc_addr.clone())
        .collect();
    let client = net.identity(Some("BankA"), "client").expect("client");

    // Garbage, and a real envelope cut in half, to every RPC.
    let whole = message(&client, CHANNEL, 64, 1).0.encode_to_vec();
    let truncated = whole[..whole.len() / 2].to_vec();
    let garbage = b"\xff\xff\xff\xff\xff\xff".to_vec();
    let targets = peers
        .iter()
        .flat_map(|p| PEER_PATHS.iter().map(move |path| (p.clone(), *path)))
        .chain(ORDERER_PATHS.iter().map(|path| (orderer.clone(), *path)));
    for (addr, path) in targets {
        for bytes in [&garbage, &truncated] {
            let status = raw_unary(&addr, path, bytes.clone()).await;
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{addr}{path} with {} bytes: {status}",
                bytes.len()
            );
        }
    }
    // The same on a Broadcast stream: the stream ends with INVALID_ARGUMENT.
    let (answers, ending) = raw_broadcast(&orderer, vec![truncated.clone()]).await;
    assert!(answers.is_empty(), "{answers:?}");
    assert_eq!(ending.map(|s| s.code()), Some(tonic::Code::InvalidArgument));

    // A message over the nodes' gRPC limit (80 MiB on both, PROTOCOL.md "Statuses") to
    // every RPC, Broadcast included: OUT_OF_RANGE, read no further than its length.
    let oversized = vec![0u8; 80 * 1024 * 1024 + 1];
    let every_path = PEER_PATHS
        .iter()
        .map(|path| (peers[0].clone(), *path))
        .chain(ORDERER_PATHS.iter().map(|path| (orderer.clone(), *path)));
    for (addr, path) in every_path {
        let status = raw_unary(&addr, path, oversized.clone()).await;
        assert_eq!(
            status.code(),
            tonic::Code::OutOfRange,
            "{addr}{path} with 80 MiB + 1: {status}"
        );
    }
    let (answers, ending) = raw_broadcast(&orderer, vec![oversized]).await;
    assert!(answers.is_empty(), "{answers:?}");
    assert_eq!(ending.map(|s| s.code()), Some(tonic::Code::OutOfRange));

    // Badly signed, stale and replayed requests: refused with the model's precise status.
    let forged = |mut env: ordo_proto::pb::common::Envelope| {
        let mut sig = env.signature.to_vec();
        sig[0] ^= 1;
        env.signature = sig.into();
        env
    };
    let reader_request = |data: Vec<u8>, at_ms: u64| {
        ordo_proto::envelope::create_signed(
            &client,
            CHANNEL,
            ordo_proto::pb::common::HeaderType::Message,
            data.into(),
            at_ms,
        )
        .0
    };
    let query = ordo_proto::pb::query::QueryRequest {
        query: Some(ordo_proto::pb::query::query_request::Query::Height(
            ordo_proto::pb::query::GetHeight {},
        )),
    }
    .encode_to_vec();
    let mut peer_query_client = ordo_proto::pb::query::query_client::QueryClient::new(
        connect(&peers[0]).await.expect("connect"),
    );
    let an_hour_ago = ordo_proto::now_ms() - 3_600_000;
    for (what, env) in [
        (
            "forged",
            forged(reader_request(query.clone(), ordo_proto::now_ms())),
        ),
        ("stale", reader_request(query.clone(), an_hour_ago)),
    ] {
        let refusal = peer_query_client.query(env).await.expect_err("refused");
        assert_eq!(
            refusal.code(),
            tonic::Code::PermissionDenied,
            "{what} query: {refusal:?}"
        );
    }
    let commit_status = ordo_proto::pb::gateway::CommitStatusRequest {
        tx_id: "00".repeat(32),
    }
    .encode_to_vec();
    let mut gateway_client = ordo_proto::pb::gateway::gateway_client::GatewayClient::new(
        connect(&peers[0]).await.expect("connect"),
    );
    let status = gateway_client
        .commit_status(forged(reader_request(commit_status, ordo_proto::now_ms())))
        .await
        .expect_err("forged commit status");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    let forged_deliver = forged(ordo_sdk::orderer::seek_request(
        &client,
        CHANNEL,
        ordo_sdk::orderer::oldest(),
        None,
        SeekBehavior::FailIfNotReady,
    ));
    let d = deliver_raw(&orderer, forged_deliver).await;
    assert_eq!(d.code, tonic::Code::PermissionDenied, "{}", d.info);
    assert!(d.blocks.is_empty());
    // A replayed mutation is refused (reads get the freshness window only, by design):
    // the same signed remove, sent twice.
    let admin = net.identity(Some("BankA"), "admin").expect("admin");
    let remove = ordo_sdk::orderer::admin_request(
        &admin,
        "no-such-channel",
        ordo_proto::pb::admin::admin_command::Command::Remove(
            ordo_proto::pb::admin::RemoveChannel {
                channel_id: "no-such-channel".into(),
            },
        ),
    );
    let mut admin_client =
        ordo_sdk::orderer::admin_client(connect(&orderer).await.expect("connect"));
    let first = admin_client
        .execute(remove.clone())
        .await
        .expect_err("no such channel");
    assert_eq!(first.code(), tonic::Code::NotFound, "{first:?}");
    let replayed = admin_client
        .execute(remove)
        .await
        .expect_err("a replay is refused");
    assert_eq!(
        replayed.code(),
        tonic::Code::AlreadyExists,
        "a replayed Admin request: {replayed:?}"
    );

    // Well-formed requests with one thing wrong, and replays, to every RPC.
    let who = Signers {
        client: client.clone(),
        peer: net.identity(Some("BankA"), "peer").expect("peer identity"),
    };
    wrong_forged_and_stale_requests_to_every_rpc(&who, &orderer, &peers[0]).await;
    replays_of_every_mutation(&who, &net, &orderer, &peers[0]).await;

    // Half-open Broadcast streams: 200 that never send an envelope nor close their side,
    // and 20 that sent one and never read the answer, each on its own connection.
    let mut half_open = Vec::new();
    for i in 0..220 {
        let mut b = ordo_sdk::orderer::broadcast_client(connect(&orderer).await.expect("connect"));
        let sent = if i < 200 {
            Vec::new()
        } else {
            vec![message(&client, CHANNEL, 64, 10_000 + i).0]
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        for env in sent {
            tx.send(env).await.expect("queued");
        }
        let answers = b
            .broadcast(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("a broadcast stream opens");
        // Kept: the sender (so the stream stays half open) and the unread answers.
        half_open.push((tx, answers, b));
    }

    // A thousand connections that never say a word (nor finish a TLS handshake).
    let mut idle = Vec::new();
    for i in 0..1_000 {
        let addr = if i % 2 == 0 { &orderer } else { &peers[0] };
        idle.push(std::net::TcpStream::connect(addr).expect("the listener accepts"));
    }

    // Readers that never read: a Deliver stream from the first block and a BlockEvents
    // stream of whole blocks.
    let mut deliver_client =
        ordo_sdk::orderer::broadcast_client(connect(&orderer).await.expect("connect"));
    let _never_read_deliver = deliver_client
        .deliver(ordo_sdk::orderer::seek_request(
            &client,
            CHANNEL,
            ordo_sdk::orderer::oldest(),
            None,
            SeekBehavior::BlockUntilReady,
        ))
        .await
        .expect("deliver opens");
    let gateway = Gateway::for_org(&net, "BankA", "client")
        .await
        .expect("gateway");
    let bank = gateway.contract(CHANNEL, "bank");
    let _never_read_events = bank.events(StartAt::Block(0)).await.expect("events open");

    // The network carries on: transfers commit, every peer agrees.
    bank.submit("open", ["alice", "10"]).await.expect("open");
    bank.submit("open", ["bob", "0"]).await.expect("open");
    let moved = bank
        .submit_with_retry("transfer", ["alice", "bob", "4"])
        .await
        .expect("a transfer commits");
    for org in ["BankA", "BankB", "BankC"] {
        let theirs = Gateway::for_org(&net, org, "client")
            .await
            .expect("gateway")
            .contract(CHANNEL, "bank");
        // CommitStatus waits until that peer has committed the transfer.
        let status = theirs.commit_status(&moved.tx_id).await.expect("status");
        assert_eq!(status.block, moved.block, "{org}");
        let balance = theirs.evaluate("balance", ["bob"]).await.expect("balance");
        assert_eq!(balance, "4", "{org}'s peer agrees");
    }
    // Through all of it, with every hostile connection and stream still held, each
    // node's memory stayed bounded.
    let dir = network_file.parent().expect("the network's directory");
    let nodes = node_pids(dir);
    assert_eq!(nodes.len(), 4, "one orderer and three peers: {nodes:?}");
    for (pid, rss) in nodes.iter().map(|&pid| (pid, rss(pid))) {
        assert!(rss < 1 << 30, "node {pid} holds {} MiB", rss >> 20);
    }
    drop(idle);
    drop(half_open);
}

/// The node processes `ordo up` started for the network in `dir` (their command line
/// names a config file under it).
fn node_pids(dir: &std::path::Path) -> Vec<u32> {
    let dir = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let config_in_dir = args
            .iter()
            .any(|a| a.starts_with(&dir) && a.ends_with(".toml"));
        let is_node = args.iter().any(|a| a == "orderer" || a == "peer");
        if config_in_dir && is_node {
            pids.push(pid);
        }
    }
    pids
}

/// A process's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Every RPC a client (or, for Announce, a peer) calls with a signed request.
#[derive(Clone, Copy, Debug)]
enum Rpc {
    Evaluate,
    Endorse,
    Submit,
    CommitStatus,
    ProcessProposal,
    ChaincodeEvents,
    BlockEvents,
    Query,
    Announce,
    Peers,
    PeerAdmin,
    Broadcast,
    Deliver,
    OrdererAdmin,
}

const EVERY_RPC: [Rpc; 14] = [
    Rpc::Evaluate,
    Rpc::Endorse,
    Rpc::Submit,
    Rpc::CommitStatus,
    Rpc::ProcessProposal,
    Rpc::ChaincodeEvents,
    Rpc::BlockEvents,
    Rpc::Query,
    Rpc::Announce,
    Rpc::Peers,
    Rpc::PeerAdmin,
    Rpc::Broadcast,
    Rpc::Deliver,
    Rpc::OrdererAdmin,
];

impl Rpc {
    fn path(self) -> &'static str {
        match self {
            Rpc::Evaluate => "/ordo.gateway.Gateway/Evaluate",
            Rpc::Endorse => "/ordo.gateway.Gateway/Endorse",
            Rpc::Submit => "/ordo.gateway.Gateway/Submit",
            Rpc::CommitStatus => "/ordo.gateway.Gateway/CommitStatus",
            Rpc::ProcessProposal => "/ordo.gateway.Endorser/ProcessProposal",
            Rpc::ChaincodeEvents => "/ordo.gateway.Events/ChaincodeEvents",
            Rpc::BlockEvents => "/ordo.gateway.Events/BlockEvents",
            Rpc::Query => "/ordo.query.Query/Query",
            Rpc::Announce => "/ordo.discovery.Discovery/Announce",
            Rpc::Peers => "/ordo.discovery.Discovery/Peers",
            Rpc::PeerAdmin | Rpc::OrdererAdmin => "/ordo.admin.Admin/Execute",
            Rpc::Broadcast => "/ordo.orderer.AtomicBroadcast/Broadcast",
            Rpc::Deliver => "/ordo.orderer.AtomicBroadcast/Deliver",
        }
    }

    fn on_orderer(self) -> bool {
        matches!(self, Rpc::Broadcast | Rpc::Deliver | Rpc::OrdererAdmin)
    }

    /// The code for a copy signed an hour ago (PROTOCOL.md, "Statuses"): a signed read's
    /// freshness check is a permission; the others' clock check is the request's fault.
    fn stale_code(self) -> tonic::Code {
        match self {
            Rpc::Evaluate
            | Rpc::Endorse
            | Rpc::ProcessProposal
            | Rpc::Submit
            | Rpc::Announce
            | Rpc::Broadcast => tonic::Code::InvalidArgument,
            _ => tonic::Code::PermissionDenied,
        }
    }
}

/// Who signs the requests: a client of BankA, and BankA's peer for announcements.
struct Signers {
    client: ordo_proto::identity::Identity,
    peer: ordo_proto::identity::Identity,
}

/// Flips a bit of an envelope's signature.
fn forge(mut env: ordo_proto::pb::common::Envelope) -> ordo_proto::pb::common::Envelope {
    let mut sig = env.signature.to_vec();
    sig[0] ^= 1;
    env.signature = sig.into();
    env
}

/// A proposal to read alice's balance, by `who` on `channel` with `nonce`.
fn balance_proposal(
    who: &ordo_proto::identity::Identity,
    channel: &str,
    nonce: &[u8],
) -> ordo_sdk::tx::Proposal {
    ordo_sdk::tx::Proposal::with_nonce(
        who.cert_bytes().clone(),
        channel,
        ordo_sdk::tx::invocation("bank", "balance", vec![bytes::Bytes::from_static(b"alice")]),
        nonce,
    )
    .expect("a proposal")
}

/// A well-formed request to `rpc` on `channel`, signed at `at_ms` (badly when `forged`),
/// as the bytes of the RPC's request message. Proposals and transactions use `nonce`.
fn request(
    rpc: Rpc,
    who: &Signers,
    channel: &str,
    at_ms: u64,
    forged: bool,
    nonce: &[u8],
) -> Vec<u8> {
    use ordo_proto::pb::common::HeaderType;
    let sign = |t: HeaderType, data: Vec<u8>| {
        let (env, _) = ordo_proto::envelope::create_signed_with_nonce(
            &who.client,
            channel,
            t,
            data.into(),
            at_ms,
            nonce,
        );
        if forged {
            forge(env)
        } else {
            env
        }
    };
    let proposal = || {
        let env = ordo_sdk::gateway::signed_proposal(
            &who.client,
            &balance_proposal(&who.client, channel, nonce),
            at_ms,
        );
        if forged {
            forge(env)
        } else {
            env
        }
    };
    let admin_info = || {
        let env = ordo_testkit::admin::request_at(
            &who.client,
            ordo_proto::pb::admin::admin_command::Command::Info(
                ordo_proto::pb::admin::GetChannelInfo {
                    channel_id: channel.into(),
                },
            ),
            at_ms,
        );
        if forged {
            forge(env)
        } else {
            env
        }
    };
    match rpc {
        Rpc::Evaluate | Rpc::ProcessProposal => proposal().encode_to_vec(),
        Rpc::Endorse => ordo_proto::pb::gateway::EndorseRequest {
            proposal: Some(proposal()),
            endorsing_orgs: Vec::new(),
        }
        .encode_to_vec(),
        Rpc::Submit => sign(
            HeaderType::EndorserTransaction,
            b"not a transaction".to_vec(),
        )
        .encode_to_vec(),
        Rpc::CommitStatus => sign(
            HeaderType::Message,
            ordo_proto::pb::gateway::CommitStatusRequest {
                tx_id: "00".repeat(32),
            }
            .encode_to_vec(),
        )
        .encode_to_vec(),
        Rpc::ChaincodeEvents => sign(
            HeaderType::Message,
            ordo_proto::pb::gateway::ChaincodeEventsRequest {
                chaincode: "bank".into(),
                start_block: 0,
                after_tx_id: String::new(),
            }
            .encode_to_vec(),
        )
        .encode_to_vec(),
        Rpc::BlockEvents => sign(
            HeaderType::Message,
            ordo_proto::pb::gateway::BlockEventsRequest {
                start_block: 0,
                filtered: true,
            }
            .encode_to_vec(),
        )
        .encode_to_vec(),
        Rpc::Query => sign(
            HeaderType::Message,
            ordo_proto::pb::query::QueryRequest {
                query: Some(ordo_proto::pb::query::query_request::Query::Height(
                    ordo_proto::pb::query::GetHeight {},
                )),
            }
            .encode_to_vec(),
        )
        .encode_to_vec(),
        Rpc::Peers => sign(
            HeaderType::Message,
            ordo_proto::pb::discovery::PeersRequest {}.encode_to_vec(),
        )
        .encode_to_vec(),
        Rpc::Announce => {
            let info = ordo_proto::pb::discovery::PeerInfo {
                channel_id: channel.into(),
                endpoint: "127.0.0.1:9".into(),
                certificate: who.peer.cert_bytes().clone(),
                chaincodes: Vec::new(),
                height: 1,
                issued_ms: at_ms,
            };
            let mut signed = ordo_proto::discovery::sign(&who.peer, &info);
            if forged {
                let mut sig = signed.signature.to_vec();
                sig[0] ^= 1;
                signed.signature = sig.into();
            }
            signed.encode_to_vec()
        }
        Rpc::PeerAdmin | Rpc::OrdererAdmin => admin_info().encode_to_vec(),
        Rpc::Broadcast => sign(HeaderType::Message, vec![7u8; 64]).encode_to_vec(),
        Rpc::Deliver => sign(
            HeaderType::DeliverSeekInfo,
            ordo_proto::pb::orderer::SeekInfo {
                start: Some(ordo_sdk::orderer::oldest()),
                stop: Some(ordo_sdk::orderer::oldest()),
                behavior: SeekBehavior::FailIfNotReady as i32,
            }
            .encode_to_vec(),
        )
        .encode_to_vec(),
    }
}

/// Sends `bytes` to `rpc` at `addr`; the gRPC code of the outcome. A Broadcast answer's
/// status counts through the one table (`ordo_proto::status::grpc_code_of`).
async fn call(rpc: Rpc, addr: &str, bytes: Vec<u8>) -> (tonic::Code, String) {
    if let Rpc::Broadcast = rpc {
        let (answers, ending) = raw_broadcast(addr, vec![bytes]).await;
        return match (answers.first(), ending) {
            (Some(a), _) => (ordo_proto::status::grpc_code_of(a.status), a.info.clone()),
            (None, Some(s)) => (s.code(), s.message().to_string()),
            (None, None) => panic!("Broadcast answered nothing"),
        };
    }
    let status = raw_unary(addr, rpc.path(), bytes).await;
    (status.code(), status.message().to_string())
}

/// Well-formed requests with one thing wrong, to every RPC: another channel (NOT_FOUND),
/// a bad signature (PERMISSION_DENIED), a copy signed an hour ago (see `stale_code`).
async fn wrong_forged_and_stale_requests_to_every_rpc(who: &Signers, orderer: &str, peer: &str) {
    let now = ordo_proto::now_ms();
    let an_hour_ago = now - 3_600_000;
    for (i, rpc) in EVERY_RPC.into_iter().enumerate() {
        let addr = if rpc.on_orderer() { orderer } else { peer };
        let nonce = |k: u8| [b'w', b'f', b's', i as u8, k, 0, 0, 0];
        let cases = [
            (
                "another channel",
                request(rpc, who, "no-such-channel", now, false, &nonce(0)),
                tonic::Code::NotFound,
            ),
            (
                "a bad signature",
                request(rpc, who, CHANNEL, now, true, &nonce(1)),
                tonic::Code::PermissionDenied,
            ),
            (
                "signed an hour ago",
                request(rpc, who, CHANNEL, an_hour_ago, false, &nonce(2)),
                rpc.stale_code(),
            ),
        ];
        for (what, bytes, want) in cases {
            let (code, info) = call(rpc, addr, bytes).await;
            assert_eq!(code, want, "{rpc:?} with {what}: {info}");
            assert!(!info.is_empty(), "{rpc:?} with {what}: a refusal says why");
        }
    }
}

/// Copies of requests that changed something, to every RPC that changes something: a
/// transaction the orderer took (Broadcast, Submit: ALREADY_EXISTS) and, once it is
/// committed, proposals with its tx id (Evaluate, Endorse, ProcessProposal:
/// ALREADY_EXISTS). (Admin replays are checked above; reads have only their freshness
/// window, checked by `wrong_forged_and_stale_requests_to_every_rpc`.)
async fn replays_of_every_mutation(who: &Signers, net: &Network, orderer: &str, peer: &str) {
    let nonce = *b"replayed";
    let now = ordo_proto::now_ms();
    let submitted = request(Rpc::Submit, who, CHANNEL, now, false, &nonce);
    let (code, info) = call(Rpc::Submit, peer, submitted.clone()).await;
    assert_eq!(code, tonic::Code::Ok, "the first Submit: {info}");
    let tx_id = ordo_proto::hash::tx_id(&nonce, who.client.cert_bytes());
    let (code, info) = call(Rpc::Submit, peer, submitted.clone()).await;
    assert_eq!(code, tonic::Code::AlreadyExists, "Submit again: {info}");
    let (code, info) = call(Rpc::Broadcast, orderer, submitted).await;
    assert_eq!(
        code,
        tonic::Code::AlreadyExists,
        "Broadcast of the same: {info}"
    );
    let broadcast = request(Rpc::Broadcast, who, CHANNEL, now, false, b"replay-b");
    let (code, info) = call(Rpc::Broadcast, orderer, broadcast.clone()).await;
    assert_eq!(code, tonic::Code::Ok, "the first Broadcast: {info}");
    let (code, info) = call(Rpc::Broadcast, orderer, broadcast).await;
    assert_eq!(code, tonic::Code::AlreadyExists, "Broadcast again: {info}");

    // Committed (as an invalid transaction: its data is no transaction), its tx id is
    // taken: a proposal reusing it is a replay.
    let gateway = Gateway::for_org(net, "BankA", "client")
        .await
        .expect("gateway");
    let committed = gateway
        .contract(CHANNEL, "bank")
        .commit_status(&tx_id)
        .await
        .expect("the submitted transaction commits");
    assert!(!committed.is_valid(), "{committed:?}");
    assert_eq!(
        balance_proposal(&who.client, CHANNEL, &nonce).tx_id(),
        tx_id,
        "the proposal reuses the transaction's tx id"
    );
    for rpc in [Rpc::Evaluate, Rpc::Endorse, Rpc::ProcessProposal] {
        let bytes = request(rpc, who, CHANNEL, ordo_proto::now_ms(), false, &nonce);
        let (code, info) = call(rpc, peer, bytes).await;
        assert_eq!(
            code,
            tonic::Code::AlreadyExists,
            "{rpc:?} of a committed tx id: {info}"
        );
    }
}
