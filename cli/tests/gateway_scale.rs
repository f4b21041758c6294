//! The Gateway end to end at scale, over real processes from an `ordo up` network (one
//! orderer, one peer per org, `bank` endorsed by 2 of 3 orgs): 100 accounts, then 5,000
//! transfers from 50 concurrent clients spread over the three orgs' gateways. Contention
//! shows up as MVCC_READ_CONFLICT, surfaced by the SDK and resolved by its retry helper;
//! afterwards the money is conserved on every peer, every peer agrees on the state (same
//! commit hash), and every CommitStatus a client got matches what each peer committed.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use ordo_proto::pb::peer::TxValidationCode;
use ordo_proto::pb::query::{query_request, GetStateRange, GetTransaction};
use ordo_sdk::gateway::{Contract, GatewayError, RetryPolicy};
use ordo_sdk::network::Network;

const CHANNEL: &str = "ordo-channel";
const ORGS: [&str; 3] = ["BankA", "BankB", "BankC"];
const ACCOUNTS: u64 = 100;
const INITIAL: u64 = 1_000;
const CLIENTS: u64 = 50;
const TRANSFERS_PER_CLIENT: u64 = 100;

fn args(a: &[String]) -> Vec<Bytes> {
    a.iter().map(|s| Bytes::from(s.clone())).collect()
}

async fn contract(net: &Network, org: &str) -> Contract {
    org_contract(net, org, CHANNEL, "bank").await
}

/// Every account's balance on one peer, from its committed state.
async fn balances(addr: &str, net: &Network, org: &str) -> BTreeMap<String, u64> {
    let reader = net.identity(Some(org), "client").expect("client");
    let resp = peer_query(
        addr,
        &reader,
        CHANNEL,
        query_request::Query::Range(GetStateRange {
            namespace: "bank".into(),
            start: "account/".into(),
            end: "account0".into(),
            limit: 1_000,
        }),
    )
    .await;
    resp.values
        .into_iter()
        .map(|v| {
            let balance = String::from_utf8_lossy(&v.value).parse().expect("balance");
            (v.key, balance)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_concurrent_transfers_conserve_money_on_every_peer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let dir_s = dir.to_str().expect("utf8");
    let base = free_ports(8);
    let (child, _) = start_up(dir_s, base, base + 4);
    let _up = Up(Some(child));
    let net = Arc::new(Network::load(&dir.join("network.json")).expect("network.json"));

    // 100 accounts, opened concurrently through all three gateways.
    let mut opens = Vec::new();
    for t in 0..10u64 {
        let c = contract(&net, ORGS[(t % 3) as usize]).await;
        opens.push(tokio::spawn(async move {
            for a in (t * 10)..(t * 10 + 10) {
                c.with_retry_policy(RetryPolicy::with_attempts(10))
                    .submit_with_retry("open", args(&[format!("acct{a}"), INITIAL.to_string()]))
                    .await
                    .expect("account opened");
            }
        }));
    }
    for o in opens {
        o.await.expect("opener");
    }

    let conflicts = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for k in 0..CLIENTS {
        let c = contract(&net, ORGS[(k % 3) as usize]).await;
        let conflicts = conflicts.clone();
        let refused = refused.clone();
        clients.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            // A small deterministic generator per client: which accounts, how much.
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (k + 1);
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for _ in 0..TRANSFERS_PER_CLIENT {
                let from = next() % ACCOUNTS;
                let to = (from + 1 + next() % (ACCOUNTS - 1)) % ACCOUNTS;
                let amount = 1 + next() % 20;
                let a = args(&[
                    format!("acct{from}"),
                    format!("acct{to}"),
                    amount.to_string(),
                ]);
                let done = match c.submit("transfer", a.clone()).await {
                    Ok(s) => Some(s),
                    Err(GatewayError::NotValid {
                        code: TxValidationCode::MvccReadConflict,
                        ..
                    }) => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                        c.with_retry_policy(RetryPolicy::with_attempts(50))
                            .submit_with_retry("transfer", a)
                            .await
                            .ok()
                    }
                    Err(e) if e.is_retryable() => c
                        .with_retry_policy(RetryPolicy::with_attempts(50))
                        .submit_with_retry("transfer", a)
                        .await
                        .ok(),
                    Err(e) if e.chaincode_status() == Some(400) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Err(e) => panic!("transfer failed: {e}"),
                };
                if let Some(s) = done {
                    committed.push((s.tx_id, s.block));
                }
            }
            committed
        }));
    }
    let mut committed = Vec::new();
    for c in clients {
        committed.extend(c.await.expect("client"));
    }
    let refused = refused.load(Ordering::Relaxed);
    assert_eq!(
        committed.len() as u64 + refused,
        CLIENTS * TRANSFERS_PER_CLIENT,
        "every transfer committed, or refused for insufficient funds"
    );
    assert!(
        conflicts.load(Ordering::Relaxed) > 0,
        "50 clients over 100 accounts must contend"
    );

    // Every peer: same height and commit hash, the money conserved, the same balances,
    // and every committed transaction VALID in the block its client was told.
    let peers: Vec<_> = net.nodes_with_role("peer").cloned().collect();
    let mut hashes = Vec::new();
    for _ in 0..100 {
        hashes.clear();
        for p in &peers {
            let admin = net.identity(Some(&p.org), "admin").expect("admin");
            let info = channel_info(&p.grpc_addr, &admin, CHANNEL).await;
            hashes.push((info.height, info.commit_hash));
        }
        if hashes.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "peers agree: {hashes:?}"
    );
    let mut views = Vec::new();
    for p in &peers {
        let b = balances(&p.grpc_addr, &net, &p.org).await;
        assert_eq!(b.len() as u64, ACCOUNTS);
        assert_eq!(
            b.values().sum::<u64>(),
            ACCOUNTS * INITIAL,
            "money conserved on {}",
            p.name
        );
        views.push(b);
        let reader = net.identity(Some(&p.org), "client").expect("client");
        for (tx_id, block) in &committed {
            let st = peer_query(
                &p.grpc_addr,
                &reader,
                CHANNEL,
                query_request::Query::Transaction(GetTransaction {
                    tx_id: tx_id.clone(),
                }),
            )
            .await
            .transaction
            .expect("committed on every peer");
            assert_eq!(
                st.code,
                TxValidationCode::Valid as u32,
                "{tx_id} on {}",
                p.name
            );
            assert_eq!(st.block, *block, "{tx_id} on {}", p.name);
        }
    }
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "every peer has the same balances"
    );
}
