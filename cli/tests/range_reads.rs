//! Serializable range reads over real processes (`ordo up`, three banks): a transaction
//! that read a key range is endorsed, then — before it is ordered — another transaction
//! inserts a key into that range and commits. The first one then commits as
//! PHANTOM_READ_CONFLICT on every peer and changes nothing; proposed again, it is VALID.
//! A transaction whose range nobody touched meanwhile commits as VALID. The Query
//! service pages long ranges and histories.

mod common;

use bytes::Bytes;
use common::*;
use ordo_proto::pb::gateway::gateway_client::GatewayClient;
use ordo_proto::pb::gateway::EndorseRequest;
use ordo_proto::pb::peer::TxValidationCode;
use ordo_proto::pb::query::query_request::Query;
use ordo_proto::pb::query::{GetHistory, GetStateRange};
use ordo_sdk::gateway::{signed_proposal, Gateway};
use ordo_sdk::network::Network;
use ordo_sdk::tx::{self, invocation, Proposal};

const CHANNEL: &str = "ordo-channel";

/// Endorses `kv.function(args)` through `peer` as `identity` and returns the signed
/// transaction, not submitted yet.
async fn endorse_only(
    peer: &str,
    identity: &ordo_proto::identity::Identity,
    function: &str,
    args: &[&str],
) -> (ordo_proto::pb::common::Envelope, String) {
    let args = args.iter().map(|a| Bytes::from(a.to_string())).collect();
    let proposal = Proposal::new(identity, CHANNEL, invocation("kv", function, args));
    let mut client = GatewayClient::new(connect(peer).await.expect("connect"));
    let endorsed = client
        .endorse(EndorseRequest {
            proposal: Some(signed_proposal(identity, &proposal, ordo_proto::now_ms())),
            endorsing_orgs: Vec::new(),
        })
        .await
        .expect("endorsed")
        .into_inner();
    let signature = identity.sign(&endorsed.payload);
    (
        tx::attach_signature(endorsed.payload, &signature),
        proposal.tx_id().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_into_a_range_read_meanwhile_is_a_phantom_on_every_peer() {
    let (_tmp, network_file, _up) = up_in_temp_dir();
    let net = Network::load(&network_file).expect("network");
    let peer_a = net
        .nodes_with_role("peer")
        .find(|p| p.org == "BankA")
        .expect("peer")
        .grpc_addr
        .clone();
    let member = net.member(Some("BankA"), "client").expect("client");
    let gateway = Gateway::connect(&peer_a, &member.transport, member.identity.clone())
        .await
        .expect("gateway");
    let kv = gateway.contract(CHANNEL, "kv");
    for key in ["acct/a", "acct/c", "other"] {
        kv.submit("put", [key, "1"]).await.expect("put");
    }

    // Endorsed against {acct/a, acct/c}; then acct/b is inserted and commits first.
    let (lister, lister_id) =
        endorse_only(&peer_a, &member.identity, "range", &["acct/", "acct0"]).await;
    let (untouched, untouched_id) =
        endorse_only(&peer_a, &member.identity, "range", &["other", ""]).await;
    kv.submit("put", ["acct/b", "1"])
        .await
        .expect("insert into the range");
    let mut raw = GatewayClient::new(connect(&peer_a).await.expect("connect"));
    for env in [lister, untouched] {
        raw.submit(env).await.expect("ordered");
    }
    let phantom = kv.commit_status(&lister_id).await.expect("status");
    assert_eq!(phantom.code, TxValidationCode::PhantomReadConflict);
    let fine = kv.commit_status(&untouched_id).await.expect("status");
    assert_eq!(fine.code, TxValidationCode::Valid, "a range nobody touched");

    // Every peer judged it the same way.
    for peer in net.nodes_with_role("peer") {
        let reader = net.identity(Some(&peer.org), "client").expect("client");
        let resp = peer_query(
            &peer.grpc_addr,
            &reader,
            CHANNEL,
            Query::Transaction(ordo_proto::pb::query::GetTransaction {
                tx_id: lister_id.clone(),
            }),
        )
        .await;
        let status = resp.transaction.expect("committed");
        assert_eq!(status.code_name, "PHANTOM_READ_CONFLICT", "{}", peer.name);
        assert_eq!(status.block, phantom.block);
    }

    // Proposed again, the range read sees all three keys and commits.
    let listed = kv
        .submit("range", ["acct/", "acct0"])
        .await
        .expect("VALID when proposed again");
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&listed.result).expect("json");
    assert_eq!(keys.len(), 3, "{keys:?}");

    // The Query service pages ranges and histories: each answer says where to go on.
    let query = |q| peer_query(&peer_a, &member.identity, CHANNEL, q);
    let range = |start: &str| {
        Query::Range(GetStateRange {
            namespace: "kv".into(),
            start: start.into(),
            end: "acct0".into(),
            limit: 2,
        })
    };
    let first = query(range("acct/")).await;
    let keys: Vec<&str> = first.values.iter().map(|v| v.key.as_str()).collect();
    assert_eq!(keys, ["acct/a", "acct/b"]);
    assert_eq!(first.next_start, "acct/c");
    let last = query(range(&first.next_start)).await;
    let keys: Vec<&str> = last.values.iter().map(|v| v.key.as_str()).collect();
    assert_eq!(
        (keys.as_slice(), last.next_start.as_str()),
        (&["acct/c"][..], "")
    );
    for value in ["2", "3"] {
        kv.submit("put", ["acct/a", value]).await.expect("put");
    }
    let history = |from| {
        Query::History(GetHistory {
            namespace: "kv".into(),
            key: "acct/a".into(),
            limit: 2,
            from,
        })
    };
    let first = query(history(None)).await;
    let values: Vec<&[u8]> = first.history.iter().map(|h| h.value.as_ref()).collect();
    assert_eq!(values, [b"1".as_ref(), b"2".as_ref()]);
    let cursor = first.next_history.expect("more to come");
    let rest = query(history(Some(cursor))).await;
    let values: Vec<&[u8]> = rest.history.iter().map(|h| h.value.as_ref()).collect();
    assert_eq!(values, [b"3".as_ref()]);
    assert_eq!(rest.next_history, None);

    // A page of a range is checked only where it read: a key inserted past the page does
    // not matter, one inserted inside it is a phantom.
    let page = kv
        .evaluate("page", ["acct/", "acct0", "2"])
        .await
        .expect("page");
    let page: serde_json::Value = serde_json::from_slice(&page).expect("json");
    assert_eq!(page["next"], "acct/c", "{page}");
    let (beyond, beyond_id) =
        endorse_only(&peer_a, &member.identity, "page", &["acct/", "acct0", "2"]).await;
    kv.submit("put", ["acct/d", "1"])
        .await
        .expect("insert past the page");
    raw.submit(beyond).await.expect("ordered");
    let status = kv.commit_status(&beyond_id).await.expect("status");
    assert_eq!(status.code, TxValidationCode::Valid);
    let (inside, inside_id) =
        endorse_only(&peer_a, &member.identity, "page", &["acct/", "acct0", "2"]).await;
    kv.submit("put", ["acct/ab", "1"])
        .await
        .expect("insert inside the page");
    raw.submit(inside).await.expect("ordered");
    let status = kv.commit_status(&inside_id).await.expect("status");
    assert_eq!(status.code, TxValidationCode::PhantomReadConflict);
}
