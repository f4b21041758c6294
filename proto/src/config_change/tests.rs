//! The lifecycle rules and which policy authorizes a change.

use super::*;
use crate::pb::common::{Organization, Role};
use crate::policy::build;

fn def(name: &str, version: &str, sequence: u64) -> ChaincodeDefinition {
    ChaincodeDefinition {
        name: name.into(),
        version: version.into(),
        endorsement_policy: Some(build::n_out_of(
            2,
            &[("A", Role::Peer), ("B", Role::Peer), ("C", Role::Peer)],
        )),
        runtime: format!("builtin:{name}"),
        sequence,
        retired: false,
    }
}

fn config(chaincodes: Vec<ChaincodeDefinition>) -> ChannelConfig {
    ChannelConfig {
        channel_id: "c".into(),
        sequence: 4,
        orgs: ["A", "B", "C"]
            .iter()
            .map(|n| Organization {
                name: n.to_string(),
                ..Default::default()
            })
            .collect(),
        admins: Some(build::majority(&[], Role::Admin)),
        lifecycle: Some(build::n_out_of(
            2,
            &[("A", Role::Admin), ("B", Role::Admin), ("C", Role::Admin)],
        )),
        chaincodes,
        ..Default::default()
    }
}

#[test]
fn definitions_change_only_with_the_next_sequence_and_are_never_removed() {
    let current = config(vec![def("bank", "1", 1), def("kv", "1", 0)]);
    let with = |defs: Vec<ChaincodeDefinition>| check_definitions(&current, &config(defs));
    // Unchanged, and an upgrade with the next sequence (0 counts as 1).
    assert!(with(vec![def("bank", "1", 1), def("kv", "1", 0)]).is_ok());
    assert!(with(vec![def("bank", "2", 2), def("kv", "2", 2)]).is_ok());
    // Any change needs the next sequence: a policy change alone too.
    let mut stricter = def("bank", "1", 1);
    stricter.endorsement_policy = Some(build::n_out_of(
        3,
        &[("A", Role::Peer), ("B", Role::Peer), ("C", Role::Peer)],
    ));
    let err = with(vec![stricter.clone(), def("kv", "1", 0)]).expect_err("same sequence");
    assert!(err.contains("must be 2"), "{err}");
    stricter.sequence = 2;
    assert!(with(vec![stricter, def("kv", "1", 0)]).is_ok());
    assert!(
        with(vec![def("bank", "2", 3), def("kv", "1", 0)]).is_err(),
        "skips one"
    );
    // Removal is refused; retirement is a change like any other.
    let err = with(vec![def("bank", "1", 1)]).expect_err("kv removed");
    assert!(err.contains("retire"), "{err}");
    let mut retired = def("kv", "1", 2);
    retired.retired = true;
    assert!(with(vec![def("bank", "1", 1), retired.clone()]).is_ok());
    // A new name starts at 1, not retired.
    assert!(with(vec![
        def("bank", "1", 1),
        def("kv", "1", 0),
        def("notes", "1", 1)
    ])
    .is_ok());
    for bad in [def("notes", "1", 0), def("notes", "1", 2)] {
        assert!(with(vec![def("bank", "1", 1), def("kv", "1", 0), bad]).is_err());
    }
    let mut born_retired = def("notes", "1", 1);
    born_retired.retired = true;
    assert!(with(vec![def("bank", "1", 1), def("kv", "1", 0), born_retired]).is_err());
    // A retired definition defined again continues its sequence.
    let after = config(vec![def("bank", "1", 1), retired]);
    assert!(check_definitions(
        &after,
        &config(vec![def("bank", "1", 1), def("kv", "3", 3)])
    )
    .is_ok());
    assert!(check_definitions(
        &after,
        &config(vec![def("bank", "1", 1), def("kv", "3", 1)])
    )
    .is_err());
}

#[test]
fn the_lifecycle_policy_authorizes_definition_changes_alone() {
    let current = config(vec![def("bank", "1", 1)]);
    let mut upgrade = config(vec![def("bank", "2", 2)]);
    upgrade.sequence = 5;
    assert_eq!(
        authorizing_policy(&current, &upgrade).map(|(n, _)| n),
        Ok("Lifecycle")
    );
    // Anything else in the same update: the Admins policy.
    let mut mixed = upgrade.clone();
    mixed.orgs[0].anchor_peers = vec!["a:1".into()];
    assert_eq!(
        authorizing_policy(&current, &mixed).map(|(n, _)| n),
        Ok("Admins")
    );
    let mut orgs_only = current.clone();
    orgs_only.sequence = 5;
    orgs_only.orgs.pop();
    assert_eq!(
        authorizing_policy(&current, &orgs_only).map(|(n, _)| n),
        Ok("Admins")
    );
    // A change of the Lifecycle policy itself is not a definition change.
    let mut relaxed = current.clone();
    relaxed.lifecycle = Some(build::any_member(&[], &[Role::Admin]));
    assert_eq!(
        authorizing_policy(&current, &relaxed).map(|(n, _)| n),
        Ok("Admins")
    );
    // A channel without a Lifecycle policy: Admins for everything.
    let mut old = current.clone();
    old.lifecycle = None;
    assert_eq!(
        authorizing_policy(&old, &upgrade).map(|(n, _)| n),
        Ok("Admins")
    );
}
