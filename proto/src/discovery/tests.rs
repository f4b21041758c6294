//! Every refusal of the module docs' table, and that an untouched announcement passes.

use super::*;
use crate::crypto::generate_signing_key;
use crate::identity::Enrollment;
use ed25519_dalek::SigningKey;

const NOW: u64 = 1_800_000_000_000;
const TTL: u64 = 20_000;

struct Orgs {
    ca_a: SigningKey,
    msp: Msp,
}

fn orgs() -> Orgs {
    let ca_a = generate_signing_key();
    let ca_b = generate_signing_key();
    let msp = Msp::new([
        ("BankA".to_string(), vec![ca_a.verifying_key().to_bytes()]),
        ("BankB".to_string(), vec![ca_b.verifying_key().to_bytes()]),
    ])
    .expect("msp");
    Orgs { ca_a, msp }
}

fn member(ca: &SigningKey, org: &str, role: Role, name: &str) -> Identity {
    Identity::enroll(
        ca,
        generate_signing_key(),
        &Enrollment::new(org, role, name),
    )
}

fn info(identity: &Identity) -> PeerInfo {
    PeerInfo {
        channel_id: "payments".into(),
        endpoint: "peer0.banka.example:7051".into(),
        certificate: identity.cert_bytes().clone(),
        chaincodes: vec!["bank".into(), "kv".into()],
        height: 7,
        issued_ms: NOW - 1_000,
    }
}

fn check(o: &Orgs, signed: &SignedPeerInfo) -> Result<VerifiedPeer, AnnouncementError> {
    verify(signed, "payments", &o.msp, NOW, TTL)
}

#[test]
fn a_peers_own_announcement_passes_with_its_org() {
    let o = orgs();
    let peer = member(&o.ca_a, "BankA", Role::Peer, "peer0");
    let verified = check(&o, &sign(&peer, &info(&peer))).expect("valid");
    assert_eq!(verified.cert.org.as_ref(), "BankA");
    assert_eq!(verified.info.chaincodes, vec!["bank", "kv"]);
}

#[test]
fn each_check_refuses_with_its_own_error() {
    let o = orgs();
    let peer = member(&o.ca_a, "BankA", Role::Peer, "peer0");
    let signed_with = |f: &dyn Fn(&mut PeerInfo)| {
        let mut i = info(&peer);
        f(&mut i);
        sign(&peer, &i)
    };
    let garbage = SignedPeerInfo {
        info: Bytes::from_static(b"\xff\xff\xff"),
        signature: Bytes::new(),
    };
    assert!(matches!(
        check(&o, &garbage),
        Err(AnnouncementError::Malformed(_))
    ));
    let huge = signed_with(&|i| i.chaincodes = vec!["c".repeat(100); 200]);
    assert!(matches!(
        check(&o, &huge),
        Err(AnnouncementError::Malformed(_))
    ));
    let many = signed_with(&|i| {
        i.chaincodes = (0..=MAX_ANNOUNCED_CHAINCODES)
            .map(|n| n.to_string())
            .collect()
    });
    assert!(matches!(
        check(&o, &many),
        Err(AnnouncementError::Malformed(_))
    ));
    let empty_name = signed_with(&|i| i.chaincodes = vec![String::new()]);
    assert!(matches!(
        check(&o, &empty_name),
        Err(AnnouncementError::Malformed(_))
    ));
    let no_port = signed_with(&|i| i.endpoint = "peer0".into());
    assert!(matches!(
        check(&o, &no_port),
        Err(AnnouncementError::Malformed(_))
    ));
    let other = signed_with(&|i| i.channel_id = "other".into());
    assert!(matches!(
        check(&o, &other),
        Err(AnnouncementError::WrongChannel { .. })
    ));
    let ahead = signed_with(&|i| i.issued_ms = NOW + MAX_FUTURE_SKEW_MS + 1);
    assert!(matches!(
        check(&o, &ahead),
        Err(AnnouncementError::FromTheFuture { .. })
    ));
    let slightly_ahead = signed_with(&|i| i.issued_ms = NOW + MAX_FUTURE_SKEW_MS);
    assert!(check(&o, &slightly_ahead).is_ok(), "within the skew");
    let old = signed_with(&|i| i.issued_ms = NOW - TTL - 1);
    assert!(matches!(
        check(&o, &old),
        Err(AnnouncementError::Expired { .. })
    ));
}

#[test]
fn forged_announcements_are_refused() {
    let o = orgs();
    let peer = member(&o.ca_a, "BankA", Role::Peer, "peer0");
    // A certificate from a CA the channel does not know, claiming BankA.
    let stranger = member(&generate_signing_key(), "BankA", Role::Peer, "mallory");
    assert!(matches!(
        check(&o, &sign(&stranger, &info(&stranger))),
        Err(AnnouncementError::Certificate(_))
    ));
    // A member that is not a peer.
    let client = member(&o.ca_a, "BankA", Role::Client, "app");
    assert!(matches!(
        check(&o, &sign(&client, &info(&client))),
        Err(AnnouncementError::NotAPeer { .. })
    ));
    // The peer's certificate, signed by someone else.
    let other_peer = member(&o.ca_a, "BankA", Role::Peer, "peer1");
    assert!(matches!(
        check(&o, &sign(&other_peer, &info(&peer))),
        Err(AnnouncementError::BadSignature { .. })
    ));
    // A genuine announcement with one byte changed (another endpoint).
    let mut tampered = sign(&peer, &info(&peer));
    let mut changed = info(&peer);
    changed.endpoint = "evil.example:7051".into();
    tampered.info = changed.encode_to_vec().into();
    assert!(matches!(
        check(&o, &tampered),
        Err(AnnouncementError::BadSignature { .. })
    ));
    // A signature over the bare info, without the domain prefix (what any other signature
    // of the peer's over those bytes would be).
    let bytes = info(&peer).encode_to_vec();
    let undomained = SignedPeerInfo {
        signature: Bytes::copy_from_slice(&peer.sign(&bytes)),
        info: bytes.into(),
    };
    assert!(matches!(
        check(&o, &undomained),
        Err(AnnouncementError::BadSignature { .. })
    ));
}
