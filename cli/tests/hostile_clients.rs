//! Hostile clients against real processes (`ordo up`, TLS, one orderer, three peers):
//! garbage and truncated messages to every RPC of every service, badly signed, stale and
//! replayed requests, a thousand idle
//! connections that never finish a handshake, half-open Broadcast streams (never sending,
//! or never reading their answers), and Deliver and BlockEvents readers that never read. Every bad request gets a precise status; afterwards a normal transfer still
//! commits and every peer agrees.

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
        let resp = peer_query_client
            .query(env)
            .await
            .expect("answered")
            .into_inner();
        assert_eq!(
            resp.status,
            ordo_proto::pb::common::Status::Forbidden as i32,
            "{what} query: {}",
            resp.info
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
    assert_eq!(
        d.status,
        Some(ordo_proto::pb::common::Status::Forbidden),
        "{}",
        d.info
    );
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
        .expect("answered")
        .into_inner();
    assert_eq!(
        first.status,
        ordo_proto::pb::common::Status::NotFound as i32,
        "{}",
        first.info
    );
    let replayed = admin_client
        .execute(remove)
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(
        replayed.status,
        ordo_proto::pb::common::Status::Conflict as i32,
        "a replayed Admin request: {}",
        replayed.info
    );

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
    drop(idle);
    drop(half_open);
}
