//! Peer announcements (`ordo.discovery.Discovery/Announce`) as the in-process peer's
//! discovery takes them: decoding, bounds, channel, freshness, the certificate (a peer of
//! a channel org) and the signature (`ordo_proto::discovery::verify`), then the membership
//! table (newer replaces older, one entry per identity, a bounded table) and the endorser
//! list the gateway reads from it.
//!
//! Input: up to 32 length-prefixed announcements. A piece's first byte is a mode: with
//! bit 0 set, the rest is a `PeerInfo` that the harness stamps with the current time and
//! signs as the fixture peer (so the table itself is fuzzed); otherwise the rest is a
//! `SignedPeerInfo` as received.
//!
//! Invariants: the table never holds more than `MAX_PEERS_PER_CHANNEL` announcements, and
//! every announcement it holds verifies on its own.

use std::sync::OnceLock;
use std::time::Duration;

use prost::Message;

use ordo_peer::node::discovery::membership::MAX_PEERS_PER_CHANNEL;
use ordo_peer::node::discovery::{Discovery, DiscoverySettings};
use ordo_peer::node::endorser::RuntimeBindings;
use ordo_proto::discovery::{sign, verify};
use ordo_proto::pb::discovery::{PeerInfo, SignedPeerInfo};

use crate::fixture::{self, members, CHANNEL, NOW_MS};
use crate::nodes::peer;

/// How long announcements count (the peer's default).
const TTL_MS: u64 = 20_000;

/// Announcements per input at most.
const MAX_ANNOUNCEMENTS: usize = 32;

fn discovery() -> &'static Discovery {
    static DISCOVERY: OnceLock<Discovery> = OnceLock::new();
    DISCOVERY.get_or_init(|| {
        Discovery::new(
            DiscoverySettings {
                enabled: true,
                endpoint: Some("127.0.0.1:7051".into()),
                interval: Duration::from_secs(3),
                ttl_ms: TTL_MS,
            },
            members().peer.clone(),
            RuntimeBindings::new(Default::default()),
        )
    })
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let channel = peer().channels.get(CHANNEL).expect("the fixture channel");
    let discovery = discovery();
    for piece in fixture::pieces(data, MAX_ANNOUNCEMENTS) {
        let Some((mode, rest)) = fixture::split(piece) else {
            continue;
        };
        let signed = if mode & 1 != 0 {
            let Ok(mut info) = PeerInfo::decode(rest) else {
                continue;
            };
            info.issued_ms = ordo_proto::now_ms();
            sign(&members().peer, &info)
        } else {
            let Ok(s) = SignedPeerInfo::decode(rest) else {
                continue;
            };
            s
        };
        let _ = discovery.accept(&channel, &signed);
    }
    let held = discovery.announcements(CHANNEL);
    assert!(held.len() <= MAX_PEERS_PER_CHANNEL, "an unbounded table");
    let status = channel.status();
    let msp = status.msp.as_ref().expect("the fixture channel's MSP");
    for a in &held {
        // Held announcements may have expired since (the table expires them on tidy).
        if let Err(e) = verify(a, CHANNEL, msp, ordo_proto::now_ms(), u64::MAX / 4) {
            panic!("the table holds an announcement that does not verify: {e}");
        }
    }
    let _ = discovery.endorsers(CHANNEL, "bank");
}

/// The fixture peer's announcement (to be restamped), and one as received (stale).
pub fn seeds() -> Vec<Vec<u8>> {
    let info = PeerInfo {
        channel_id: CHANNEL.into(),
        endpoint: "peer0.a:7051".into(),
        certificate: members().peer.cert_bytes().clone(),
        chaincodes: vec!["bank".into(), "kv".into()],
        height: 1,
        issued_ms: NOW_MS,
    };
    let signed = sign(&members().peer, &info);
    vec![
        fixture::join_pieces([[&[1u8][..], &info.encode_to_vec()].concat()]),
        fixture::join_pieces([
            [&[0u8][..], &signed.encode_to_vec()].concat(),
            [&[1u8][..], &info.encode_to_vec()].concat(),
        ]),
    ]
}
