//! Definitions resolved against a channel, approvals judged against its policy.

use super::*;
use ordo_proto::crypto::generate_signing_key;
use ordo_proto::identity::Enrollment;
use ordo_proto::pb::common::Organization;

struct Channel {
    config: ChannelConfig,
    /// Each org's CA, as an admin identity whose key signs its members' certificates.
    cas: Vec<Identity>,
}

/// Three orgs, `bank` at sequence 1 (2 of 3), Lifecycle = a majority of admins.
fn channel() -> Channel {
    let cas: Vec<Identity> = ["A", "B", "C"]
        .iter()
        .map(|o| {
            let key = generate_signing_key();
            let ca = generate_signing_key();
            Identity::enroll(&ca, key, &Enrollment::new(o, Role::Admin, "ca"))
        })
        .collect();
    let orgs = ["A", "B", "C"];
    let config = ChannelConfig {
        channel_id: "payments".into(),
        sequence: 3,
        orgs: orgs
            .iter()
            .zip(&cas)
            .map(|(n, ca)| Organization {
                name: n.to_string(),
                root_public_keys: vec![ca.signing_key().verifying_key().to_bytes().to_vec().into()],
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
        readers: Some(build::any_member(&[], &[])),
        writers: Some(build::any_member(&[], &[])),
        admins: Some(build::majority(&[], Role::Admin)),
        block_validation: Some(build::any_member(&[], &[Role::Orderer])),
        lifecycle: Some(build::majority(&[], Role::Admin)),
        tx_validity_window_s: 0,
        chaincodes: vec![ChaincodeDefinition {
            name: "bank".into(),
            version: "1".into(),
            endorsement_policy: Some(build::n_out_of(
                2,
                &[("A", Role::Peer), ("B", Role::Peer), ("C", Role::Peer)],
            )),
            runtime: "builtin:bank".into(),
            sequence: 1,
            retired: false,
        }],
    };
    ordo_proto::config::validate(&config).expect("valid");
    Channel { config, cas }
}

fn member(ch: &Channel, org: usize, role: Role) -> Identity {
    let name = ["A", "B", "C"][org];
    Identity::enroll(
        ch.cas[org].signing_key(),
        generate_signing_key(),
        &Enrollment::new(name, role, "m"),
    )
}

#[test]
fn definitions_resolve_to_the_next_sequence_and_keep_what_is_not_said() {
    let ch = channel();
    let up = Definition::new("bank", "2")
        .endorsed_by(3, &[])
        .resolve(&ch.config)
        .expect("upgrade");
    assert_eq!((up.version.as_str(), up.sequence), ("2", 2));
    assert_eq!(up.runtime, "builtin:bank", "runtime kept");
    assert_eq!(
        up.endorsement_policy
            .as_ref()
            .map(policy::describe)
            .as_deref(),
        Some("3 of A.PEER, B.PEER, C.PEER")
    );
    let new = Definition::new("notes", "1")
        .runtime("builtin:kv")
        .resolve(&ch.config)
        .expect("new");
    assert_eq!(new.sequence, 1);
    assert_eq!(
        new.endorsement_policy
            .as_ref()
            .map(policy::describe)
            .as_deref(),
        Some("2 of A.PEER, B.PEER, C.PEER"),
        "a majority by default"
    );
    let retired = Definition::retire("bank")
        .resolve(&ch.config)
        .expect("retire");
    assert!(retired.retired && retired.sequence == 2 && retired.version == "1");

    let proposed = Definition::new("notes", "1")
        .runtime("builtin:kv")
        .propose(&ch.config)
        .expect("propose");
    assert_eq!(proposed.sequence, ch.config.sequence + 1);
    assert_eq!(proposed.chaincodes.len(), 2);
}

#[test]
fn definitions_the_channel_cannot_take_are_refused_with_the_reason() {
    let ch = channel();
    let refused = |d: Definition| d.propose(&ch.config).expect_err("refused").to_string();
    assert!(refused(Definition::retire("nope")).contains("no chaincode \"nope\" in force"));
    assert!(refused(Definition::new("bank", "2").endorsed_by(2, &["A", "Z"])).contains("\"Z\""));
    assert!(refused(Definition::new("bank", "2").endorsed_by(4, &[])).contains("n = 4"));
    assert!(
        refused(Definition::new("x", "1").runtime("builtin:nope")).contains("no peer can run it")
    );
    assert!(refused(Definition::new("x", "1").runtime("external:nohost")).contains("host:port"));
    assert!(refused(Definition::new("bad name", "1")).contains("[A-Za-z0-9_-]"));
}

#[test]
fn admins_approvals_count_toward_the_lifecycle_policy_and_nothing_else_does() {
    let ch = channel();
    let proposed = Definition::new("bank", "2")
        .propose(&ch.config)
        .expect("propose");
    let bytes = encode(&proposed);
    let client = member(&ch, 0, Role::Client);
    assert!(matches!(
        approve(&client, &bytes),
        Err(LifecycleError::NotAnAdmin { .. })
    ));
    let a = approve(&member(&ch, 0, Role::Admin), &bytes).expect("A");
    let judge = |sigs: &[ConfigSignature]| approvals(&ch.config, &proposed, &bytes, sigs, 100);
    let one = judge(std::slice::from_ref(&a));
    assert_eq!(
        (one.orgs.clone(), one.policy),
        (vec!["A".to_string()], "Lifecycle")
    );
    assert!(one.met.is_err(), "one org of three");
    // An approval of other bytes, and an admin of an org the channel does not know, do
    // not count.
    let other = approve(&member(&ch, 1, Role::Admin), b"other bytes").expect("signs");
    let stranger = Identity::enroll(
        &generate_signing_key(),
        generate_signing_key(),
        &Enrollment::new("C", Role::Admin, "mallory"),
    );
    let forged = approve(&stranger, &bytes).expect("signs");
    let still_one = judge(&[a.clone(), other, forged]);
    assert_eq!(still_one.orgs, vec!["A".to_string()]);
    assert!(still_one.met.is_err());
    let b = approve(&member(&ch, 1, Role::Admin), &bytes).expect("B");
    let two = judge(&[a, b]);
    assert_eq!(two.orgs, vec!["A".to_string(), "B".to_string()]);
    assert_eq!(two.met, Ok(()));
}
