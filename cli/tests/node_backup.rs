//! `ordo node backup|restore` over real processes: a peer committing under load is backed
//! up online; a new peer process started on a data directory restored from that backup
//! catches up from the orderer and agrees with the original (same height, same commit
//! hash). Refusals: bad names, a duplicate name, a signer who is not an admin, a restore
//! into a non-empty directory, a backup whose block was changed.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, Status as Code};
use prost::Message;

const CHANNEL: &str = "backed";

/// `ordo node backup` of the peer at `addr`, signed with `member` of BankA.
fn backup_args(c: &Consortium, addr: &str, member: &str, name: &str) -> Vec<String> {
    let dir = c.crypto().join("BankA");
    vec![
        "node".into(),
        "backup".into(),
        "--peer".into(),
        addr.into(),
        "--key".into(),
        path_arg(&dir.join(format!("{member}.key"))),
        "--cert".into(),
        path_arg(&dir.join(format!("{member}.cert"))),
        "--name".into(),
        name.into(),
        "--json".into(),
    ]
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("list") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).expect("copy");
        }
    }
}

/// Changes one envelope of block `number` in the channel ledger under `dir`, the way an
/// attacker with the files would (the block keeps its header, so its data hash no longer
/// matches).
fn tamper_block(dir: &Path, number: u64) {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(false);
    let db = rocksdb::DB::open_cf(&opts, dir, ordo_ledger::COLUMN_FAMILIES).expect("open");
    let cf = db.cf_handle(ordo_ledger::CF_BLOCKS).expect("blocks cf");
    let bytes = db
        .get_cf(cf, number.to_be_bytes())
        .expect("read")
        .expect("block stored");
    let mut block = Block::decode(bytes.as_slice()).expect("decode");
    let data = block.data.as_mut().expect("data");
    let mut env = data.data[0].to_vec();
    let last = env.len() - 1;
    env[last] ^= 0x01;
    data.data[0] = env.into();
    db.put_cf(cf, number.to_be_bytes(), block.encode_to_vec())
        .expect("write");
    db.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_backed_up_under_load_restores_into_a_new_peer_that_catches_up_and_agrees() {
    let c = Consortium::new("BankA");
    let admin = c.identity("BankA", "admin");
    let (mut o, path) = orderer_with_bank_channel(&c, CHANNEL, "BankA").await;
    let mut peer = joined_peer(&c, "peer0", "BankA", &path).await;

    // Load: batches of fresh-key writes until told to stop.
    let load = BankLoad::of_org(&c, "BankA", &o.addr, CHANNEL);
    wait_for_channel_height(&peer.addr, &admin, CHANNEL, 6).await;

    // The backup, taken while blocks keep committing.
    let before = load.acked();
    let (ok, out, err) = ordo_async(backup_args(&c, &peer.addr, "admin", "b1")).await;
    assert!(ok, "backup failed: {err}");
    let b: serde_json::Value = serde_json::from_str(&out).expect("json");
    let ch = &b["channels"][0];
    assert_eq!(ch["channel"], CHANNEL, "{b}");
    let backup_height = ch["height"].as_u64().expect("height");
    assert!(backup_height >= 6, "{b}");
    assert_eq!(ch["commit_hash"].as_str().map(str::len), Some(64), "{b}");
    let backup_dir = peer.data_dir().join("backups/b1");
    assert_eq!(
        b["path"].as_str(),
        Some(path_arg(&backup_dir).as_str()),
        "{b}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    assert_eq!(
        manifest["channels"][0]["height"].as_u64(),
        Some(backup_height)
    );
    assert_eq!(manifest["node_role"], "peer");

    // Refusals, while the load goes on.
    for bad in ["../x", "", "a/b", ".hidden", &"n".repeat(65)] {
        let (ok, _, err) = ordo_async(backup_args(&c, &peer.addr, "admin", bad)).await;
        assert!(
            !ok && err.contains("INVALID_ARGUMENT"),
            "name {bad:?}: {err}"
        );
    }
    let (ok, _, err) = ordo_async(backup_args(&c, &peer.addr, "admin", "b1")).await;
    assert!(
        !ok && err.contains("ALREADY_EXISTS") && err.contains("already exists"),
        "{err}"
    );
    let (ok, _, err) = ordo_async(backup_args(&c, &peer.addr, "client", "b2")).await;
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");
    assert!(!peer.data_dir().join("backups/b2").exists());
    assert!(!peer.data_dir().join("x").exists() && !c.dir.path().join("x").exists());

    // The load went on during the backup; stop it and let the peer catch up.
    wait_for_channel_height(&peer.addr, &admin, CHANNEL, backup_height + 3).await;
    assert!(load.acked() > before);
    load.stop().await;
    let height = channel_info(&o.addr, &admin, CHANNEL).await.height;
    assert!(height > backup_height);
    let original = wait_for_channel_height(&peer.addr, &admin, CHANNEL, height).await;
    assert_eq!(original.height, height);

    // Restore refusals: a non-empty target, a backup with a changed block.
    let scratch = c.dir.path().join("scratch");
    let busy = scratch.join("busy");
    std::fs::create_dir_all(&busy).expect("mkdir");
    std::fs::write(busy.join("keep"), b"x").expect("file");
    let restore = |backup: &Path, data: &Path| {
        vec![
            "node".to_string(),
            "restore".into(),
            "--backup".into(),
            path_arg(backup),
            "--data-dir".into(),
            path_arg(data),
        ]
    };
    let (ok, _, err) = ordo_async(restore(&backup_dir, &busy)).await;
    assert!(!ok && err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&busy).expect("list").count(), 1);
    let tampered = scratch.join("tampered");
    copy_dir(&backup_dir, &tampered);
    tamper_block(&tampered.join("channels").join(CHANNEL), 3);
    let target = scratch.join("from-tampered");
    let (ok, _, err) = ordo_async(restore(&tampered, &target)).await;
    assert!(
        !ok && err.contains("does not verify") && err.contains("block 3"),
        "{err}"
    );
    assert!(
        !target.join("channels").join(CHANNEL).exists(),
        "a refused channel is not left in place"
    );

    // The restore, into the data directory of a new peer that has never run.
    let new_data: PathBuf = c.dir.path().join("peer1").join("data");
    let (ok, out, err) = ordo_async(restore(&backup_dir, &new_data)).await;
    assert!(ok, "restore failed: {err}");
    assert!(out.contains(&format!("blocks 0..{backup_height}")), "{out}");
    let mut restored = PeerProcess::start_peer(&c, "peer1", "BankA", &[]);
    restored.wait_ready(&admin).await;
    let caught_up = wait_for_channel_height(&restored.addr, &admin, CHANNEL, height).await;
    assert_eq!(caught_up.height, height);
    assert_eq!(caught_up.last_block_hash, original.last_block_hash);
    assert_eq!(
        hex_of(&caught_up.commit_hash),
        hex_of(&original.commit_hash),
        "the restored peer's world state differs from the original's"
    );
    // The CLI's view agrees too.
    let info = |addr: &str| {
        vec![
            "channel".to_string(),
            "info".into(),
            "--peer".into(),
            addr.into(),
            "--key".into(),
            path_arg(&c.crypto().join("BankA/admin.key")),
            "--cert".into(),
            path_arg(&c.crypto().join("BankA/admin.cert")),
            "--channel".into(),
            CHANNEL.into(),
            "--json".into(),
        ]
    };
    let a: serde_json::Value =
        serde_json::from_str(&ordo_async(info(&peer.addr)).await.1).expect("json");
    let r: serde_json::Value =
        serde_json::from_str(&ordo_async(info(&restored.addr)).await.1).expect("json");
    assert_eq!(a["commit_hash"], r["commit_hash"]);
    assert_eq!(a["height"], r["height"]);
    eprintln!(
        "backup at height {backup_height} ({before} txs acknowledged before it); the restored peer caught up to {height}, commit hash {}",
        hex_of(&caught_up.commit_hash)
    );
    restored.stop();
    peer.stop();
    o.stop();
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_orderer_is_backed_up_and_its_backup_restores() {
    let c = Consortium::new("BankA");
    let admin = c.identity("BankA", "admin");
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin).await;
    let path = c.genesis(
        CHANNEL,
        &["--orderer-endpoints", &o.addr, "--ack-mode", "committed"],
    );
    join(&o.addr, &admin, &path).await;
    let client = c.identity("BankA", "client");
    for round in 0..3u64 {
        let envs = (0..5)
            .map(|i| message(&client, CHANNEL, 100, round * 10 + i).0)
            .collect();
        let resps = broadcast(&o.addr, envs).await;
        assert!(
            resps.iter().all(|r| r.status == Code::Success as i32),
            "{resps:?}"
        );
    }
    let height = channel_info(&o.addr, &admin, CHANNEL).await.height;
    let mut args = backup_args(&c, &o.addr, "admin", "o1");
    args[2] = "--orderer".into();
    args.extend(["--channel".to_string(), CHANNEL.to_string()]);
    let (ok, out, err) = ordo_async(args).await;
    assert!(ok, "{err}");
    let b: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(b["channels"][0]["height"].as_u64(), Some(height), "{b}");
    assert!(b["channels"][0]["commit_hash"].is_null(), "{b}");
    // A copy of an executed backup request is refused (replay protection), and writes
    // nothing.
    let req = ordo_sdk::orderer::admin_request(
        &admin,
        CHANNEL,
        ordo_proto::pb::admin::admin_command::Command::Backup(ordo_proto::pb::admin::Backup {
            name: "o3".into(),
            channel_id: String::new(),
        }),
    );
    let mut client = ordo_sdk::orderer::admin_client(connect(&o.addr).await.expect("connect"));
    client
        .execute(req.clone())
        .await
        .expect("the first backup is taken");
    std::fs::remove_dir_all(o.data_dir().join("backups/o3")).expect("rm");
    let copy = client.execute(req).await.expect_err("a copy is refused");
    assert_eq!(copy.code(), tonic::Code::AlreadyExists, "{copy:?}");
    assert!(!o.data_dir().join("backups/o3").exists());
    // An unknown channel is NOT_FOUND.
    let mut args = backup_args(&c, &o.addr, "admin", "o2");
    args.extend(["--channel".to_string(), "nope".to_string()]);
    let (ok, _, err) = ordo_async(args).await;
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
    o.stop();

    let target = c.dir.path().join("orderer1/data");
    let out = restore(&o.data_dir().join("backups/o1"), &target).await;
    assert!(out.contains("(orderer)"), "{out}");
    let store =
        ordo_ledger::BlockStore::open(&target.join("channels").join(CHANNEL)).expect("open");
    assert_eq!(store.height(), height);
}

/// `ordo node restore` of `backup` into `target`, asserting it succeeds; its output.
async fn restore(backup: &Path, target: &Path) -> String {
    let (ok, out, err) = ordo_async(vec![
        "node".into(),
        "restore".into(),
        "--backup".into(),
        path_arg(backup),
        "--data-dir".into(),
        path_arg(target),
    ])
    .await;
    assert!(ok, "{err}");
    out
}

/// Broadcasts `n` messages tagged from `first` to `addr`, asserting each is accepted.
async fn send_accepted(addr: &str, client: &Identity, first: u64, n: u64) {
    let envs = (first..first + n)
        .map(|i| message(client, CHANNEL, 100, i).0)
        .collect();
    let resps = broadcast(addr, envs).await;
    assert!(
        resps.iter().all(|r| r.status == Code::Success as i32),
        "{resps:?}"
    );
}

/// Waits until the orderer at `addr` says its kafka chain is connected.
async fn wait_kafka_connected(addr: &str, admin: &Identity) {
    for _ in 0..600 {
        if channel_info(addr, admin, CHANNEL).await.role == "kafka" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the kafka chain of {addr} did not connect");
}

/// The block hashes of a stopped node's channel ledger.
fn chain_hashes(data_dir: &Path) -> Vec<Vec<u8>> {
    let store =
        ordo_ledger::BlockStore::open(&data_dir.join("channels").join(CHANNEL)).expect("open");
    (0..store.height())
        .map(|n| {
            let b = store.block(n).expect("read").expect("present");
            ordo_proto::block::hash(&b).to_vec()
        })
        .collect()
}

/// A kafka orderer's backup, restored into a new node, resumes from the topic at the
/// offset its last backed-up block recorded: it orders what was sent after the backup into
/// the very blocks the original cut, and goes on ordering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_orderer_restored_from_its_backup_resumes_from_the_topic_into_identical_blocks() {
    let cluster = common::kafka::Cluster::mock();
    let topic = common::kafka::unique_topic("ordo.backed");
    cluster.create_topic(&topic).await;
    let c = Consortium::new("BankA");
    let admin = c.identity("BankA", "admin");
    let client = c.identity("BankA", "client");
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin).await;
    let brokers = cluster.brokers();
    let genesis = c.genesis(
        CHANNEL,
        &[
            "--consensus",
            "kafka",
            "--kafka-brokers",
            &brokers,
            "--kafka-topic",
            &topic,
            "--orderer-endpoints",
            &o.addr,
            "--ack-mode",
            "committed",
            "--max-message-count",
            "5",
        ],
    );
    join(&o.addr, &admin, &genesis).await;
    wait_kafka_connected(&o.addr, &admin).await;
    for round in 0..3 {
        send_accepted(&o.addr, &client, round * 5, 5).await;
    }
    let mut args = backup_args(&c, &o.addr, "admin", "k1");
    args[2] = "--orderer".into();
    let (ok, out, err) = ordo_async(args).await;
    assert!(ok, "{err}");
    let b: serde_json::Value = serde_json::from_str(&out).expect("json");
    let backed_up = b["channels"][0]["height"].as_u64().expect("height");
    // More after the backup: only in Kafka and in the original's ledger.
    for round in 3..6 {
        send_accepted(&o.addr, &client, round * 5, 5).await;
    }
    let height = channel_info(&o.addr, &admin, CHANNEL).await.height;
    assert!(height > backed_up, "{height} vs backup {backed_up}");
    o.stop();

    restore(
        &o.data_dir().join("backups/k1"),
        &c.dir.path().join("orderer1/data"),
    )
    .await;
    let mut restored = OrdererProcess::start(&c, "orderer1", "BankA");
    restored.wait_ready(&admin).await;
    let mut caught_up = 0;
    for _ in 0..600 {
        caught_up = channel_info(&restored.addr, &admin, CHANNEL).await.height;
        if caught_up >= height {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        caught_up, height,
        "the restored orderer re-read the topic from its backup's offset"
    );
    // And it orders what comes next.
    wait_kafka_connected(&restored.addr, &admin).await;
    send_accepted(&restored.addr, &client, 1000, 5).await;
    restored.stop();
    let original = chain_hashes(&o.data_dir());
    let continued = chain_hashes(&restored.data_dir());
    assert_eq!(original.len() as u64, height);
    assert_eq!(
        &continued[..original.len()],
        &original[..],
        "the restored node cut the same blocks the original did"
    );
    assert!(continued.len() > original.len(), "it went on ordering");
}

/// An orderer refuses to back up a raft channel (a consenter restored to an earlier raft
/// log and vote could lose committed blocks) and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_channel_is_refused_for_backup_and_nothing_is_written() {
    let c = Consortium::new("BankA");
    let admin = c.identity("BankA", "admin");
    let mut o = OrdererProcess::start(&c, "orderer0", "BankA");
    o.wait_ready(&admin).await;
    let genesis = c.genesis(
        CHANNEL,
        &["--consensus", "raft", "--orderer-endpoints", &o.addr],
    );
    join(&o.addr, &admin, &genesis).await;
    let mut named = backup_args(&c, &o.addr, "admin", "r1");
    named[2] = "--orderer".into();
    let mut every = named.clone();
    named.extend(["--channel".to_string(), CHANNEL.to_string()]);
    let (ok, _, err) = ordo_async(named).await;
    assert!(
        !ok && err.contains("INVALID_ARGUMENT")
            && err.contains("raft")
            && err.contains("joining it again"),
        "{err}"
    );
    every[9] = "r2".into();
    let (ok, _, err) = ordo_async(every).await;
    assert!(
        !ok && err.contains("every channel of this orderer is refused") && err.contains("raft"),
        "{err}"
    );
    let backups = o.data_dir().join("backups");
    let written: Vec<_> = std::fs::read_dir(&backups)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "refused backups left {written:?}");
    o.stop();
}
