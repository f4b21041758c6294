use super::*;
use ordo_proto::identity::Enrollment;
use ordo_proto::pb::common::Organization;

fn config_with(orgs: &[(&str, &ed25519_dalek::SigningKey)]) -> ChannelConfig {
    ChannelConfig {
        channel_id: "ch".into(),
        sequence: 3,
        orgs: orgs
            .iter()
            .map(|(n, ca)| Organization {
                name: n.to_string(),
                root_public_keys: vec![ca.verifying_key().to_bytes().to_vec().into()],
                ..Default::default()
            })
            .collect(),
        orderer: Some(ordo_proto::pb::common::OrdererConfig {
            consensus_type: "solo".into(),
            batch_size: Some(ordo_proto::pb::common::BatchSize {
                max_message_count: 10,
                absolute_max_bytes: 1 << 20,
                preferred_max_bytes: 1 << 19,
            }),
            batch_timeout_ms: 100,
            ack_mode: ordo_proto::pb::common::AckMode::Enqueued as i32,
            ..Default::default()
        }),
        readers: Some(ordo_proto::policy::build::any_member(&[], &[])),
        writers: Some(ordo_proto::policy::build::any_member(&[], &[])),
        admins: Some(ordo_proto::policy::build::majority(&[], Role::Admin)),
        block_validation: Some(ordo_proto::policy::build::any_member(&[], &[])),
        chaincodes: vec![],
        lifecycle: None,
        tx_validity_window_s: 0,
    }
}

fn admin(org: &str, ca: &ed25519_dalek::SigningKey) -> Identity {
    let now = ordo_proto::now_ms() / 1000;
    Identity::enroll(
        ca,
        ordo_proto::crypto::generate_signing_key(),
        &Enrollment::new(org, Role::Admin, "admin").valid(now - 10, now + 1000),
    )
}

#[test]
fn signatures_travel_in_the_file_and_meet_the_policy() {
    let (ca_a, ca_b, ca_c) = (
        ordo_proto::crypto::generate_signing_key(),
        ordo_proto::crypto::generate_signing_key(),
        ordo_proto::crypto::generate_signing_key(),
    );
    let cur = config_with(&[("A", &ca_a), ("B", &ca_b), ("C", &ca_c)]);
    let mut new = cur.clone();
    new.sequence += 1;
    new.orgs.pop();
    let now = ordo_proto::now_ms() / 1000;
    let mut p = PendingUpdate::new(&cur, &new);
    assert_eq!(p.summary(), vec!["remove org C".to_string()]);
    let a = admin("A", &ca_a);
    p.sign(&a, now).expect("A signs");
    assert!(p.sign(&a, now).is_err(), "A signs twice");
    assert!(p.policy_status(now).1.is_err(), "1 of 3 orgs");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("u.json");
    p.save(&path).expect("saved");
    let mut q = PendingUpdate::load(&path).expect("loads");
    q.sign(&admin("B", &ca_b), now).expect("B signs");
    assert!(q.policy_status(now).1.is_ok(), "2 of 3 orgs");
    let foreign = admin("Z", &ordo_proto::crypto::generate_signing_key());
    assert!(q.sign(&foreign, now).is_err(), "not an org of the channel");
    q.save(&path).expect("saved");

    // Damage: a flipped byte in the config, a signature over other bytes, truncation.
    let text = std::fs::read_to_string(&path).expect("read");
    let f: UpdateFile = serde_json::from_str(&text).expect("json");
    let mut damaged = f.clone();
    let mut cfg = hex::decode(&damaged.config).expect("hex");
    let last = cfg.len() - 1;
    cfg[last] ^= 1;
    damaged.config = hex::encode(&cfg);
    let e = PendingUpdate::parse(&serde_json::to_string(&damaged).expect("json"))
        .expect_err("checksum");
    assert!(format!("{e:#}").contains("config_sha256"), "{e:#}");
    let mut forged = f.clone();
    forged.signatures[1].signature = forged.signatures[0].signature.clone();
    let e = PendingUpdate::parse(&serde_json::to_string(&forged).expect("json"))
        .expect_err("bad signature");
    assert!(format!("{e:#}").contains("does not verify"), "{e:#}");
    let e = PendingUpdate::parse(&text[..text.len() / 2]).expect_err("truncated");
    assert!(
        format!("{e:#}").contains("not a config update file"),
        "{e:#}"
    );
}
