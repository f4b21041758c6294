//! End to end over real processes: one orderer, three channels, four concurrent
//! Broadcast clients, two independent Deliver readers per channel, `ordo block verify`,
//! a restart, and the chain continuing after it.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use ordo_proto::pb::common::Status as Code;
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_sdk::orderer::{oldest, position};
use prost::Message;
use tokio::sync::watch;
use tokio_stream::StreamExt;

const CHANNELS: [&str; 3] = ["alpha", "beta", "gamma"];
const TOTAL: usize = 10_000;
const CLIENTS: usize = 4;

/// Follows a channel from block 0 until it has seen `expected` envelopes after genesis.
async fn reader(
    addr: String,
    id: ordo_proto::identity::Identity,
    channel: &'static str,
    mut expected: watch::Receiver<Option<usize>>,
) -> Vec<ordo_proto::pb::common::Block> {
    let ch = common::connect(&addr).await.expect("connect");
    let mut client = ordo_sdk::orderer::broadcast_client(ch);
    let req = ordo_sdk::orderer::seek_request(
        &id,
        channel,
        oldest(),
        None,
        SeekBehavior::BlockUntilReady,
    );
    let mut stream = client.deliver(req).await.expect("deliver").into_inner();
    let mut blocks = Vec::new();
    let mut seen = 0usize;
    loop {
        let target = *expected.borrow();
        if let Some(n) = target {
            if seen >= n {
                return blocks;
            }
        }
        tokio::select! {
            item = stream.next() => {
                let resp = item.expect("stream open").expect("stream ok");
                let b = resp.block.expect("a block");
                if !blocks.is_empty() {
                    seen += b.data.as_ref().map(|d| d.data.len()).unwrap_or(0);
                }
                blocks.push(b);
            }
            _ = expected.changed() => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_channels_concurrent_clients_restart_and_continue() {
    let c = Consortium::new("BankA,BankB");
    let admin = c.identity("BankA", "admin");
    let geneses: Vec<_> = CHANNELS
        .iter()
        .map(|ch| {
            c.genesis(
                ch,
                &["--max-message-count", "200", "--batch-timeout-ms", "50"],
            )
        })
        .collect();
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin).await;
    // One channel joined through the CLI, the others through the Admin API.
    let crypto = c.crypto();
    let key = crypto.join("BankA/admin.key");
    let cert = crypto.join("BankA/admin.cert");
    run_ok(&[
        "channel",
        "join",
        "--orderer",
        &o.addr,
        "--key",
        key.to_str().expect("utf8"),
        "--cert",
        cert.to_str().expect("utf8"),
        "--genesis",
        geneses[0].to_str().expect("utf8"),
    ]);
    join(&o.addr, &admin, &geneses[1]).await;
    join(&o.addr, &admin, &geneses[2]).await;
    let listed = run_ok(&[
        "channel",
        "list",
        "--orderer",
        &o.addr,
        "--key",
        key.to_str().expect("utf8"),
        "--cert",
        cert.to_str().expect("utf8"),
    ]);
    for ch in CHANNELS {
        assert!(listed.contains(ch), "channel list shows {ch}: {listed}");
    }

    // Two independent readers per channel, following from block 0.
    let mut expected_tx = HashMap::new();
    let mut readers = Vec::new();
    for ch in CHANNELS {
        let (tx, rx) = watch::channel(None);
        expected_tx.insert(ch, tx);
        for org in ["BankA", "BankB"] {
            let id = c.identity(org, "client");
            readers.push((ch, tokio::spawn(reader(o.addr.clone(), id, ch, rx.clone()))));
        }
    }

    // Four concurrent clients, each spreading its envelopes over the three channels.
    let mut senders = Vec::new();
    for i in 0..CLIENTS {
        let org = if i % 2 == 0 { "BankA" } else { "BankB" };
        let id = c.identity(org, "client");
        let addr = o.addr.clone();
        senders.push(tokio::spawn(async move {
            let envs: Vec<_> = (0..TOTAL / CLIENTS)
                .map(|j| {
                    let ch = CHANNELS[(i + j) % CHANNELS.len()];
                    let (env, tx_id) = message(&id, ch, 256, (i * TOTAL + j) as u64);
                    (ch, env, tx_id)
                })
                .collect();
            let meta: Vec<(&str, String)> = envs.iter().map(|(c, _, t)| (*c, t.clone())).collect();
            let responses = broadcast(&addr, envs.into_iter().map(|(_, e, _)| e).collect()).await;
            meta.into_iter().zip(responses).collect::<Vec<_>>()
        }));
    }
    let mut accepted: HashMap<&str, HashSet<String>> = HashMap::new();
    let mut total_accepted = 0;
    for s in senders {
        for ((ch, tx_id), resp) in s.await.expect("sender task") {
            assert_eq!(
                resp.status,
                Code::Success as i32,
                "envelope refused: {}",
                resp.info
            );
            assert_eq!(resp.tx_id, tx_id, "responses come back in order");
            assert!(accepted.entry(ch).or_default().insert(tx_id));
            total_accepted += 1;
        }
    }
    assert_eq!(total_accepted, TOTAL);
    for ch in CHANNELS {
        expected_tx[ch].send_replace(Some(accepted[ch].len()));
    }

    let mut per_channel: HashMap<&str, Vec<Vec<ordo_proto::pb::common::Block>>> = HashMap::new();
    for (ch, r) in readers {
        let blocks = tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .expect("readers finish")
            .expect("reader task");
        per_channel.entry(ch).or_default().push(blocks);
    }
    let mut heights = HashMap::new();
    for ch in CHANNELS {
        let views = &per_channel[ch];
        assert_eq!(views.len(), 2);
        // Both readers saw byte-identical blocks.
        let a: Vec<Vec<u8>> = views[0].iter().map(|b| b.encode_to_vec()).collect();
        let b: Vec<Vec<u8>> = views[1].iter().map(|b| b.encode_to_vec()).collect();
        let common_len = a.len().min(b.len());
        assert_eq!(a[..common_len], b[..common_len], "readers of {ch} disagree");
        // Every accepted envelope exactly once.
        let txs: Vec<String> = views[0][1..].iter().flat_map(block_tx_ids).collect();
        let unique: HashSet<&String> = txs.iter().collect();
        assert_eq!(txs.len(), unique.len(), "duplicates in {ch}");
        assert_eq!(
            unique.len(),
            accepted[ch].len(),
            "missing envelopes in {ch}"
        );
        assert!(
            txs.iter().all(|t| accepted[ch].contains(t)),
            "unknown envelope in {ch}"
        );
        heights.insert(ch, views[0].len() as u64);
    }

    let addr = o.addr.clone();
    let verify = |ch: &str| {
        let out = run_ok(&[
            "block",
            "verify",
            "--orderer",
            &addr,
            "--channel",
            ch,
            "--key",
            crypto.join("BankB/client.key").to_str().expect("utf8"),
            "--cert",
            crypto.join("BankB/client.cert").to_str().expect("utf8"),
        ]);
        assert!(out.contains("OK"), "{out}");
    };
    for ch in CHANNELS {
        verify(ch);
    }

    // Restart: the same blocks, byte for byte, and the chain continues.
    let reader_id = c.identity("BankA", "client");
    let before: HashMap<&str, Vec<Vec<u8>>> = CHANNELS
        .iter()
        .map(|ch| {
            (
                *ch,
                per_channel[ch][0]
                    .iter()
                    .map(|b| b.encode_to_vec())
                    .collect(),
            )
        })
        .collect();
    o.stop();
    o.restart(&admin).await;
    for ch in CHANNELS {
        let h = heights[ch];
        let d = deliver(
            &o.addr,
            &reader_id,
            ch,
            position(Some(0)),
            Some(position(Some(h - 1))),
            SeekBehavior::FailIfNotReady,
        )
        .await;
        assert_eq!(d.code, tonic::Code::Ok, "{}", d.info);
        let after: Vec<Vec<u8>> = d.blocks.iter().map(|b| b.encode_to_vec()).collect();
        assert_eq!(
            after, before[ch],
            "blocks of {ch} changed across the restart"
        );
    }
    for ch in CHANNELS {
        let envs: Vec<_> = (0..50)
            .map(|i| message(&reader_id, ch, 100, 1_000_000 + i).0)
            .collect();
        let resps = broadcast(&o.addr, envs).await;
        assert!(resps.iter().all(|r| r.status == Code::Success as i32));
        let h = heights[ch];
        // Wait for the new block(s), then check they extend the old chain.
        let d = deliver(
            &o.addr,
            &reader_id,
            ch,
            position(Some(h)),
            Some(position(Some(h))),
            SeekBehavior::BlockUntilReady,
        )
        .await;
        assert_eq!(d.code, tonic::Code::Ok, "{}", d.info);
        let prev = ordo_proto::pb::common::Block::decode(before[ch][(h - 1) as usize].as_slice())
            .expect("decodes");
        assert_eq!(
            d.blocks[0]
                .header
                .as_ref()
                .expect("header")
                .previous_hash
                .as_ref(),
            ordo_proto::block::hash(&prev).as_slice()
        );
        verify(ch);
    }
    o.stop();
}
