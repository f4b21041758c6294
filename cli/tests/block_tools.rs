//! `ordo block fetch` and `ordo block verify`: a fetched chain verifies, and every kind of
//! tampering is caught and names the block.

mod common;

use bytes::Bytes;
use common::*;
use ordo_proto::pb::common::{Block, Status as Code};
use prost::Message;

fn load(dir: &std::path::Path, n: u64) -> Block {
    Block::decode(
        std::fs::read(dir.join(format!("{n}.block")))
            .expect("read")
            .as_slice(),
    )
    .expect("decode")
}

fn save(dir: &std::path::Path, n: u64, b: &Block) {
    std::fs::write(dir.join(format!("{n}.block")), b.encode_to_vec()).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetched_blocks_verify_and_tampering_names_the_block() {
    let c = Consortium::new("BankA,BankB");
    let admin = c.identity("BankA", "admin");
    let client = c.identity("BankB", "client");
    let genesis = c.genesis(
        "tools",
        &["--max-message-count", "10", "--batch-timeout-ms", "20"],
    );
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin).await;
    join(&o.addr, &admin, &genesis).await;
    let resps = broadcast(
        &o.addr,
        (0..35)
            .map(|i| message(&client, "tools", 64, i).0)
            .collect(),
    )
    .await;
    assert!(resps.iter().all(|r| r.status == Code::Success as i32));

    let crypto = c.crypto();
    let key = crypto.join("BankB/client.key");
    let cert = crypto.join("BankB/client.cert");
    let (key, cert) = (key.to_str().expect("utf8"), cert.to_str().expect("utf8"));
    // Wait until all 35 envelopes are in blocks (4 blocks of 10/10/10/5 after genesis).
    let mut height = 0;
    for _ in 0..100 {
        let out = run_ok(&[
            "block",
            "fetch",
            "--orderer",
            &o.addr,
            "--channel",
            "tools",
            "--key",
            key,
            "--cert",
            cert,
            "--json",
        ]);
        let txs: u64 = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["tx_count"].as_u64().unwrap_or(0))
            .sum();
        height = out.lines().count() as u64;
        if txs == 36 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(height >= 5, "blocks cut: {height}");
    let dir = c.dir.path().join("fetched");
    let dir_s = dir.to_str().expect("utf8");
    run_ok(&[
        "block",
        "fetch",
        "--orderer",
        &o.addr,
        "--channel",
        "tools",
        "--key",
        key,
        "--cert",
        cert,
        "--out",
        dir_s,
    ]);
    let out = run_ok(&["block", "verify", "--blocks-dir", dir_s]);
    assert!(out.starts_with("OK"), "{out}");
    let out = run_ok(&[
        "block",
        "verify",
        "--orderer",
        &o.addr,
        "--channel",
        "tools",
        "--key",
        key,
        "--cert",
        cert,
    ]);
    assert!(out.starts_with("OK"), "{out}");
    o.stop();

    let expect_fault = |needle: &str| {
        let (ok, stdout, stderr) = run(&["block", "verify", "--blocks-dir", dir_s]);
        assert!(!ok, "verify must fail for {needle}: {stdout}");
        assert!(
            stderr.contains(needle),
            "error should say {needle:?}: {stderr}"
        );
    };

    // 1. An envelope changed: the Merkle root no longer matches.
    let original = load(&dir, 2);
    let mut b = original.clone();
    if let Some(d) = b.data.as_mut() {
        let mut e = d.data[3].to_vec();
        let last = e.len() - 1;
        e[last] ^= 1;
        d.data[3] = Bytes::from(e);
    }
    save(&dir, 2, &b);
    expect_fault("block 2: data hash");
    save(&dir, 2, &original);

    // 2. A forged orderer signature.
    let original = load(&dir, 3);
    let mut b = original.clone();
    if let Some(md) = b.metadata.as_mut() {
        let mut s = md.signatures[0].signature.to_vec();
        s[0] ^= 1;
        md.signatures[0].signature = s.into();
    }
    save(&dir, 3, &b);
    expect_fault("block 3: signatures");
    save(&dir, 3, &original);

    // 3. A block re-signed by a peer (not in the BlockValidation policy).
    let mut b = original.clone();
    if let Some(md) = b.metadata.as_mut() {
        md.signatures.clear();
    }
    ordo_proto::block::sign(&mut b, &c.identity("BankA", "peer"), 0, Bytes::new());
    save(&dir, 3, &b);
    expect_fault("block 3: signatures");
    save(&dir, 3, &original);

    // 4. A reordered chain.
    let (b1, b2) = (load(&dir, 1), load(&dir, 2));
    save(&dir, 1, &b2);
    save(&dir, 2, &b1);
    expect_fault("block 2: expected block number 1");
    save(&dir, 1, &b1);
    save(&dir, 2, &b2);

    let out = run_ok(&["block", "verify", "--blocks-dir", dir_s]);
    assert!(
        out.starts_with("OK"),
        "restored chain verifies again: {out}"
    );
}
