//! Ledger integrity over real processes: `ordo ledger verify` passes a stopped peer's and
//! orderer's intact ledgers (the peer's by replaying its blocks to the same commit hash);
//! then one flipped byte in a blob file of the stopped peer is found by `ordo ledger
//! verify`, naming the block and the file, and — the peer started again — its background
//! scrub finds it with no client asking: `/healthz` turns 503 naming them,
//! `ordo_peer_ledger_corrupt` is 1, the log has one "ledger corrupt" line with the remedy,
//! and a client reading that block is refused naming them too. The same damage in the
//! orderer's ledger is found by `ordo ledger verify`, by the orderer's scrub (health and
//! metrics), and ends a Deliver of that block naming it.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, Status as Code};
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_proto::pb::query::{query_request, GetBlock};

const CHANNEL: &str = "audited";

/// `ordo ledger verify --data-dir DIR --json`, off the runtime's threads.
async fn verify(data_dir: &Path) -> (bool, serde_json::Value, String) {
    let dir = data_dir.to_str().expect("utf8").to_string();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        run(&["ledger", "verify", "--data-dir", &dir, "--json"])
    })
    .await
    .expect("ordo ran");
    let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (ok, json, err)
}

/// The block's record in the ledger's blob files: flips one byte of `needle`'s first
/// occurrence; returns the file.
fn flip_in_blob_files(ledger: &Path, needle: &[u8]) -> PathBuf {
    for entry in std::fs::read_dir(ledger).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "blob") {
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("read");
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at] ^= 0x01;
            std::fs::write(&path, bytes).expect("write");
            return path;
        }
    }
    panic!("the bytes are in no blob file of {}", ledger.display());
}

/// A signed GetBlock to the peer's Query service: its gRPC outcome.
async fn query_block(addr: &str, id: &Identity, number: u64) -> Result<Block, tonic::Status> {
    let q = query_request::Query::Block(GetBlock { number });
    try_peer_query(addr, id, CHANNEL, q)
        .await
        .map(|r| r.block.expect("a block"))
}

/// Flips one byte of `needle` in the blob files of the stopped `node`'s ledger and
/// checks that `ordo ledger verify` fails naming block 2 and the file; the file's name.
async fn damage_block_2(node: &NodeProcess, needle: &[u8]) -> String {
    let ledger = node.data_dir().join("channels").join(CHANNEL);
    let file = flip_in_blob_files(&ledger, needle);
    let file_name = file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let (ok, report, _) = verify(&node.data_dir()).await;
    assert!(!ok, "a flipped byte fails the check: {report}");
    let why = report["channels"][0]["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(why.contains("block 2") && why.contains(&file_name), "{why}");
    file_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_intact_ledgers_and_a_flipped_byte_is_named_everywhere() {
    let c = Consortium::new("BankA");
    let admin = c.identity("BankA", "admin");
    let (mut o, path) = orderer_with_bank_channel(&c, CHANNEL, "BankA").await;
    // The background scrub at a pace that reads this small ledger in well under a second.
    let mut peer = PeerProcess::start_peer_at(
        &c,
        "peer0",
        "BankA",
        &[],
        None,
        "[ledger]\nscrub_bytes_per_sec = 100000000\n",
    );
    peer.wait_ready(&admin).await;
    join(&peer.addr, &admin, &path).await;

    let client = c.identity("BankA", "client");
    let endorser = c.identity("BankA", "peer");
    for round in 0..5u64 {
        let envs = (0..10)
            .map(|i| {
                bank_set_tx(
                    &client,
                    &endorser,
                    CHANNEL,
                    &format!("k{round}-{i}"),
                    Bytes::from(vec![b'7'; 2048]),
                )
            })
            .collect();
        let resps = broadcast(&o.addr, envs).await;
        assert!(
            resps.iter().all(|r| r.status == Code::Success as i32),
            "{resps:?}"
        );
    }
    let height = channel_info(&o.addr, &admin, CHANNEL).await.height;
    assert!(height >= 6, "five rounds of ten make at least five blocks");
    let committed = wait_for_channel_height(&peer.addr, &admin, CHANNEL, height).await;

    // Intact: the peer's ledger replays to its own commit hash.
    peer.stop();
    let (ok, report, err) = verify(&peer.data_dir()).await;
    assert!(ok, "{report}\n{err}");
    let ch = &report["channels"][0];
    assert_eq!(ch["channel"], CHANNEL, "{report}");
    assert_eq!(ch["blocks"].as_u64(), Some(height), "{report}");
    assert_eq!(ch["replayed"], true, "{report}");
    assert_eq!(
        ch["commit_hash"].as_str(),
        Some(hex::encode(&committed.commit_hash).as_str()),
        "the replay reaches the commit hash the running peer reported"
    );
    assert!(err.contains("checked"), "progress on stderr: {err}");

    // A restart flushes the blocks from the write-ahead log into table and blob files;
    // then one byte of block 2's record is flipped on disk.
    peer.restart(&admin).await;
    peer.stop();
    let block_2 = orderer_block(&o.addr, &admin, 2).await;
    let first_envelope = &block_2.data.as_ref().expect("data").data[0];
    // Its last bytes are its signature: in no other block.
    let signature = &first_envelope[first_envelope.len() - 48..];
    let file_name = damage_block_2(&peer, signature).await;

    // The peer starts (its tip is intact) and serves the other blocks. Its background
    // scrub finds the damage with no client asking: health, metrics and log show it, and
    // a client asking for block 2 is refused with the same naming.
    peer.restart(&admin).await;
    assert!(query_block(&peer.addr, &admin, 1).await.is_ok());
    let (code, body) = http_get_until(&peer.ops, "/healthz", 503);
    assert_eq!(code, 503, "the scrub finds the damage: {body}");
    assert!(
        body.contains("ledger corrupt") && body.contains("block 2") && body.contains(&file_name),
        "{body}"
    );
    let (_, metrics) = http_get(&peer.ops, "/metrics");
    assert!(
        metrics.contains(&format!(
            "ordo_peer_ledger_corrupt{{channel=\"{CHANNEL}\"}} 1"
        )),
        "{metrics}"
    );
    let refused = query_block(&peer.addr, &admin, 2)
        .await
        .expect_err("damaged");
    assert!(
        refused.message().contains("block 2") && refused.message().contains(&file_name),
        "{refused:?}"
    );
    let _ = query_block(&peer.addr, &admin, 2).await;
    let log = peer.log_text();
    assert_eq!(
        log.matches("ledger corrupt").count(),
        1,
        "one log line however often the block is read:\n{log}"
    );
    assert!(
        log.contains("ordo channel remove"),
        "the remedy is logged:\n{log}"
    );
    peer.stop();

    // The orderer's ledger, stopped: the chain checks; there is nothing to replay.
    o.stop();
    let (ok, report, err) = verify(&o.data_dir()).await;
    assert!(ok, "{report}\n{err}");
    let ch = &report["channels"][0];
    assert_eq!(ch["blocks"].as_u64(), Some(height), "{report}");
    assert_eq!(ch["replayed"], false, "{report}");

    // The same damage in the orderer's ledger: found offline, then at start, then by its
    // scrub, and a Deliver of that block ends naming it.
    o.restart(&admin).await;
    o.stop();
    let file_name = damage_block_2(&o, signature).await;
    // At start an orderer reads its last blocks back (to refill its duplicate filter):
    // block 2 is among them, so it refuses to start, naming the block and the file.
    let status = o.start_expecting_exit().await;
    assert!(!status.success());
    let log = o.log_text();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("corrupt ledger") && last.contains("block 2") && last.contains(&file_name),
        "{log}"
    );
    // With a duplicate filter of 10 tx ids it reads only the last block back and starts;
    // its scrub (at the default pace) finds the damage.
    let mut toml = std::fs::read_to_string(&o.config).expect("config");
    toml.push_str("\n[limits]\ndedupe_window = 10\n");
    std::fs::write(&o.config, toml).expect("config");
    o.restart(&admin).await;
    let (code, body) = http_get_until(&o.ops, "/healthz", 503);
    assert_eq!(code, 503, "the orderer's scrub finds the damage: {body}");
    assert!(
        body.contains("block 2") && body.contains(&file_name),
        "{body}"
    );
    let (_, metrics) = http_get(&o.ops, "/metrics");
    assert!(
        metrics.contains(&format!(
            "ordo_orderer_ledger_corrupt{{channel=\"{CHANNEL}\"}} 1"
        )),
        "{metrics}"
    );
    let at = ordo_sdk::orderer::position(Some(2));
    let got = deliver(
        &o.addr,
        &admin,
        CHANNEL,
        at,
        Some(at),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(got.code, tonic::Code::Internal, "{}", got.info);
    assert!(
        got.info.contains("block 2") && got.info.contains(&file_name),
        "{}",
        got.info
    );
    o.stop();
}

/// Block `number` as the orderer delivers it (the bytes the peer stored).
async fn orderer_block(orderer: &str, id: &Identity, number: u64) -> Block {
    let at = ordo_sdk::orderer::position(Some(number));
    let got = deliver(
        orderer,
        id,
        CHANNEL,
        at,
        Some(at),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(got.code, tonic::Code::Ok, "{}", got.info);
    got.blocks.into_iter().next().expect("the block")
}
