//! gRPC server reflection on every node of a TLS `ordo up` network: a generic client lists
//! the node's services and fetches their descriptors, as grpcurl would.

mod common;

use common::*;
use ordo_sdk::network::Network;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

/// One reflection request to `addr`, answered over the harness's TLS transport.
async fn ask(addr: &str, request: MessageRequest) -> MessageResponse {
    try_ask(addr, request).await.expect("a reflection answer")
}

async fn try_ask(addr: &str, request: MessageRequest) -> Result<MessageResponse, tonic::Status> {
    let channel = connect(addr).await.expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::once(req))
        .await
        .expect("reflection answers")
        .into_inner();
    Ok(answers
        .message()
        .await?
        .expect("one answer")
        .message_response
        .expect("a response"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_describes_its_services() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let dir_s = dir.to_str().expect("utf8");
    let base = free_ports(8);
    let (child, banner) = start_up(dir_s, base, base + 4);
    let mut up = Up(Some(child));
    assert!(banner.contains("ordo network ready"), "{banner}");
    let net = Network::load(&dir.join("network.json")).expect("network.json");
    for node in &net.nodes {
        let MessageResponse::ListServicesResponse(list) =
            ask(&node.grpc_addr, MessageRequest::ListServices(String::new())).await
        else {
            panic!("{}: ListServices answered something else", node.name);
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        let wanted: &[&str] = if node.role == "orderer" {
            &[
                "ordo.orderer.AtomicBroadcast",
                "ordo.admin.Admin",
                "grpc.health.v1.Health",
            ]
        } else {
            &[
                "ordo.query.Query",
                "ordo.gateway.Gateway",
                "ordo.discovery.Discovery",
                "grpc.health.v1.Health",
            ]
        };
        for w in wanted {
            assert!(
                names.iter().any(|n| n == w),
                "{} does not list {w}: {names:?}",
                node.name
            );
        }
        // Only what the node serves: a peer does not advertise the orderer's services.
        let foreign = if node.role == "orderer" {
            "ordo.gateway.Gateway"
        } else {
            "ordo.orderer.AtomicBroadcast"
        };
        assert!(
            !names.iter().any(|n| n == foreign),
            "{}: {names:?}",
            node.name
        );
        // A symbol's file comes with everything needed to call it.
        let MessageResponse::FileDescriptorResponse(files) = ask(
            &node.grpc_addr,
            MessageRequest::FileContainingSymbol(wanted[0].to_string()),
        )
        .await
        else {
            panic!("{}: no descriptor for {}", node.name, wanted[0]);
        };
        assert!(!files.file_descriptor_proto.is_empty());
        // An unknown symbol is NOT_FOUND.
        let answer = try_ask(
            &node.grpc_addr,
            MessageRequest::FileContainingSymbol("no.such.Service".into()),
        )
        .await;
        assert!(
            matches!(&answer, Err(s) if s.code() == tonic::Code::NotFound),
            "{}: {answer:?}",
            node.name
        );
    }
    up.stop();
}
