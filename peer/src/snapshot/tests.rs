use std::path::Path;

use bytes::Bytes;
use ordo_ledger::snapshot::{self as files, SnapshotWriter};
use ordo_ledger::BlockStore;
use ordo_proto::pb::common::Block;
use ordo_proto::{block, config};
use ordo_sdk::tx::RwSetBuilder;

use super::*;
use crate::committer::Committer;
use crate::replay_check::check_ledger;
use crate::validator::tests::fixture::{net, NOW};

/// The next block over `envelopes`, signed by every org's orderer.
fn signed_next(ledger: &BlockStore, envelopes: Vec<Bytes>) -> Block {
    let prev = ledger.last_hash().expect("has blocks");
    let mut b = block::build(ledger.height(), prev, envelopes);
    for org in &net().orgs {
        block::sign_at(&mut b, &org.orderer, 0, Bytes::new(), NOW * 1000);
    }
    b
}

/// Sets `key` to `value` after reading it at `read` (absent when `None`).
fn put(nonce: u64, key: &str, value: &str, read: Option<crate::validator::Version>) -> Bytes {
    let mut rw = RwSetBuilder::new();
    rw.read("bank", key, read);
    rw.write("bank", key, Bytes::copy_from_slice(value.as_bytes()));
    net().tx(nonce).rwset(rw.build()).build()
}

fn genesis() -> Block {
    config::genesis_block(&net().config, NOW * 1000).expect("genesis")
}

/// A peer with `blocks` blocks after genesis, each writing two new keys.
fn peer(dir: &Path, blocks: u64) -> (Committer, Vec<Block>) {
    let ledger = BlockStore::open(dir).expect("ledger");
    let mut c = Committer::join(ledger.clone(), genesis()).expect("join");
    let mut chain = vec![genesis()];
    for n in 1..=blocks {
        let b = signed_next(
            &ledger,
            vec![
                put(n * 10, &format!("a{n}"), "1", None),
                put(n * 10 + 1, &format!("b{n}"), "2", None),
            ],
        );
        chain.push(b.clone());
        c.commit(b).expect("commit");
    }
    (c, chain)
}

fn take(c: &Committer, parent: &Path) -> (files::SnapshotManifest, std::path::PathBuf) {
    let mut w = SnapshotWriter::begin(parent, &net().config.channel_id).expect("begin");
    let mut m = w
        .write(c.ledger(), NOW * 1000, net().peer(0, 0).cert_bytes())
        .expect("write");
    sign(&mut m, net().peer(0, 0));
    let dir = w.finish(&m).expect("finish");
    (m, dir)
}

#[test]
fn a_peer_joined_from_a_snapshot_commits_like_one_that_replayed_everything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut replayed, chain) = peer(&tmp.path().join("a"), 6);
    let (manifest, dir) = take(&replayed, &tmp.path().join("snapshots"));

    // The checks a joining peer makes, with the orderers' blocks from the chain.
    let config_block = files::read_config_block(&dir, &manifest).expect("config block");
    let cfg = snapshot_config(&manifest, &config_block).expect("config");
    check_signer(&manifest, &cfg, NOW).expect("signed by a peer");
    let last = &chain[manifest.height as usize - 1];
    check_against_chain(&manifest, &config_block, &cfg, &chain[0], last, NOW)
        .expect("agrees with the chain");

    let ledger = BlockStore::open(&tmp.path().join("b")).expect("open");
    files::import(&ledger, &dir, &manifest).expect("import");
    let mut joined = Committer::open(ledger).expect("open committer");
    assert_eq!(joined.commit_hash(), replayed.commit_hash());

    // The same next blocks, one of them reading a key written before the snapshot:
    // equal codes and commit hashes on both.
    let v1 = crate::validator::Version { block: 1, tx: 0 };
    let next = [
        vec![put(100, "a1", "9", Some(v1)), put(101, "new", "x", None)],
        vec![put(102, "a1", "10", Some(v1))], // stale read: MVCC conflict on both
    ];
    for envelopes in next {
        let b = signed_next(replayed.ledger(), envelopes);
        let on_replayed = replayed.commit(b.clone()).expect("replayed peer");
        let on_joined = joined.commit(b).expect("joined peer");
        assert_eq!(
            on_joined.validation.codes_bytes(),
            on_replayed.validation.codes_bytes()
        );
        assert_eq!(on_joined.commit_hash, on_replayed.commit_hash);
    }
    assert_eq!(joined.ledger().first_block(), 7);

    // `ordo ledger verify` checks the held chain of the joined peer.
    let scratch = tempfile::tempdir().expect("scratch");
    let report = check_ledger(joined.ledger(), scratch.path(), NOW, |_, _| {}).expect("verify");
    assert_eq!(
        (report.first_block, report.blocks, report.replayed),
        (7, 9, false)
    );
}

#[test]
fn a_snapshot_the_orderers_chain_or_the_signer_contradict_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (replayed, chain) = peer(&tmp.path().join("a"), 4);
    let (manifest, dir) = take(&replayed, &tmp.path().join("snapshots"));
    let config_block = files::read_config_block(&dir, &manifest).expect("config block");
    let cfg = snapshot_config(&manifest, &config_block).expect("config");
    let last = chain.last().expect("blocks").clone();

    // Any changed field breaks the signature.
    let mut changed = manifest.clone();
    changed.commit_hash = hex::encode([7u8; 32]);
    let e = check_signer(&changed, &cfg, NOW).expect_err("changed");
    assert!(e.to_string().contains("does not verify"), "{e}");

    // Signed by a client, not a peer.
    let mut by_client = manifest.clone();
    sign(&mut by_client, net().client(0));
    let e = check_signer(&by_client, &cfg, NOW).expect_err("client");
    assert!(e.to_string().contains("not a peer"), "{e}");

    // Unsigned.
    let mut unsigned = manifest.clone();
    unsigned.signature.clear();
    assert!(check_signer(&unsigned, &cfg, NOW).is_err());

    // The orderers' block at h-1 hashes differently: another height or a fork.
    let earlier = &chain[chain.len() - 2];
    let e = check_against_chain(&manifest, &config_block, &cfg, &chain[0], earlier, NOW)
        .expect_err("other block");
    assert!(matches!(e, TrustError::Chain(_)), "{e}");
    let mut other_hash = manifest.clone();
    other_hash.last_block_hash = hex::encode([1u8; 32]);
    let e = check_against_chain(&other_hash, &config_block, &cfg, &chain[0], &last, NOW)
        .expect_err("other hash");
    assert!(e.to_string().contains("hashes to"), "{e}");

    // The block at h-1 without orderer signatures.
    let mut unsigned_block = last.clone();
    if let Some(m) = unsigned_block.metadata.as_mut() {
        m.signatures.clear();
    }
    let e = check_against_chain(
        &manifest,
        &config_block,
        &cfg,
        &chain[0],
        &unsigned_block,
        NOW,
    )
    .expect_err("unsigned");
    assert!(matches!(e, TrustError::Chain(_)), "{e}");

    // A config block that is not the orderers'.
    let e = check_against_chain(&manifest, &config_block, &cfg, &chain[1], &last, NOW)
        .expect_err("other config");
    assert!(matches!(e, TrustError::Chain(_)), "{e}");

    // A manifest for another channel than its config block.
    let mut other_channel = manifest.clone();
    other_channel.channel_id = "other".into();
    let e = snapshot_config(&other_channel, &config_block).expect_err("channel");
    assert!(e.to_string().contains("other"), "{e}");

    // And the real one passes.
    check_against_chain(&manifest, &config_block, &cfg, &chain[0], &last, NOW).expect("ok");
}
