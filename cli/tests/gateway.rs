//! The Gateway over real processes from an `ordo up` network (one orderer, one peer per
//! org, `bank` under a 2-of-3 endorsement policy): `ordo tx invoke|query`, concurrent
//! transfers through every org's gateway with the SDK's retry helper (balances conserved,
//! every peer agrees), and bad input answered with precise gRPC statuses while the peers
//! keep serving.

mod common;

use bytes::Bytes;
use common::*;
use ordo_proto::pb::gateway::events_client::EventsClient;
use ordo_proto::pb::gateway::gateway_client::GatewayClient;
use ordo_proto::pb::gateway::{block_events_response, BlockEventsRequest};
use ordo_sdk::gateway::{
    signed_proposal, Contract, GatewayError, RetryPolicy, StartAt, TxValidationCode,
};
use ordo_sdk::network::Network;
use ordo_sdk::tx::{invocation, Proposal};

const CHANNEL: &str = "ordo-channel";

fn args(a: &[&str]) -> Vec<Bytes> {
    a.iter().map(|s| Bytes::from(s.to_string())).collect()
}

async fn contract(net: &Network, org: &str) -> Contract {
    org_contract(net, org, CHANNEL, "bank").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_through_the_gateway_of_every_org() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let dir_s = dir.to_str().expect("utf8");
    let base = free_ports(8);
    let (child, banner) = start_up(dir_s, base, base + 4);
    let _up = Up(Some(child));
    assert!(banner.contains("ordo tx invoke"), "{banner}");
    let network = dir.join("network.json");
    let net_s = network.to_str().expect("utf8");

    // The CLI, as the README shows it.
    let opened: serde_json::Value = serde_json::from_str(&run_ok(&[
        "tx",
        "invoke",
        "--network",
        net_s,
        "--chaincode",
        "bank",
        "--fn",
        "open",
        "--args",
        "alice",
        "100",
        "--json",
    ]))
    .expect("json");
    assert_eq!(opened["code"], "VALID", "{opened}");
    assert_eq!(opened["result"], "100");
    assert!(opened["block"].as_u64().unwrap_or(0) >= 1);
    run_ok(&[
        "tx",
        "invoke",
        "--network",
        net_s,
        "--chaincode",
        "bank",
        "--fn",
        "open",
        "--args",
        "bob",
        "100",
    ]);
    let balance = run_ok(&[
        "tx",
        "query",
        "--network",
        net_s,
        "--org",
        "BankC",
        "--chaincode",
        "bank",
        "--fn",
        "balance",
        "--args",
        "alice",
    ]);
    assert_eq!(balance.trim(), "100");
    let (ok, _, err) = run(&[
        "tx",
        "invoke",
        "--network",
        net_s,
        "--chaincode",
        "bank",
        "--fn",
        "transfer",
        "--args",
        "alice",
        "bob",
        "1000",
    ]);
    assert!(!ok);
    assert!(err.contains("insufficient funds"), "{err}");

    // Concurrent transfers back and forth through all three gateways: contention shows
    // up as MVCC conflicts, which the retry helper resolves.
    let net = Network::load(&network).expect("network.json");
    let mut tasks = Vec::new();
    for (i, org) in ["BankA", "BankB", "BankC"].iter().enumerate() {
        let c = contract(&net, org).await;
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for k in 0..8 {
                let (from, to) = if (i + k) % 2 == 0 {
                    ("alice", "bob")
                } else {
                    ("bob", "alice")
                };
                c.with_retry_policy(RetryPolicy::with_attempts(20))
                    .submit_with_retry("transfer", args(&[from, to, "3"]))
                    .await
                    .expect("transfer eventually commits");
                done += 1;
            }
            done
        }));
    }
    let mut total_transfers = 0;
    for t in tasks {
        total_transfers += t.await.expect("task");
    }
    assert_eq!(total_transfers, 24);
    let mut sums = Vec::new();
    for org in ["BankA", "BankB", "BankC"] {
        let c = contract(&net, org).await;
        // Each peer answers from its own committed state: wait for it to catch up.
        let mut sum = 0;
        for _ in 0..50 {
            let a: u64 = String::from_utf8_lossy(
                &c.evaluate("balance", args(&["alice"]))
                    .await
                    .expect("alice"),
            )
            .parse()
            .expect("number");
            let b: u64 =
                String::from_utf8_lossy(&c.evaluate("balance", args(&["bob"])).await.expect("bob"))
                    .parse()
                    .expect("number");
            sum = a + b;
            if sum == 200 {
                sums.push((a, b));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(sum, 200, "money is conserved on {org}'s peer");
    }
    assert!(
        sums.windows(2).all(|w| w[0] == w[1]),
        "all peers agree: {sums:?}"
    );

    // Chaincode events: two opens and 24 transfers, in commit order; resuming from a
    // checkpoint repeats nothing and skips nothing.
    let events = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec![
            "events",
            "--network",
            net_s,
            "--chaincode",
            "bank",
            "--json",
        ];
        a.extend_from_slice(extra);
        run_ok(&a)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };
    let all = events(&["--count", "26"]);
    assert_eq!(all.len(), 26);
    assert_eq!(all.iter().filter(|e| e["name"] == "open").count(), 2);
    assert_eq!(all.iter().filter(|e| e["name"] == "transfer").count(), 24);
    assert!(all
        .windows(2)
        .all(|w| w[0]["block"].as_u64() <= w[1]["block"].as_u64()));
    let checkpoint = &all[9];
    let block = checkpoint["block"].to_string();
    let tx_id = checkpoint["tx_id"].as_str().expect("tx id").to_string();
    let rest = events(&["--from", &block, "--after", &tx_id, "--count", "16"]);
    assert_eq!(rest, all[10..].to_vec(), "resumed after the checkpoint");

    // Filtered block events after the genesis block: every committed transaction with
    // its code; exactly the 26 above are VALID (contention made others
    // MVCC_READ_CONFLICT).
    let peer_b = net
        .nodes_with_role("peer")
        .find(|p| p.org == "BankB")
        .expect("peer")
        .grpc_addr
        .clone();
    let admin_b = net.identity(Some("BankB"), "admin").expect("admin");
    let height = channel_info(&peer_b, &admin_b, CHANNEL).await.height;
    let reader = net.identity(Some("BankB"), "client").expect("client");
    let request = ordo_proto::envelope::create_signed(
        &reader,
        CHANNEL,
        ordo_proto::pb::common::HeaderType::Message,
        prost::Message::encode_to_vec(&BlockEventsRequest {
            start_block: 1,
            filtered: true,
        })
        .into(),
        ordo_proto::now_ms(),
    )
    .0;
    let mut blocks = EventsClient::new(common::connect(&peer_b).await.expect("connect"))
        .block_events(request)
        .await
        .expect("block events")
        .into_inner();
    let mut valid = 0;
    for n in 1..height {
        let resp = blocks.message().await.expect("stream").expect("a block");
        match resp.kind {
            Some(block_events_response::Kind::Filtered(fb)) => {
                assert_eq!(fb.number, n);
                valid += fb
                    .transactions
                    .iter()
                    .filter(|t| t.code_name == "VALID")
                    .count();
            }
            other => panic!("expected a filtered block: {other:?}"),
        }
    }
    assert_eq!(valid, 26);

    // Bad input: precise statuses, and the gateway keeps serving.
    let peer_a = net
        .nodes_with_role("peer")
        .next()
        .expect("peer")
        .grpc_addr
        .clone();
    let client = net.identity(Some("BankA"), "client").expect("client");
    let mut raw = GatewayClient::new(common::connect(&peer_a).await.expect("connect"));
    let call = |chaincode: &str, function: &str, a: Vec<Bytes>, channel: &str| {
        let p = Proposal::new(&client, channel, invocation(chaincode, function, a));
        signed_proposal(&client, &p, ordo_proto::now_ms())
    };
    let status = raw
        .evaluate(call("nope", "get", vec![], CHANNEL))
        .await
        .expect_err("unknown chaincode");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status}");
    assert!(status.message().contains("not defined"), "{status}");
    let status = raw
        .evaluate(call("bank", "balance", args(&["alice"]), "no-such-channel"))
        .await
        .expect_err("wrong channel");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status}");
    let status = raw
        .evaluate(call(
            "bank",
            "balance",
            vec![Bytes::from(vec![b'x'; 2 << 20])],
            CHANNEL,
        ))
        .await
        .expect_err("oversize");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    let mut malformed = call("bank", "balance", args(&["alice"]), CHANNEL);
    malformed.payload = Bytes::from_static(&[0xff, 0xff, 0x01]);
    let status = raw.evaluate(malformed).await.expect_err("malformed");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    let mut tampered = call("bank", "balance", args(&["alice"]), CHANNEL);
    tampered.signature = Bytes::from(vec![0u8; 64]);
    let status = raw.evaluate(tampered).await.expect_err("bad signature");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    let stranger = Consortium::new("Outsiders");
    let outsider = stranger.identity("Outsiders", "client");
    let p = Proposal::new(
        &outsider,
        CHANNEL,
        invocation("bank", "balance", args(&["alice"])),
    );
    let status = raw
        .evaluate(signed_proposal(&outsider, &p, ordo_proto::now_ms()))
        .await
        .expect_err("unknown identity");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    let c = contract(&net, "BankA").await;
    match c.evaluate("withdraw", args(&["alice", "1"])).await {
        Err(e) => assert_eq!(e.chaincode_status(), Some(404), "{e}"),
        other => panic!("unknown function: {other:?}"),
    }
    assert_eq!(
        c.evaluate("balance", args(&["nobody"])).await.map(|_| ()),
        Err(GatewayError::Chaincode {
            step: "Evaluate",
            status: 404,
            message: "account \"nobody\" does not exist".into(),
            payload: Bytes::new(),
            peer: String::new(),
        })
    );
    assert!(
        c.evaluate("balance", args(&["alice"])).await.is_ok(),
        "still serving"
    );
    // A MESSAGE envelope ordered onto the channel commits as UNKNOWN_TX_TYPE, and is
    // found as such: by CommitStatus (no wait until the deadline) and by Query.
    let orderer = net.first_orderer().expect("orderer").grpc_addr.clone();
    let (note, note_id) = message(&client, CHANNEL, 64, 1);
    let answers = broadcast(&orderer, vec![note]).await;
    assert_eq!(
        answers[0].status,
        ordo_proto::pb::common::Status::Success as i32
    );
    let status = c.commit_status(&note_id).await.expect("found");
    assert_eq!(status.code, TxValidationCode::UnknownTxType);
    let found = peer_query(
        &peer_a,
        &client,
        CHANNEL,
        ordo_proto::pb::query::query_request::Query::Transaction(
            ordo_proto::pb::query::GetTransaction { tx_id: note_id },
        ),
    )
    .await;
    let tx = found.transaction.expect("indexed");
    assert_eq!(
        (tx.code_name.as_str(), tx.block),
        ("UNKNOWN_TX_TYPE", status.block)
    );

    // Request messages that are no message at all: INVALID_ARGUMENT on every service.
    for path in [
        "/ordo.gateway.Gateway/Evaluate",
        "/ordo.gateway.Gateway/Endorse",
        "/ordo.gateway.Endorser/ProcessProposal",
        "/ordo.query.Query/Query",
        "/ordo.admin.Admin/Execute",
    ] {
        let status = raw_unary(&peer_a, path, b"\xff\xff\xff\xff".to_vec()).await;
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{path}: {status}"
        );
    }

    // Events of a chaincode the channel does not define: refused, not a silent stream.
    match c
        .gateway()
        .contract(CHANNEL, "nope")
        .events(StartAt::Block(0))
        .await
    {
        Err(GatewayError::Refused { code, message, .. }) => {
            assert_eq!(code, tonic::Code::NotFound, "{message}")
        }
        Err(other) => panic!("undefined chaincode events: {other}"),
        Ok(_) => panic!("undefined chaincode events must be refused"),
    }

    // The client chooses who endorses (2 of 3 orgs are enough for the policy): exactly
    // those, in two steps (submit_async, then the commit). A choice without the
    // gateway's own org, or with a stranger, is refused before anything runs; a choice
    // the policy cannot accept is FAILED_PRECONDITION.
    let pending = c
        .call("open")
        .args(["carol", "5"])
        .endorsing_orgs(["BankC", "BankA"])
        .submit_async()
        .await
        .expect("endorsed by the chosen orgs");
    let mut orgs = pending.endorsing_orgs().to_vec();
    orgs.sort();
    assert_eq!(orgs, ["BankA", "BankC"]);
    assert_eq!(pending.result(), "5");
    let tx_id = pending.tx_id().to_string();
    let status = pending.status().await.expect("status");
    assert!(status.is_valid(), "{status:?}");
    assert_eq!(pending.committed().await.expect("VALID").tx_id, tx_id);
    for (orgs, code) in [
        (vec!["BankB", "BankC"], tonic::Code::InvalidArgument),
        (vec!["BankA", "Nobody"], tonic::Code::InvalidArgument),
        (vec!["BankA"], tonic::Code::FailedPrecondition),
    ] {
        match c
            .call("open")
            .args(["dave", "1"])
            .endorsing_orgs(&orgs)
            .submit()
            .await
        {
            Err(GatewayError::Refused {
                step,
                code: got,
                message,
            }) => {
                assert_eq!(step, "Endorse");
                assert_eq!(got, code, "{orgs:?}: {message}");
            }
            other => panic!("{orgs:?} must be refused: {other:?}"),
        }
    }
    assert_eq!(
        c.evaluate("balance", ["dave"])
            .await
            .map_err(|e| e.chaincode_status()),
        Err(Some(404)),
        "nothing was ordered for the refused choices"
    );
}
