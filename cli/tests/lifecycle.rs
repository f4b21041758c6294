//! The chaincode lifecycle on a running three-bank channel, over real processes and the
//! `ordo chaincode` commands each bank's admin runs: a new chaincode deployed with two
//! approvals and used; `bank` upgraded, while transfers run, to a version whose policy
//! needs all three banks — a transaction endorsed under the old definition commits as
//! DEFINITION_SUPERSEDED, later ones carry three endorsements, money is conserved and
//! the peers agree. Bad approvals and an early commit are refused with their reasons, and
//! nothing changes. The channel's tx validity window is changed the same way (`ordo
//! channel expiry`), and a window too short for honest transactions is refused.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ordo_proto::pb::peer::EndorserTransaction;
use ordo_proto::pb::query::query_request::Query;
use ordo_proto::pb::query::{GetBlock, GetTransaction};
use ordo_sdk::gateway::{Gateway, GatewayError, RetryPolicy, TxValidationCode};
use ordo_sdk::network::Network;
use prost::Message;

fn args(a: &[&str]) -> Vec<Bytes> {
    a.iter().map(|s| Bytes::from(s.to_string())).collect()
}

/// `ordo chaincode ARGS --network NET`.
fn chaincode(net: &str, a: &[&str]) -> (bool, String, String) {
    let mut all = vec!["chaincode"];
    all.extend_from_slice(a);
    all.extend_from_slice(&["--network", net]);
    run(&all)
}

fn chaincode_ok(net: &str, a: &[&str]) -> String {
    let (ok, out, err) = chaincode(net, a);
    assert!(ok, "ordo chaincode {a:?} failed:\n{out}\n{err}");
    out
}

fn chaincode_err(net: &str, a: &[&str]) -> String {
    let (ok, out, err) = chaincode(net, a);
    assert!(!ok, "ordo chaincode {a:?} should fail, printed:\n{out}");
    err
}

/// The definitions in force, as `ordo chaincode list --json` prints them.
fn definitions(net: &str) -> serde_json::Value {
    let out = chaincode_ok(net, &["list", "--json"]);
    serde_json::from_str(&out).expect("json")
}

/// The number of endorsements of a committed transaction, from BankA's peer.
async fn endorsements(net: &Network, channel: &str, tx_id: &str) -> usize {
    let peer = net.node("peer0.BankA").expect("peer");
    let id = net.identity(Some("BankA"), "client").expect("client");
    let resp = peer_query(
        &peer.grpc_addr,
        &id,
        channel,
        Query::Transaction(GetTransaction {
            tx_id: tx_id.into(),
        }),
    )
    .await;
    let at = resp.transaction.expect("transaction");
    let resp = peer_query(
        &peer.grpc_addr,
        &id,
        channel,
        Query::Block(GetBlock { number: at.block }),
    )
    .await;
    let block = resp.block.expect("block");
    let data = block.data.expect("data");
    let env = ordo_proto::pb::common::Envelope::decode(data.data[at.index as usize].clone())
        .expect("envelope");
    let payload = ordo_proto::pb::common::Payload::decode(env.payload).expect("payload");
    EndorserTransaction::decode(payload.data)
        .expect("endorser transaction")
        .endorsements
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaincodes_are_deployed_and_upgraded_on_a_running_channel_by_the_orgs_approvals() {
    let (tmp, network_path, _up) = up_in_temp_dir();
    let net_s = network_path.to_str().expect("utf8");
    let net = Network::load(&network_path).expect("network.json");
    let channel = net.channel(None).expect("channel").name.clone();
    let update = |name: &str| tmp.path().join(name).to_str().expect("utf8").to_string();

    // Genesis definitions start at sequence 1.
    let defs = definitions(net_s);
    assert_eq!(defs["chaincodes"][0]["name"], "bank");
    assert_eq!(defs["chaincodes"][0]["sequence"], 1);

    // --- A new chaincode, `notes` (the kv built-in), endorsed by 2 of 3, approved by two.
    let notes = update("notes.json");
    let define = |org: &str, version: &str| -> Vec<String> {
        [
            "approve",
            "--org",
            org,
            "--channel",
            &channel,
            "--name",
            "notes",
            "--version",
            version,
            "--endorse",
            "2",
            "--runtime",
            "builtin:kv",
            "--update",
            &notes,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    fn as_strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let out = chaincode_ok(net_s, &as_strs(&define("BankA", "1")));
    assert!(out.contains("policy is not met yet"), "{out}");
    // Committing with one approval of the majority the Lifecycle policy needs: refused,
    // naming who approved.
    let err = chaincode_err(net_s, &["commit", "--update", &notes]);
    assert!(
        err.contains("not enough approvals") && err.contains("approved by BankA"),
        "{err}"
    );
    // BankB approving another definition does not sign it.
    let err = chaincode_err(net_s, &as_strs(&define("BankB", "9")));
    assert!(err.contains("proposes another change"), "{err}");
    // Nor does a BankB member who is not an admin.
    let crypto = net.crypto_dir.join("BankB");
    let mut as_client = define("BankB", "1");
    as_client.retain(|a| a != "--org" && a != "BankB");
    as_client.extend([
        "--key".to_string(),
        crypto.join("client.key").display().to_string(),
        "--cert".to_string(),
        crypto.join("client.cert").display().to_string(),
    ]);
    let err = chaincode_err(net_s, &as_strs(&as_client));
    assert!(err.contains("signed by an org's admin"), "{err}");
    // A definition whose policy names an org the channel does not have, and one whose
    // runtime no peer has.
    let ghost = update("ghost.json");
    let approve_ghost = |flag: &str, value: &str| {
        chaincode_err(
            net_s,
            &[
                "approve",
                "--org",
                "BankB",
                "--channel",
                &channel,
                "--name",
                "ghost",
                "--version",
                "1",
                flag,
                value,
                "--update",
                &ghost,
            ],
        )
    };
    let err = approve_ghost("--endorse-orgs", "BankA,BankZ");
    assert!(err.contains("BankZ"), "{err}");
    let err = approve_ghost("--runtime", "builtin:nope");
    assert!(err.contains("no peer can run it"), "{err}");
    assert_eq!(
        definitions(net_s)["config_sequence"],
        defs["config_sequence"],
        "nothing applied"
    );

    let out = chaincode_ok(net_s, &as_strs(&define("BankB", "1")));
    assert!(out.contains("Lifecycle policy is met"), "{out}");
    chaincode_ok(net_s, &["commit", "--update", &notes]);
    let shown = chaincode_ok(net_s, &["show", "--name", "notes"]);
    assert!(shown.contains("notes version 1 sequence 1"), "{shown}");

    let gateway = Gateway::for_org(&net, "BankA", "client")
        .await
        .expect("gateway");
    let retry = RetryPolicy::with_attempts(10);
    let notes_cc = gateway.contract(&channel, "notes").with_retry_policy(retry);
    notes_cc
        .submit_with_retry("put", args(&["greeting", "hello"]))
        .await
        .expect("the new chaincode commits");
    assert_eq!(
        notes_cc
            .evaluate("get", args(&["greeting"]))
            .await
            .expect("get"),
        "hello"
    );

    // --- Upgrade `bank` while transfers run: version 2, all three banks endorse.
    let bank = gateway.contract(&channel, "bank").with_retry_policy(retry);
    bank.submit_with_retry("open", args(&["alice", "1000"]))
        .await
        .expect("open");
    bank.submit_with_retry("open", args(&["bob", "0"]))
        .await
        .expect("open");
    // Endorsed now, submitted after the upgrade.
    let early = bank
        .call("transfer")
        .args(["alice", "bob", "7"])
        .endorse()
        .await
        .expect("endorsed under sequence 1");
    let stop = Arc::new(AtomicBool::new(false));
    let moved = Arc::new(AtomicU64::new(0));
    let load = {
        let (bank, stop, moved) = (bank.clone(), stop.clone(), moved.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match bank
                    .submit_with_retry("transfer", args(&["alice", "bob", "1"]))
                    .await
                {
                    Ok(_) => {
                        moved.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("a transfer failed during the upgrade: {e}"),
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let upgrade = update("bank-2.json");
    for org in ["BankA", "BankC"] {
        chaincode_ok(
            net_s,
            &[
                "approve",
                "--org",
                org,
                "--channel",
                &channel,
                "--name",
                "bank",
                "--version",
                "2",
                "--endorse",
                "3",
                "--update",
                &upgrade,
            ],
        );
    }
    chaincode_ok(net_s, &["commit", "--update", &upgrade]);
    let before = moved.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while moved.load(Ordering::Relaxed) < before + 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "transfers stalled after the upgrade"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");

    match early
        .submit()
        .await
        .expect("an orderer takes it")
        .committed()
        .await
    {
        Err(GatewayError::NotValid { code, .. }) => {
            assert_eq!(code, TxValidationCode::DefinitionSuperseded)
        }
        other => panic!("endorsed under the old definition must not commit: {other:?}"),
    }
    let later = bank
        .submit_with_retry("transfer", args(&["alice", "bob", "2"]))
        .await
        .expect("a transfer under the new definition");
    assert_eq!(endorsements(&net, &channel, &later.tx_id).await, 3);
    let moved = moved.load(Ordering::Relaxed) as i64 + 2;
    assert_eq!(bank_balance(&bank, "alice").await, 1000 - moved);
    assert_eq!(bank_balance(&bank, "bob").await, moved);
    let defs = definitions(net_s);
    let bank_def = &defs["chaincodes"][0];
    assert_eq!(
        (bank_def["version"].as_str(), bank_def["sequence"].as_u64()),
        (Some("2"), Some(2))
    );

    // Every peer reaches the same height and commit hash.
    let peers: Vec<(String, _)> = net
        .nodes_with_role("peer")
        .map(|p| {
            let admin = net.identity(Some(&p.org), "admin").expect("admin");
            (p.grpc_addr.clone(), admin)
        })
        .collect();
    wait_peers_agree(&peers, &channel).await;

    // --- The tx validity window: `ordo up` made the channel with 1,800 s, so the peers'
    // expiry floor follows the transfers; the admins change the window by config update.
    let (peer_addr, peer_admin) = peers[0].clone();
    let info = channel_info(&peer_addr, &peer_admin, &channel).await;
    assert_eq!(info.tx_validity_window_s, 1800);
    let latest_ms = ordo_proto::now_ms();
    assert!(
        info.expiry_floor_ms > 0 && info.expiry_floor_ms <= latest_ms - 1_800_000,
        "the floor trails the latest VALID transaction by the window: {}",
        info.expiry_floor_ms
    );
    let crypto = network_path.parent().expect("net dir").join("crypto");
    let orderer = net
        .nodes_with_role("orderer")
        .next()
        .expect("an orderer")
        .grpc_addr
        .clone();
    let expiry = |window: &str| {
        run(&[
            "channel",
            "expiry",
            "--crypto",
            crypto.to_str().expect("utf8"),
            "--orderer",
            &orderer,
            "--channel",
            &channel,
            "--window-s",
            window,
        ])
    };
    let (ok, _, err) = expiry("60");
    assert!(!ok, "a window shorter than 1,500 s is refused");
    assert!(err.contains("tx_validity_window_s 60"), "{err}");
    let (ok, out, err) = expiry("3600");
    assert!(ok, "ordo channel expiry failed:\n{out}\n{err}");
    assert!(out.contains("tx validity window 3600 s"), "{out}");
    for (addr, admin) in &peers {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while channel_info(addr, admin, &channel)
            .await
            .tx_validity_window_s
            != 3600
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "peer {addr} never committed the new window"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    bank.submit_with_retry("transfer", args(&["alice", "bob", "1"]))
        .await
        .expect("a transfer under the new window");
    assert_eq!(bank_balance(&bank, "bob").await, moved + 1);

    // With one bank's peer down, the new policy cannot be met.
    run_ok(&["node", "kill", "peer0.BankC", "--network", net_s]);
    let err = bank
        .submit("transfer", args(&["alice", "bob", "1"]))
        .await
        .expect_err("three banks must endorse");
    assert!(err.to_string().contains("not satisfied"), "{err}");
}
