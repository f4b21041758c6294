//! One test (or a few) per validation code, asserting exact codes and updates.

use std::collections::HashSet;

use bytes::Bytes;
use prost::Message;

use ordo_proto::envelope;
use ordo_proto::pb::common::{Envelope, HeaderType, Role};
use ordo_proto::pb::peer::{
    ChaincodeEvent, ChaincodeResponse, EndorserTransaction, KvRead, KvWrite, NsRwSet,
    ProposalResponsePayload, RangeRead, TxRwSet,
};
use ordo_sdk::tx::{self, RwSetBuilder};

use super::fixture::*;
use crate::validator::{
    validate_block, StateUpdate, TxEvent, TxValidationCode as Code, ValidationContext, Version,
    MAX_ENDORSEMENTS,
};
use ordo_proto::policy::build as policy;

fn write(ns: &str, k: &str, val: &'static [u8]) -> TxRwSet {
    RwSetBuilder::new()
        .write(ns, k, Bytes::from_static(val))
        .build()
}

fn read(ns: &str, k: &str, version: Option<ordo_proto::pb::peer::Version>) -> TxRwSet {
    RwSetBuilder::new().read(ns, k, version).build()
}

#[test]
fn valid_transactions_write_with_their_position_as_version() {
    let n = net();
    let mut rw = RwSetBuilder::new();
    rw.read("bank", "alice", None)
        .write("bank", "alice", Bytes::from_static(b"100"))
        .delete("bank", "bob");
    let t0 = n.tx(1).rwset(rw.build()).build();
    let t1 = n.tx(2).rwset(write("bank", "carol", b"5")).build();
    let out = validate(&block_of(5, vec![t0, t1]));
    assert_eq!(out.block_number, 5);
    assert_eq!(out.codes, vec![Code::Valid, Code::Valid]);
    assert_eq!(out.codes_bytes(), vec![0, 0]);
    assert_eq!(out.valid_count(), 2);
    assert!(out.tx_ids.iter().all(Option::is_some));
    assert_eq!(
        out.updates,
        vec![
            StateUpdate {
                namespace: "bank".into(),
                key: "alice".into(),
                value: Some(Bytes::from_static(b"100")),
                version: v(5, 0),
            },
            StateUpdate {
                namespace: "bank".into(),
                key: "bob".into(),
                value: None,
                version: v(5, 0),
            },
            StateUpdate {
                namespace: "bank".into(),
                key: "carol".into(),
                value: Some(Bytes::from_static(b"5")),
                version: v(5, 1),
            },
        ]
    );
    assert_eq!(out.config, None);
}

#[test]
fn empty_and_dataless_blocks_have_no_codes() {
    let out = validate(&block_of(3, vec![]));
    assert!(out.codes.is_empty() && out.updates.is_empty());
    let mut b = block_of(3, vec![]);
    b.data = None;
    b.header = None;
    assert!(validate(&b).codes.is_empty());
}

#[test]
fn mvcc_reads_must_see_the_committed_version() {
    let n = net();
    let mut state = State::new();
    state.insert(key("bank", "x"), v(3, 1));
    let ctx = n.ctx();
    let none = HashSet::<String>::new();
    let txs = vec![
        n.tx(1).rwset(read("bank", "x", Some(v(3, 1)))).build(), // current
        n.tx(2).rwset(read("bank", "x", Some(v(2, 0)))).build(), // stale
        n.tx(3).rwset(read("bank", "x", None)).build(),          // it exists
        n.tx(4).rwset(read("bank", "y", Some(v(1, 0)))).build(), // it does not
        n.tx(5).rwset(read("bank", "y", None)).build(),          // right
    ];
    let out = validate_block(&block_of(4, txs), &ctx, &state, &none);
    assert_eq!(
        out.codes,
        vec![
            Code::Valid,
            Code::MvccReadConflict,
            Code::MvccReadConflict,
            Code::MvccReadConflict,
            Code::Valid
        ]
    );
    assert!(out.updates.is_empty());
    // An MVCC conflict is authenticated and not a duplicate: the committer indexes it.
    assert!(out.tx_ids.iter().all(Option::is_some));
}

#[test]
fn mvcc_counts_writes_and_deletes_of_earlier_valid_transactions_only() {
    let n = net();
    let mut state = State::new();
    state.insert(key("bank", "x"), v(3, 1));
    state.insert(key("bank", "d"), v(3, 2));
    let ctx = n.ctx();
    let none = HashSet::<String>::new();
    let mut bad_sig =
        Envelope::decode(n.tx(10).rwset(write("bank", "z", b"1")).build()).expect("decodes");
    let mut sig = bad_sig.signature.to_vec();
    sig[0] ^= 1;
    bad_sig.signature = sig.into();
    let txs = vec![
        // 0: invalid (bad signature): its write of z does not count.
        bad_sig.encode_to_vec().into(),
        // 1: reads z as absent: fine.
        n.tx(11).rwset(read("bank", "z", None)).build(),
        // 2: writes x (valid).
        n.tx(12)
            .rwset({
                let mut rw = RwSetBuilder::new();
                rw.read("bank", "x", Some(v(3, 1)))
                    .write("bank", "x", Bytes::from_static(b"2"))
                    .delete("bank", "d");
                rw.build()
            })
            .build(),
        // 3: reads x at the committed version: conflict, x was written by tx 2.
        n.tx(13).rwset(read("bank", "x", Some(v(3, 1)))).build(),
        // 4: claims the version tx 2 gave x: still a conflict.
        n.tx(14).rwset(read("bank", "x", Some(v(6, 2)))).build(),
        // 5: reads d, deleted by tx 2, as absent: a conflict too.
        n.tx(15).rwset(read("bank", "d", None)).build(),
        // 6: blind write of x (no read): valid, and it wins.
        n.tx(16).rwset(write("bank", "x", b"3")).build(),
    ];
    let out = validate_block(&block_of(6, txs), &ctx, &state, &none);
    assert_eq!(
        out.codes,
        vec![
            Code::BadSignature,
            Code::Valid,
            Code::Valid,
            Code::MvccReadConflict,
            Code::MvccReadConflict,
            Code::MvccReadConflict,
            Code::Valid
        ]
    );
    let summary: Vec<(&str, Option<&[u8]>, _)> = out
        .updates
        .iter()
        .map(|u| (u.key.as_str(), u.value.as_deref(), u.version))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("d", None, v(6, 2)),
            ("x", Some(&b"2"[..]), v(6, 2)),
            ("x", Some(&b"3"[..]), v(6, 6)),
        ]
    );
}

#[test]
fn endorsement_policy_needs_peers_of_two_distinct_orgs() {
    let n = net();
    let client_b = n.client(1);
    let cases: Vec<(Vec<&ordo_proto::identity::Identity>, Code)> = vec![
        (vec![n.peer(0, 0), n.peer(2, 1)], Code::Valid),
        (vec![n.peer(0, 0)], Code::EndorsementPolicyFailure),
        (vec![], Code::EndorsementPolicyFailure),
        // Two peers of one org fill one principal.
        (
            vec![n.peer(0, 0), n.peer(0, 1)],
            Code::EndorsementPolicyFailure,
        ),
        // The same endorser twice counts once.
        (
            vec![n.peer(1, 0), n.peer(1, 0)],
            Code::EndorsementPolicyFailure,
        ),
        // A client is not a peer.
        (vec![n.peer(0, 0), client_b], Code::EndorsementPolicyFailure),
    ];
    for (i, (endorsers, want)) in cases.into_iter().enumerate() {
        let t = n.tx(100 + i as u64).endorsers(endorsers).build();
        assert_eq!(
            validate(&block_of(1, vec![t])).codes,
            vec![want],
            "case {i}"
        );
    }
}

/// Rewrites the endorsements of an encoded endorser-transaction envelope and re-signs
/// the envelope as `creator`.
fn with_endorsements(
    builder: &TxBuilder<'_>,
    edit: impl FnOnce(&mut Vec<ordo_proto::pb::peer::Endorsement>, &Bytes),
) -> Bytes {
    let p = builder.proposal();
    let payload = builder.response_payload(&p);
    let mut endorsements: Vec<_> = builder
        .endorsers
        .iter()
        .map(|e| tx::endorse(e, &payload))
        .collect();
    edit(&mut endorsements, &payload);
    tx::assemble(builder.creator, &p, payload, endorsements, 1)
        .expect("creator")
        .encode_to_vec()
        .into()
}

#[test]
fn bad_endorsements_are_dropped_not_fatal() {
    let n = net();
    let three = n
        .tx(1)
        .endorsers(vec![n.peer(0, 0), n.peer(1, 0), n.peer(2, 0)]);
    let tamper = |es: &mut Vec<ordo_proto::pb::peer::Endorsement>, _: &Bytes| {
        let mut sig = es[1].signature.to_vec();
        sig[3] ^= 0x40;
        es[1].signature = sig.into();
    };
    // Three endorsers, one bad signature: two good ones remain.
    let t_ok = with_endorsements(&three, tamper);
    // Two endorsers, one bad signature: not enough.
    let t_bad = with_endorsements(&n.tx(2), tamper);
    // An endorser signing other bytes, and one with a truncated signature.
    let t_other = with_endorsements(&n.tx(3), |es, _| {
        es[0] = tx::endorse(n.peer(0, 0), b"something else");
        es[1].signature = es[1].signature.slice(..10);
    });
    // An endorser whose certificate is not valid on the channel.
    let stranger_ca = ed25519_dalek::SigningKey::from_bytes(&[99; 32]);
    let stranger = member(&stranger_ca, "B", Role::Peer, 98, u64::MAX / 2);
    let t_stranger = n.tx(4).endorsers(vec![n.peer(0, 0), &stranger]).build();
    let out = validate(&block_of(1, vec![t_ok, t_bad, t_other, t_stranger]));
    assert_eq!(
        out.codes,
        vec![
            Code::Valid,
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure,
            Code::EndorsementPolicyFailure
        ]
    );
}

#[test]
fn too_many_endorsements_are_a_bad_payload() {
    let n = net();
    let many = vec![n.peer(0, 0); MAX_ENDORSEMENTS + 1];
    let t = n.tx(1).endorsers(many).build();
    assert_eq!(
        validate(&block_of(1, vec![t])).codes,
        vec![Code::BadPayload]
    );
    let mut enough = vec![n.peer(0, 0); MAX_ENDORSEMENTS - 1];
    enough.push(n.peer(1, 1));
    let t = n.tx(2).endorsers(enough).build();
    assert_eq!(validate(&block_of(1, vec![t])).codes, vec![Code::Valid]);
}

#[test]
fn writing_another_namespace_needs_its_policy_too() {
    let n = net();
    let mut rw = RwSetBuilder::new();
    rw.write("bank", "a", Bytes::from_static(b"1"))
        .write("audit", "log", Bytes::from_static(b"x"));
    let without_c = n.tx(1).rwset(rw.build()).build();
    let with_c = n
        .tx(2)
        .rwset(rw.build())
        .endorsers(vec![n.peer(0, 0), n.peer(2, 0)])
        .build();
    // Reading another namespace needs no policy of it.
    let reads_audit = n.tx(3).rwset(read("audit", "other", None)).build();
    let out = validate(&block_of(1, vec![without_c, with_c, reads_audit]));
    assert_eq!(
        out.codes,
        vec![Code::EndorsementPolicyFailure, Code::Valid, Code::Valid]
    );
    assert_eq!(out.updates.len(), 2);
}

fn flip_signature(env_bytes: Bytes) -> Bytes {
    let mut env = Envelope::decode(env_bytes).expect("decodes");
    let mut sig = env.signature.to_vec();
    sig[10] ^= 1;
    env.signature = sig.into();
    env.encode_to_vec().into()
}

#[test]
fn a_bad_envelope_signature_is_bad_signature_and_wins_over_later_faults() {
    let n = net();
    let plain = flip_signature(n.tx(1).build());
    let mut bad_inner = n.tx(2);
    bad_inner.chaincode = "nope".into();
    let bad_inner = flip_signature(bad_inner.build());
    // A payload changed after signing.
    let mut env = Envelope::decode(n.tx(3).build()).expect("decodes");
    let mut payload = env.payload.to_vec();
    let last = payload.len() - 1;
    payload[last] ^= 1;
    env.payload = payload.into();
    let out = validate(&block_of(
        1,
        vec![plain, bad_inner, env.encode_to_vec().into()],
    ));
    assert_eq!(out.codes, vec![Code::BadSignature; 3]);
    assert_eq!(out.tx_ids, vec![None, None, None]);
}

#[test]
fn creators_must_be_valid_channel_members_now() {
    let n = net();
    let stranger_ca = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
    let outsider = member(&stranger_ca, "Z", Role::Client, 76, u64::MAX / 2);
    let forged = member(&stranger_ca, "A", Role::Client, 75, u64::MAX / 2);
    let expiring = member(&n.orgs[0].ca, "A", Role::Client, 74, NOW - 1);
    let still_valid = member(&n.orgs[0].ca, "A", Role::Client, 73, NOW);
    let out = validate(&block_of(
        1,
        vec![
            n.tx(1).creator(&outsider).build(),
            n.tx(2).creator(&forged).build(),
            n.tx(3).creator(&expiring).build(),
            n.tx(4).creator(&still_valid).build(),
        ],
    ));
    assert_eq!(
        out.codes,
        vec![
            Code::BadCreator,
            Code::BadCreator,
            Code::BadCreator,
            Code::Valid
        ]
    );
}

#[test]
fn duplicate_tx_ids_first_occurrence_wins() {
    let n = net();
    let t = n.tx(1).rwset(write("bank", "k", b"1")).build();
    let out = validate(&block_of(1, vec![t.clone(), t.clone()]));
    assert_eq!(out.codes, vec![Code::Valid, Code::DuplicateTxid]);
    assert!(out.tx_ids[0].is_some());
    assert_eq!(out.tx_ids[1], None);
    assert_eq!(out.updates.len(), 1);

    // The same id with other content (the creator re-signed): still a duplicate; and the
    // first occurrence wins even when it is itself invalid.
    let first_bad = n.tx(2).endorsers(vec![n.peer(0, 0)]).build();
    let second_good = n.tx(2).build();
    let out = validate(&block_of(1, vec![first_bad, second_good]));
    assert_eq!(
        out.codes,
        vec![Code::EndorsementPolicyFailure, Code::DuplicateTxid]
    );

    // Already committed.
    let id = envelope::unpack(&Envelope::decode(t.clone()).expect("env"))
        .expect("unpacks")
        .header
        .tx_id;
    let committed: HashSet<String> = [id].into_iter().collect();
    let out = validate_block(
        &block_of(2, vec![t.clone()]),
        &n.ctx(),
        &State::new(),
        &committed,
    );
    assert_eq!(out.codes, vec![Code::DuplicateTxid]);
    assert_eq!(out.tx_ids, vec![None]);

    // A forged copy (bad signature) placed first does not cancel the real one.
    let out = validate(&block_of(1, vec![flip_signature(t.clone()), t]));
    assert_eq!(out.codes, vec![Code::BadSignature, Code::Valid]);
}

#[test]
fn undecodable_parts_are_bad_payload() {
    let n = net();
    let creator = n.client(0);
    let signed = |data: &'static [u8], nonce: &[u8]| -> Bytes {
        envelope::create_signed_with_nonce(
            creator,
            CHANNEL,
            HeaderType::EndorserTransaction,
            Bytes::from_static(data),
            1,
            nonce,
        )
        .0
        .encode_to_vec()
        .into()
    };
    let garbage = Bytes::from_static(b"\xff\xff\xff not an envelope");
    let bad_tx = signed(b"\xff\xff", b"n1");
    let bad_proposal = signed_tx(
        creator,
        EndorserTransaction {
            proposal: Bytes::from_static(b"\xff\xff"),
            ..Default::default()
        },
    );
    let no_response = signed_tx(creator, EndorserTransaction::default());
    // A tx id that does not match nonce and creator.
    let mut env = Envelope::decode(n.tx(9).build()).expect("env");
    let mut p = ordo_proto::pb::common::Payload::decode(env.payload.clone()).expect("payload");
    if let Some(h) = p.header.as_mut() {
        h.tx_id = "00".repeat(32);
    }
    env.payload = p.encode_to_vec().into();
    env.signature = creator.sign(&env.payload).to_vec().into();
    // Response payload for another chaincode than the proposal's.
    let prop = n.tx(10).proposal();
    let payload = ok_payload(prop.proposal_hash(), "audit");
    let mismatched: Bytes = tx::assemble(
        creator,
        &prop,
        payload.clone(),
        vec![
            tx::endorse(n.peer(0, 0), &payload),
            tx::endorse(n.peer(1, 0), &payload),
        ],
        1,
    )
    .expect("creator")
    .encode_to_vec()
    .into();
    let out = validate(&block_of(
        1,
        vec![
            garbage,
            bad_tx,
            bad_proposal,
            no_response,
            env.encode_to_vec().into(),
            mismatched,
        ],
    ));
    assert_eq!(out.codes, vec![Code::BadPayload; 6]);
    // Signed by their creator: ids authenticated (and indexed) even though bad.
    assert_eq!(
        out.tx_ids.iter().map(Option::is_some).collect::<Vec<_>>(),
        vec![false, true, true, true, false, true]
    );
}

fn signed_tx(creator: &ordo_proto::identity::Identity, tx: EndorserTransaction) -> Bytes {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 40);
    let nonce = NONCE
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_be_bytes();
    envelope::create_signed_with_nonce(
        creator,
        CHANNEL,
        HeaderType::EndorserTransaction,
        tx.encode_to_vec().into(),
        1,
        &nonce,
    )
    .0
    .encode_to_vec()
    .into()
}

#[test]
fn unknown_chaincodes_and_namespaces() {
    let n = net();
    let mut b = n.tx(1);
    b.chaincode = "nope".into();
    let unknown = b.build();
    let foreign_ns = n.tx(2).rwset(read("nope", "k", None)).build();
    let out = validate(&block_of(1, vec![unknown, foreign_ns]));
    assert_eq!(out.codes, vec![Code::UnknownChaincode; 2]);
}

#[test]
fn endorsements_replayed_into_another_transaction_fail_the_proposal_hash() {
    let n = net();
    let original = n.tx(1).rwset(write("bank", "k", b"1"));
    let p1 = original.proposal();
    let payload = original.response_payload(&p1);
    let endorsements: Vec<_> = original
        .endorsers
        .iter()
        .map(|e| tx::endorse(e, &payload))
        .collect();
    // Same creator, new nonce: a new tx id, same endorsed payload.
    let p2 = n.tx(2).proposal();
    let replay: Bytes = tx::assemble(n.client(0), &p2, payload.clone(), endorsements.clone(), 1)
        .expect("creator")
        .encode_to_vec()
        .into();
    // Another creator replaying them.
    let mut b = n.tx(1);
    b.creator = n.client(1);
    let p3 = b.proposal();
    let stolen: Bytes = tx::assemble(n.client(1), &p3, payload, endorsements, 1)
        .expect("creator")
        .encode_to_vec()
        .into();
    // Another channel's proposal hash.
    let mut b = n.tx(4);
    b.channel = "other".into();
    let p4 = b.proposal();
    let payload4 = b.response_payload(&p4);
    let p4_here = n.tx(4).proposal();
    let cross: Bytes = tx::assemble(
        n.client(0),
        &p4_here,
        payload4.clone(),
        vec![
            tx::endorse(n.peer(0, 0), &payload4),
            tx::endorse(n.peer(1, 0), &payload4),
        ],
        1,
    )
    .expect("creator")
    .encode_to_vec()
    .into();
    let out = validate(&block_of(1, vec![replay, stolen, cross]));
    assert_eq!(out.codes, vec![Code::BadProposalHash; 3]);
}

#[test]
fn failed_simulations_are_bad_response() {
    let n = net();
    let with_status = |nonce, status| {
        let mut b = n.tx(nonce).rwset(write("bank", "k", b"1"));
        b.status = status;
        b.build()
    };
    let out = validate(&block_of(
        1,
        vec![
            with_status(1, 500),
            with_status(2, 400),
            with_status(3, 0),
            with_status(4, -1),
            with_status(5, 399),
            with_status(6, 200),
        ],
    ));
    assert_eq!(
        out.codes,
        vec![
            Code::BadResponse,
            Code::BadResponse,
            Code::BadResponse,
            Code::BadResponse,
            Code::Valid,
            Code::Valid
        ]
    );
}

#[test]
fn other_channels_and_other_header_types() {
    let n = net();
    let mut b = n.tx(1);
    b.channel = "other".into();
    let other_channel = b.build();
    let message: Bytes = envelope::create_signed_with_nonce(
        n.client(0),
        CHANNEL,
        HeaderType::Message,
        Bytes::from_static(b"hello"),
        1,
        b"m",
    )
    .0
    .encode_to_vec()
    .into();
    // The same MESSAGE with a broken signature, and one by a creator the channel does
    // not know.
    let mut forged = Envelope::decode(message.clone()).expect("decodes");
    let mut sig = forged.signature.to_vec();
    sig[0] ^= 1;
    forged.signature = sig.into();
    let stranger_ca = ed25519_dalek::SigningKey::from_bytes(&[98; 32]);
    let stranger = member(&stranger_ca, "Z", Role::Client, 97, u64::MAX / 2);
    let unknown_creator: Bytes = envelope::create_signed_with_nonce(
        &stranger,
        CHANNEL,
        HeaderType::Message,
        Bytes::from_static(b"hello"),
        1,
        b"z",
    )
    .0
    .encode_to_vec()
    .into();
    let out = validate(&block_of(
        1,
        vec![
            other_channel,
            message,
            forged.encode_to_vec().into(),
            unknown_creator,
        ],
    ));
    // Checks 3 and 4 come before the creator and signature checks: their codes stand.
    assert_eq!(
        out.codes,
        vec![
            Code::WrongChannel,
            Code::UnknownTxType,
            Code::UnknownTxType,
            Code::UnknownTxType
        ]
    );
    // A valid creator's signature authenticates the tx id, so the transaction is indexed
    // (it can be looked up, and its id is taken); a forged or unknown one is not.
    assert_eq!(
        out.tx_ids.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, true, false, false]
    );
}

#[test]
fn malformed_read_write_sets_are_bad_rwset() {
    let n = net();
    let ns = |reads: Vec<KvRead>, writes: Vec<KvWrite>| NsRwSet {
        namespace: "bank".into(),
        reads,
        writes,
        range_reads: vec![],
    };
    let ranged = |start: &str, end: &str, keys: Vec<KvRead>| {
        vec![NsRwSet {
            namespace: "bank".into(),
            range_reads: vec![RangeRead {
                start: start.into(),
                end: end.into(),
                reads: keys,
            }],
            ..Default::default()
        }]
    };
    let at = |k: &str| KvRead {
        key: k.into(),
        version: Some(v(1, 0)),
    };
    let w = |k: &str, val: &'static [u8], del: bool| KvWrite {
        key: k.into(),
        value: Bytes::from_static(val),
        is_delete: del,
    };
    let r = |k: &str| KvRead {
        key: k.into(),
        version: None,
    };
    let sets = vec![
        vec![ns(vec![], vec![w("k", b"1", false), w("k", b"2", false)])],
        vec![ns(vec![r("k"), r("k")], vec![])],
        vec![ns(vec![], vec![w("k", b"1", true)])],
        vec![ns(vec![r("")], vec![])],
        vec![ns(
            vec![],
            vec![w(
                &"x".repeat(crate::validator::MAX_KEY_BYTES + 1),
                b"",
                false,
            )],
        )],
        vec![ns(vec![], vec![]), ns(vec![], vec![])],
        vec![NsRwSet::default()],
        // Ranges: reversed or empty, a key outside, out of order, repeated, without a
        // version, an overlong bound.
        ranged("b", "a", vec![]),
        ranged("a", "a", vec![]),
        ranged("b", "d", vec![at("a")]),
        ranged("a", "", vec![at("c"), at("b")]),
        ranged("a", "", vec![at("b"), at("b")]),
        ranged("a", "", vec![r("b")]),
        ranged(&"x".repeat(crate::validator::MAX_KEY_BYTES + 1), "", vec![]),
    ];
    let txs: Vec<Bytes> = sets
        .into_iter()
        .enumerate()
        .map(|(i, ns_rwsets)| n.tx(i as u64).rwset(TxRwSet { ns_rwsets }).build())
        .collect();
    let count = txs.len();
    let out = validate(&block_of(1, txs));
    assert_eq!(out.codes, vec![Code::BadRwset; count]);
    // The longest allowed key is fine.
    let longest = n
        .tx(99)
        .rwset(write(
            "bank",
            &"x".repeat(crate::validator::MAX_KEY_BYTES),
            b"1",
        ))
        .build();
    assert_eq!(
        validate(&block_of(1, vec![longest])).codes,
        vec![Code::Valid]
    );
}

#[test]
fn endorsing_another_chaincode_version_is_a_version_mismatch() {
    let n = net();
    let mut b = n.tx(1);
    b.version = "0".into();
    assert_eq!(
        validate(&block_of(1, vec![b.build()])).codes,
        vec![Code::ChaincodeVersionMismatch]
    );
}

#[test]
fn a_transaction_endorsed_under_a_superseded_definition_is_refused_with_its_own_code() {
    let n = net();
    // `bank` upgraded: version 2 under sequence 2, the policy now needing all three orgs.
    let mut upgraded = n.config.clone();
    let bank = upgraded
        .chaincodes
        .iter_mut()
        .find(|d| d.name == "bank")
        .expect("bank");
    bank.version = "2".into();
    bank.sequence = 2;
    bank.endorsement_policy = Some(policy::n_out_of(
        3,
        &[("A", Role::Peer), ("B", Role::Peer), ("C", Role::Peer)],
    ));
    let ctx = ValidationContext::new(upgraded, NOW).expect("context");
    let check = |b: &TxBuilder<'_>| {
        validate_block(
            &block_of(1, vec![b.build()]),
            &ctx,
            &State::new(),
            &HashSet::<String>::new(),
        )
        .codes
    };
    // Endorsed under sequence 1 (version 1): superseded, not a mere version mismatch.
    assert_eq!(check(&n.tx(1)), vec![Code::DefinitionSuperseded]);
    // Unstated (0) counts as the first definition: superseded too.
    let mut unstated = n.tx(2);
    unstated.sequence = 0;
    assert_eq!(check(&unstated), vec![Code::DefinitionSuperseded]);
    // Under the new definition: needs all three orgs' endorsements.
    let mut two = n.tx(3);
    two.version = "2".into();
    two.sequence = 2;
    assert_eq!(check(&two), vec![Code::EndorsementPolicyFailure]);
    let three = two.endorsers(vec![n.peer(0, 0), n.peer(1, 0), n.peer(2, 0)]);
    assert_eq!(check(&three), vec![Code::Valid]);
    // The right sequence with the wrong version is still a version mismatch.
    let mut wrong_version = n.tx(4);
    wrong_version.sequence = 2;
    assert_eq!(check(&wrong_version), vec![Code::ChaincodeVersionMismatch]);
}

#[test]
fn a_retired_chaincode_is_unknown_to_invoke_and_to_write() {
    let n = net();
    let mut retired = n.config.clone();
    for d in &mut retired.chaincodes {
        if d.name == "audit" {
            d.retired = true;
            d.sequence = 2;
        }
    }
    let ctx = ValidationContext::new(retired, NOW).expect("context");
    let check = |b: &TxBuilder<'_>| {
        validate_block(
            &block_of(1, vec![b.build()]),
            &ctx,
            &State::new(),
            &HashSet::<String>::new(),
        )
        .codes
    };
    let mut invoke = n.tx(1);
    invoke.chaincode = "audit".into();
    invoke.sequence = 2;
    assert_eq!(check(&invoke), vec![Code::UnknownChaincode]);
    let writes = n.tx(2).rwset(write("audit", "k", b"1"));
    assert_eq!(check(&writes), vec![Code::UnknownChaincode]);
    assert_eq!(check(&n.tx(3)), vec![Code::Valid], "bank is untouched");
}

#[test]
fn events_of_valid_transactions_are_reported() {
    let n = net();
    let ev = |name: &str| ChaincodeEvent {
        name: name.into(),
        payload: Bytes::from_static(b"p"),
    };
    let mut a = n.tx(1).rwset(write("bank", "k", b"1"));
    a.event = Some(ev("first"));
    let mut b = n.tx(2).rwset(read("bank", "k", None));
    b.event = Some(ev("conflicted"));
    let mut c = n.tx(3);
    c.event = Some(ev("third"));
    let out = validate(&block_of(8, vec![a.build(), b.build(), c.build()]));
    assert_eq!(
        out.codes,
        vec![Code::Valid, Code::MvccReadConflict, Code::Valid]
    );
    assert_eq!(
        out.events,
        vec![
            TxEvent {
                tx_index: 0,
                tx_id: out.tx_ids[0].clone().expect("id"),
                event: ev("first")
            },
            TxEvent {
                tx_index: 2,
                tx_id: out.tx_ids[2].clone().expect("id"),
                event: ev("third")
            },
        ]
    );
}

#[test]
fn every_code_fits_in_a_byte() {
    for raw in 0..1024 {
        if let Ok(code) = Code::try_from(raw) {
            assert!(raw <= 255, "{code:?}");
        }
    }
    assert_eq!(Code::NotValidated as i32, 255);
}

#[test]
fn a_proposal_carrying_transient_data_is_a_bad_payload() {
    let n = net();
    let creator = n.client(0);
    let mut invocation = tx::invocation("bank", "invoke", vec![Bytes::from_static(b"arg")]);
    invocation
        .transient
        .insert("secret".into(), Bytes::from_static(b"pin 1234"));
    let prop = tx::Proposal::with_nonce(creator.cert_bytes().clone(), CHANNEL, invocation, b"t1")
        .expect("nonce");
    // Hashed and endorsed over the bytes *with* the transient data, so only the transient
    // check can refuse it.
    let hash = ordo_proto::hash::proposal_hash(prop.tx_id(), CHANNEL, prop.signed_bytes());
    let payload = ok_payload(&hash, "bank");
    let leaked = EndorserTransaction {
        proposal: prop.signed_bytes().clone(),
        response_payload: payload.clone(),
        endorsements: vec![
            tx::endorse(n.peer(0, 0), &payload),
            tx::endorse(n.peer(1, 0), &payload),
        ],
    };
    let (env, _) = envelope::create_signed_with_nonce(
        creator,
        CHANNEL,
        HeaderType::EndorserTransaction,
        leaked.encode_to_vec().into(),
        1,
        b"t1",
    );
    let out = validate(&block_of(1, vec![env.encode_to_vec().into()]));
    assert_eq!(out.codes, vec![Code::BadPayload]);
}

/// A read of `[start, end)` in `bank` that held `keys` (with their versions).
fn range_read(start: &str, end: &str, keys: &[(&str, Version)]) -> RwSetBuilder {
    let mut rw = RwSetBuilder::new();
    rw.range(
        "bank",
        start,
        end,
        keys.iter().map(|(k, ver)| (k.to_string(), *ver)),
    );
    rw
}

#[test]
fn a_range_must_hold_what_it_held_at_simulation() {
    let n = net();
    let mut state = State::new();
    state.insert(key("bank", "acct/a"), v(2, 0));
    state.insert(key("bank", "acct/c"), v(2, 1));
    state.insert(key("bank", "other"), v(2, 2));
    let ctx = n.ctx();
    let none = HashSet::<String>::new();
    let seen = [("acct/a", v(2, 0)), ("acct/c", v(2, 1))];
    let txs = vec![
        // 0: exactly what is committed: fine (and the key outside the range is ignored).
        n.tx(1)
            .rwset(range_read("acct/", "acct0", &seen).build())
            .build(),
        // 1: simulated before acct/c existed: an insert since, a phantom.
        n.tx(2)
            .rwset(range_read("acct/", "acct0", &seen[..1]).build())
            .build(),
        // 2: saw a key that is gone now.
        n.tx(3)
            .rwset(range_read("acct/", "acct0", &[seen[0], seen[1], ("acct/e", v(1, 0))]).build())
            .build(),
        // 3: saw an older version of acct/c.
        n.tx(4)
            .rwset(range_read("acct/", "acct0", &[seen[0], ("acct/c", v(1, 5))]).build())
            .build(),
        // 4: an unbounded range to the end of the namespace sees "other" too.
        n.tx(5)
            .rwset(range_read("acct/", "", &seen).build())
            .build(),
        // 5: a point read that fails wins over the range: MVCC, not phantom.
        n.tx(6)
            .rwset({
                let mut rw = range_read("acct/", "acct0", &seen[..1]);
                rw.read("bank", "other", Some(v(1, 1)));
                rw.build()
            })
            .build(),
    ];
    let out = validate_block(&block_of(3, txs), &ctx, &state, &none);
    assert_eq!(
        out.codes,
        vec![
            Code::Valid,
            Code::PhantomReadConflict,
            Code::PhantomReadConflict,
            Code::PhantomReadConflict,
            Code::PhantomReadConflict,
            Code::MvccReadConflict,
        ]
    );
}

#[test]
fn a_range_written_into_by_an_earlier_valid_transaction_is_a_phantom() {
    let n = net();
    let mut state = State::new();
    state.insert(key("bank", "acct/a"), v(2, 0));
    let ctx = n.ctx();
    let none = HashSet::<String>::new();
    let seen = [("acct/a", v(2, 0))];
    let sums = |nonce| {
        let mut rw = range_read("acct/", "acct0", &seen);
        rw.write("bank", "total", Bytes::from_static(b"1"));
        n.tx(nonce).rwset(rw.build()).build()
    };
    let txs = vec![
        // 0: sums the range: valid.
        sums(1),
        // 1: inserts acct/b (a blind write): valid.
        n.tx(2).rwset(write("bank", "acct/b", b"5")).build(),
        // 2: sums the same range as simulated before tx 1: a phantom in this block.
        sums(3),
        // 3: writes acct0, just past the (exclusive) end of the range: valid.
        n.tx(4).rwset(write("bank", "acct0", b"5")).build(),
        // 4: saw [acct0, acct1) empty, but tx 3 wrote into it: a phantom.
        n.tx(5)
            .rwset(range_read("acct0", "acct1", &[]).build())
            .build(),
        // 5: [acct/, acct/b) ends before the key tx 1 inserted: unaffected.
        n.tx(6)
            .rwset(range_read("acct/", "acct/b", &seen).build())
            .build(),
    ];
    let out = validate_block(&block_of(3, txs), &ctx, &state, &none);
    assert_eq!(
        out.codes,
        vec![
            Code::Valid,
            Code::Valid,
            Code::PhantomReadConflict,
            Code::Valid,
            Code::PhantomReadConflict,
            Code::Valid,
        ]
    );
    // Only the valid transactions' writes are applied.
    let keys: Vec<&str> = out.updates.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(keys, ["total", "acct/b", "acct0"]);
}

/// A successful, empty response payload of `chaincode` version 1 for `proposal_hash`.
fn ok_payload(proposal_hash: &[u8], chaincode: &str) -> Bytes {
    ProposalResponsePayload {
        proposal_hash: Bytes::copy_from_slice(proposal_hash),
        chaincode: chaincode.into(),
        chaincode_version: "1".into(),
        response: Some(ChaincodeResponse {
            status: 200,
            ..Default::default()
        }),
        results: None,
        event: None,
        definition_sequence: 0,
    }
    .encode_to_vec()
    .into()
}
