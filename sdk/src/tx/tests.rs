use super::*;
use ordo_proto::cert;
use ordo_proto::crypto;
use ordo_proto::identity::Enrollment;
use ordo_proto::pb::common::Role;

fn member(org: &str, role: Role) -> Identity {
    let ca = crypto::generate_signing_key();
    Identity::enroll(
        &ca,
        crypto::generate_signing_key(),
        &Enrollment::new(org, role, "m"),
    )
}

fn sample() -> (Identity, Identity, Proposal, Bytes) {
    let client = member("A", Role::Client);
    let peer = member("B", Role::Peer);
    let proposal = Proposal::with_nonce(
        client.cert_bytes().clone(),
        "ch",
        invocation("bank", "transfer", vec![Bytes::from_static(b"x")]),
        b"nonce-1",
    )
    .expect("nonce ok");
    let mut rw = RwSetBuilder::new();
    rw.read("bank", "x", None)
        .write("bank", "x", Bytes::from_static(b"1"));
    let payload = response_payload(&proposal, Simulation::succeeded("1", rw.build()));
    (client, peer, proposal, payload)
}

#[test]
fn assembled_envelope_carries_the_proposal_tx_id_and_hash() {
    let (client, peer, proposal, payload) = sample();
    assert_eq!(
        proposal.tx_id(),
        hash::tx_id(b"nonce-1", client.cert_bytes())
    );
    let e = endorse(&peer, &payload);
    let env =
        assemble(&client, &proposal, payload.clone(), vec![e.clone()], 5).expect("creator matches");
    let unpacked = envelope::unpack(&env).expect("sane header");
    assert_eq!(unpacked.header.tx_id, proposal.tx_id());
    assert_eq!(unpacked.header_type, HeaderType::EndorserTransaction);
    let tx = EndorserTransaction::decode(unpacked.data).expect("decodes");
    assert_eq!(tx.proposal, *proposal.proposal_bytes());
    assert_eq!(tx.endorsements, vec![e.clone()]);
    let prp = ProposalResponsePayload::decode(tx.response_payload.clone()).expect("decodes");
    assert_eq!(
        prp.proposal_hash.as_ref(),
        hash::proposal_hash(proposal.tx_id(), "ch", &tx.proposal).as_slice()
    );
    assert_eq!(prp.chaincode, "bank");
    // The endorsement signs the exact response payload bytes.
    let (_, body) = cert::decode(&e.endorser).expect("cert");
    let key = crypto::parse_public_key(&body.public_key).expect("key");
    crypto::verify(&key, &tx.response_payload, &e.signature).expect("verifies");
    // The envelope signature is the creator's over the payload bytes.
    let (_, body) = cert::decode(client.cert_bytes()).expect("cert");
    let key = crypto::parse_public_key(&body.public_key).expect("key");
    crypto::verify(&key, &env.payload, &env.signature).expect("verifies");
}

#[test]
fn a_known_rwset_is_endorsed_by_every_endorser_and_signed_by_the_creator() {
    let (client, peer, proposal, payload) = sample();
    let other = member("B", Role::Peer);
    let mut rw = RwSetBuilder::new();
    rw.read("bank", "x", None)
        .write("bank", "x", Bytes::from_static(b"1"));
    let env = endorse_known(&client, &proposal, "1", rw.build(), [&peer, &other])
        .expect("creator matches");
    let unpacked = envelope::unpack(&env).expect("sane header");
    assert_eq!(unpacked.header.tx_id, proposal.tx_id());
    let tx = EndorserTransaction::decode(unpacked.data).expect("decodes");
    // The same bytes an endorser that simulated it would have signed.
    assert_eq!(tx.response_payload, payload);
    let prp = ProposalResponsePayload::decode(tx.response_payload.clone()).expect("decodes");
    assert_eq!(prp.response.map(|r| r.status), Some(200));
    assert_eq!(prp.chaincode_version, "1");
    let signers: Vec<&Bytes> = tx.endorsements.iter().map(|e| &e.endorser).collect();
    assert_eq!(signers, vec![peer.cert_bytes(), other.cert_bytes()]);
    for e in &tx.endorsements {
        let (_, body) = cert::decode(&e.endorser).expect("cert");
        let key = crypto::parse_public_key(&body.public_key).expect("key");
        crypto::verify(&key, &tx.response_payload, &e.signature).expect("verifies");
    }
    let stranger = member("A", Role::Client);
    assert!(
        endorse_known(&stranger, &proposal, "1", TxRwSet::default(), [&peer]).is_err(),
        "only the proposal's creator may sign its envelope"
    );
}

#[test]
fn offline_signing_gives_the_same_envelope() {
    let (client, peer, proposal, payload) = sample();
    let e = endorse(&peer, &payload);
    let env = assemble(&client, &proposal, payload.clone(), vec![e.clone()], 5).expect("ok");
    let unsigned = transaction_payload(&proposal, payload, vec![e], 5);
    let offline = attach_signature(unsigned.clone(), &client.sign(&unsigned));
    assert_eq!(offline, env);
}

#[test]
fn a_proposal_received_from_parts_is_the_same_proposal() {
    let (_, _, proposal, _) = sample();
    let again = Proposal::from_parts(
        "ch",
        proposal.creator().clone(),
        proposal.nonce().clone(),
        proposal.proposal_bytes().clone(),
    )
    .expect("decodes");
    assert_eq!(again, proposal);
    assert!(matches!(
        Proposal::from_parts(
            "ch",
            Bytes::new(),
            Bytes::from_static(b"n"),
            Bytes::from_static(b"\xff\xff")
        ),
        Err(TxError::Malformed { .. })
    ));
}

#[test]
fn another_signer_or_a_bad_nonce_is_refused() {
    let (_, peer, proposal, payload) = sample();
    assert_eq!(
        assemble(&peer, &proposal, payload, vec![], 5),
        Err(TxError::CreatorMismatch)
    );
    let inv = invocation("bank", "f", vec![]);
    assert_eq!(
        Proposal::with_nonce(Bytes::new(), "ch", inv.clone(), b""),
        Err(TxError::BadNonce(0))
    );
    assert_eq!(
        Proposal::with_nonce(Bytes::new(), "ch", inv, &[0u8; 65]),
        Err(TxError::BadNonce(65))
    );
}

#[test]
fn random_nonces_differ() {
    let client = member("A", Role::Client);
    let inv = invocation("bank", "f", vec![]);
    let a = Proposal::new(&client, "ch", inv.clone());
    let b = Proposal::new(&client, "ch", inv);
    assert_eq!(a.nonce().len(), NONCE_LEN);
    assert_ne!(a.tx_id(), b.tx_id());
}

#[test]
fn rwset_builder_is_canonical() {
    let v = |b, t| Some(Version { block: b, tx: t });
    let mut one = RwSetBuilder::new();
    one.read("b", "k2", v(1, 0))
        .write("a", "z", Bytes::from_static(b"1"))
        .read("b", "k1", None)
        .read("b", "k2", v(9, 9))
        .write("a", "z", Bytes::from_static(b"2"))
        .delete("a", "y");
    let mut two = RwSetBuilder::new();
    two.delete("a", "y")
        .read("b", "k1", None)
        .write("a", "z", Bytes::from_static(b"2"))
        .read("b", "k2", v(1, 0));
    let set = one.build();
    assert_eq!(set, two.build());
    assert_eq!(set.encode_to_vec(), two.build().encode_to_vec());
    let names: Vec<&str> = set.ns_rwsets.iter().map(|n| n.namespace.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        set.ns_rwsets[0].writes,
        vec![
            KvWrite {
                key: "y".into(),
                value: Bytes::new(),
                is_delete: true
            },
            KvWrite {
                key: "z".into(),
                value: Bytes::from_static(b"2"),
                is_delete: false
            },
        ]
    );
    assert_eq!(set.ns_rwsets[1].reads[1].version, v(1, 0));
}

#[test]
fn transient_data_is_signed_but_never_in_the_transaction() {
    let client = member("A", Role::Client);
    let mut call = invocation("bank", "open", vec![Bytes::from_static(b"alice")]);
    call.transient
        .insert("pin".into(), Bytes::from_static(b"1234"));
    call.transient
        .insert("salt".into(), Bytes::from_static(b"\x00\x01"));
    let proposal = Proposal::with_nonce(client.cert_bytes().clone(), "ch", call.clone(), b"n-t")
        .expect("nonce ok");
    // The signed bytes carry it; the transaction's bytes are those without it.
    assert_eq!(
        ChaincodeProposal::decode(proposal.signed_bytes().clone())
            .expect("decodes")
            .transient,
        call.transient
    );
    let public = ChaincodeProposal::decode(proposal.proposal_bytes().clone()).expect("decodes");
    assert!(public.transient.is_empty());
    assert_eq!(public.args, call.args);
    assert_eq!(
        strip_transient(proposal.signed_bytes()).expect("strips"),
        *proposal.proposal_bytes()
    );
    // An endorser receiving the signed bytes derives the same transaction and hash.
    let received = Proposal::from_parts(
        "ch",
        proposal.creator().clone(),
        proposal.nonce().clone(),
        proposal.signed_bytes().clone(),
    )
    .expect("decodes");
    assert_eq!(received, proposal);
    let payload = response_payload(&received, Simulation::succeeded("1", TxRwSet::default()));
    let data = transaction_data(&received, payload, vec![]);
    let tx = EndorserTransaction::decode(data).expect("decodes");
    assert!(ChaincodeProposal::decode(tx.proposal)
        .expect("decodes")
        .transient
        .is_empty());
}

#[test]
fn stripping_keeps_other_bytes_exactly_and_refuses_garbage() {
    // Fields out of canonical order, with transient entries between them: the others
    // are kept byte for byte, in their order.
    let chaincode = b"\x0a\x04bank".as_slice();
    let entry = b"\x22\x07\x0a\x01k\x12\x02vv".as_slice();
    let function = b"\x12\x04open".as_slice();
    let mixed = Bytes::from([function, entry, chaincode, entry].concat());
    assert_eq!(
        strip_transient(&mixed).expect("strips"),
        Bytes::from([function, chaincode].concat())
    );
    let plain = Bytes::from([chaincode, function].concat());
    assert_eq!(strip_transient(&plain).expect("strips"), plain);
    assert!(matches!(
        strip_transient(&Bytes::from_static(b"\x22\x09\x0a")),
        Err(TxError::Malformed { .. })
    ));
}
