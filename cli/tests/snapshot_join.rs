//! `ordo peer snapshot` and `ordo channel join --snapshot` over real processes: a peer
//! committing under load writes a signed snapshot; a new peer joins the channel from it,
//! follows the orderer from the snapshot's height and agrees with the first peer (same
//! height, same commit hash); it answers a read below the snapshot's height NOT_FOUND
//! with the lowest block it holds. Refusals, each leaving the new peer without the
//! channel: a changed file, a manifest another peer re-signed with a height or a last
//! block hash the orderer's chain contradicts, a manifest edited without re-signing, a
//! signer who is not an admin, a channel already joined.

mod common;

use std::path::Path;

use common::*;
use ordo_ledger::snapshot::{read_manifest, SnapshotManifest, MANIFEST_FILE, STATE_FILE};
use ordo_proto::identity::Identity;
use ordo_proto::pb::query::{query_request, GetBlock, GetHistory, GetState};

const CHANNEL: &str = "snapped";

/// The signing flags of BankA's `member`.
fn signer(c: &Consortium, member: &str) -> Vec<String> {
    let dir = c.crypto().join("BankA");
    vec![
        "--key".into(),
        path_arg(&dir.join(format!("{member}.key"))),
        "--cert".into(),
        path_arg(&dir.join(format!("{member}.cert"))),
    ]
}

fn join_args(c: &Consortium, addr: &str, member: &str, snapshot: &Path) -> Vec<String> {
    let mut a = vec![
        "channel".to_string(),
        "join".into(),
        "--peer".into(),
        addr.into(),
        "--snapshot".into(),
        path_arg(snapshot),
    ];
    a.extend(signer(c, member));
    a
}

fn copy_snapshot(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("list") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn write_manifest(dir: &Path, m: &SnapshotManifest) {
    std::fs::write(
        dir.join(MANIFEST_FILE),
        serde_json::to_vec_pretty(m).expect("json"),
    )
    .expect("write manifest");
}

async fn serves_channel(addr: &str, admin: &Identity) -> bool {
    let ch = connect(addr).await.expect("connect");
    let req = ordo_sdk::orderer::admin_request(
        admin,
        "",
        ordo_proto::pb::admin::admin_command::Command::List(Default::default()),
    );
    let resp = ordo_sdk::orderer::admin_client(ch)
        .execute(req)
        .await
        .expect("list answered")
        .into_inner();
    resp.list
        .unwrap_or_default()
        .channels
        .iter()
        .any(|c| c.channel_id == CHANNEL)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_joins_from_a_snapshot_taken_under_load_and_agrees_with_the_peer_that_took_it() {
    let c = Consortium::new("BankA");
    let admin = c.identity("BankA", "admin");
    let (mut o, genesis) = orderer_with_bank_channel(&c, CHANNEL, "BankA").await;
    let mut peer = joined_peer(&c, "peer0", "BankA", &genesis).await;

    // Load: batches of fresh-key writes until told to stop.
    let load = BankLoad::of_org(&c, "BankA", &o.addr, CHANNEL);
    wait_for_channel_height(&peer.addr, &admin, CHANNEL, 8).await;

    // The snapshot, taken while blocks keep committing.
    let mut args = vec![
        "peer".to_string(),
        "snapshot".into(),
        "--peer".into(),
        peer.addr.clone(),
        "--channel".into(),
        CHANNEL.into(),
        "--json".into(),
    ];
    args.extend(signer(&c, "admin"));
    let (ok, out, err) = ordo_async(args.clone()).await;
    assert!(ok, "snapshot failed: {err}");
    let taken: serde_json::Value = serde_json::from_str(&out).expect("json");
    let height = taken["height"].as_u64().expect("height");
    assert!(height >= 8, "{taken}");
    let snap_dir = peer
        .data_dir()
        .join("snapshots")
        .join(format!("{CHANNEL}-{height}"));
    assert_eq!(
        taken["path"].as_str(),
        Some(path_arg(&snap_dir).as_str()),
        "{taken}"
    );
    assert!(
        taken["txid_records"].as_u64().expect("txids") >= 60,
        "{taken}"
    );
    let manifest = read_manifest(&snap_dir).expect("manifest");
    assert_eq!(
        (manifest.height, manifest.channel_id.as_str()),
        (height, CHANNEL)
    );
    // A client may not take one.
    let mut by_client = args.clone();
    let n = by_client.len();
    by_client[n - 4..].clone_from_slice(&signer(&c, "client"));
    let (ok, _, err) = ordo_async(by_client).await;
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");

    // The new peer, and the refusals first: each leaves it without the channel.
    let mut joiner = PeerProcess::start_peer(&c, "peer1", "BankA", &[]);
    joiner.wait_ready(&admin).await;
    let scratch = c.dir.path().join("scratch");
    let peer_id = c.identity("BankA", "peer");

    // A changed byte in the state file.
    let changed = scratch.join("changed");
    copy_snapshot(&snap_dir, &changed);
    let state = changed.join(STATE_FILE);
    let mut bytes = std::fs::read(&state).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&state, bytes).expect("write");
    let (ok, _, err) = ordo_async(join_args(&c, &joiner.addr, "admin", &changed)).await;
    assert!(
        !ok && err.contains("INVALID_ARGUMENT") && err.contains("state.records"),
        "{err}"
    );

    // Edited manifests: one nobody re-signed, then two a peer of the channel re-signed
    // with a height the orderer does not have or a last block hash its chain contradicts.
    // (scratch name, re-signed by a peer, the edit, what the refusal says)
    type Edit = (&'static str, bool, fn(&mut SnapshotManifest), &'static str);
    let edits: [Edit; 3] = [
        (
            "edited",
            false,
            |m| m.commit_hash = "00".repeat(32),
            "does not verify",
        ),
        ("beyond", true, |m| m.height += 100_000, "do not hold"),
        (
            "forked",
            true,
            |m| m.last_block_hash = "11".repeat(32),
            "hashes to",
        ),
    ];
    for (name, resign, edit, why) in edits {
        let dir = scratch.join(name);
        copy_snapshot(&snap_dir, &dir);
        let mut m = manifest.clone();
        edit(&mut m);
        if resign {
            ordo_peer::snapshot::sign(&mut m, &peer_id);
        }
        write_manifest(&dir, &m);
        let (ok, _, err) = ordo_async(join_args(&c, &joiner.addr, "admin", &dir)).await;
        assert!(
            !ok && err.contains("INVALID_ARGUMENT") && err.contains(why),
            "{name}: {err}"
        );
    }

    // Not the channel the operator meant.
    let mut other = join_args(&c, &joiner.addr, "admin", &snap_dir);
    other.extend(["--channel".to_string(), "payments".to_string()]);
    let (ok, _, err) = ordo_async(other).await;
    assert!(
        !ok && err.contains("INVALID_ARGUMENT") && err.contains("not \"payments\""),
        "{err}"
    );

    // Not an admin.
    let (ok, _, err) = ordo_async(join_args(&c, &joiner.addr, "client", &snap_dir)).await;
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");
    assert!(!serves_channel(&joiner.addr, &admin).await);
    assert!(
        !joiner.data_dir().join("channels").join(CHANNEL).exists(),
        "a refused snapshot leaves no ledger behind"
    );

    // The join, while the load goes on.
    let started = std::time::Instant::now();
    let mut args = join_args(&c, &joiner.addr, "admin", &snap_dir);
    args.extend(["--channel".to_string(), CHANNEL.to_string()]);
    let (ok, out, err) = ordo_async(args).await;
    assert!(ok, "join failed: {err}");
    let join_took = started.elapsed();
    assert!(out.contains(&format!("joined channel {CHANNEL}")), "{out}");
    // A second join of the same channel is a conflict.
    let (ok, _, err) = ordo_async(join_args(&c, &joiner.addr, "admin", &snap_dir)).await;
    assert!(!ok && err.contains("ALREADY_EXISTS"), "{err}");

    wait_for_channel_height(&joiner.addr, &admin, CHANNEL, height + 3).await;
    load.stop().await;
    let final_height = channel_info(&o.addr, &admin, CHANNEL).await.height;
    let original = wait_for_channel_height(&peer.addr, &admin, CHANNEL, final_height).await;
    let joined = wait_for_channel_height(&joiner.addr, &admin, CHANNEL, final_height).await;
    assert_eq!(joined.height, original.height);
    assert_eq!(joined.last_block_hash, original.last_block_hash);
    assert_eq!(
        joined.commit_hash, original.commit_hash,
        "the peer joined from the snapshot disagrees with the peer that replayed everything"
    );

    // Below the snapshot's height the joined peer holds nothing, and says so.
    let below = try_peer_query(
        &joiner.addr,
        &admin,
        CHANNEL,
        query_request::Query::Block(GetBlock { number: 1 }),
    )
    .await
    .expect_err("block 1 is not held");
    assert_eq!(below.code(), tonic::Code::NotFound, "{below:?}");
    assert!(
        below
            .message()
            .contains(&format!("the lowest block held is {height}")),
        "{below:?}"
    );
    let above = try_peer_query(
        &joiner.addr,
        &admin,
        CHANNEL,
        query_request::Query::Block(GetBlock { number: height }),
    )
    .await
    .expect("the first block after the snapshot is held");
    assert!(above.block.is_some());

    // A key written before the snapshot: its value is in the joined peer's state, its
    // history there starts at the snapshot, and the answer says so.
    let state = |addr: String| {
        let admin = admin.clone();
        async move {
            try_peer_query(
                &addr,
                &admin,
                CHANNEL,
                query_request::Query::State(GetState {
                    namespace: "bank".into(),
                    key: "k0-0".into(),
                }),
            )
            .await
            .expect("state")
            .values
        }
    };
    assert_eq!(
        state(joiner.addr.clone()).await,
        state(peer.addr.clone()).await
    );
    let history = |addr: String| {
        let admin = admin.clone();
        async move {
            try_peer_query(
                &addr,
                &admin,
                CHANNEL,
                query_request::Query::History(GetHistory {
                    namespace: "bank".into(),
                    key: "k0-0".into(),
                    limit: 10,
                    from: None,
                }),
            )
            .await
            .expect("history")
        }
    };
    let full = history(peer.addr.clone()).await;
    assert_eq!((full.history.len(), full.history_from), (1, 0));
    let cut = history(joiner.addr.clone()).await;
    assert_eq!((cut.history.len(), cut.history_from), (0, height));

    // After a restart the joined peer still starts at the snapshot and agrees.
    joiner.stop();
    let mut joiner = PeerProcess::start_peer(&c, "peer1", "BankA", &[]);
    joiner.wait_ready(&admin).await;
    let again = wait_for_channel_height(&joiner.addr, &admin, CHANNEL, final_height).await;
    assert_eq!(again.commit_hash, original.commit_hash);
    eprintln!(
        "snapshot at height {height}; joined in {join_took:?}; both peers at {final_height} with commit hash {}",
        hex::encode(&original.commit_hash)
    );
    joiner.stop();
    peer.stop();
    o.stop();
}
