//! One channel's table of verified announcements: a pure structure (time is an argument),
//! so its rules are tested without a clock or a network.
//!
//! Rules:
//! - one entry per peer identity (its certificate's hash); a later announcement
//!   (`issued_ms` greater) replaces an earlier one, an earlier or equal one is ignored, so
//!   relays arriving out of order never roll a peer back;
//! - an entry counts until its `issued_ms` plus the TTL, by the signer's clock (never the
//!   time it arrived: anchors relaying each other's copies must not keep a dead peer
//!   alive);
//! - at most [`MAX_PEERS_PER_CHANNEL`] identities; a new one beyond that is refused
//!   while the old ones live;
//! - an announcement byte-identical to the one held is recognised without verifying it
//!   again (every anchor answers every round with the whole table).

use std::collections::HashMap;

use ordo_proto::discovery::VerifiedPeer;
use ordo_proto::hash::Hash;
use ordo_proto::pb::discovery::SignedPeerInfo;

/// Most peer identities one channel's table holds.
pub const MAX_PEERS_PER_CHANNEL: usize = 1024;

/// What offering an announcement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// A peer not known before.
    New,
    /// A newer announcement of a known peer.
    Updated,
    /// Not newer than the one held: ignored.
    Stale,
    /// The table is full of live peers.
    Full,
}

/// Verified announcements of one channel, by the signer's identity.
#[derive(Default)]
pub struct Membership {
    entries: HashMap<Hash, VerifiedPeer>,
}

impl Membership {
    /// Whether `signed` is exactly the announcement held already (no need to verify it).
    pub fn holds(&self, signed: &SignedPeerInfo) -> bool {
        self.entries.values().any(|p| p.signed == *signed)
    }

    /// Offers a verified announcement (module rules).
    pub fn offer(&mut self, peer: VerifiedPeer, now_ms: u64, ttl_ms: u64) -> Offered {
        let key = peer.cert.cert_hash;
        if let Some(held) = self.entries.get(&key) {
            if held.info.issued_ms >= peer.info.issued_ms {
                return Offered::Stale;
            }
            self.entries.insert(key, peer);
            return Offered::Updated;
        }
        if self.entries.len() >= MAX_PEERS_PER_CHANNEL {
            self.expire(now_ms, ttl_ms);
            if self.entries.len() >= MAX_PEERS_PER_CHANNEL {
                return Offered::Full;
            }
        }
        self.entries.insert(key, peer);
        Offered::New
    }

    /// Drops every entry older than the TTL.
    pub fn expire(&mut self, now_ms: u64, ttl_ms: u64) {
        self.entries
            .retain(|_, p| live(p.info.issued_ms, now_ms, ttl_ms));
    }

    /// Keeps only the entries `keep` accepts (after a configuration change: those whose
    /// certificate the new configuration still admits).
    pub fn retain(&mut self, mut keep: impl FnMut(&VerifiedPeer) -> bool) {
        self.entries.retain(|_, p| keep(p));
    }

    /// The live entries, by endpoint then identity (a stable order for answers and logs).
    pub fn live(&self, now_ms: u64, ttl_ms: u64) -> Vec<&VerifiedPeer> {
        let mut peers: Vec<&VerifiedPeer> = self
            .entries
            .values()
            .filter(|p| live(p.info.issued_ms, now_ms, ttl_ms))
            .collect();
        peers.sort_by(|a, b| {
            (&a.info.endpoint, a.cert.cert_hash).cmp(&(&b.info.endpoint, b.cert.cert_hash))
        });
        peers
    }

    /// Entries held, live or not yet expired away.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn live(issued_ms: u64, now_ms: u64, ttl_ms: u64) -> bool {
    issued_ms.saturating_add(ttl_ms) >= now_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_proto::crypto::generate_signing_key;
    use ordo_proto::discovery::{sign, verify};
    use ordo_proto::identity::{Enrollment, Identity};
    use ordo_proto::pb::common::Role;
    use ordo_proto::pb::discovery::PeerInfo;

    const TTL: u64 = 20_000;

    struct Org {
        ca: ed25519_dalek::SigningKey,
        msp: ordo_proto::cert::Msp,
    }

    fn org() -> Org {
        let ca = generate_signing_key();
        let msp = ordo_proto::cert::Msp::new([(
            "BankA".to_string(),
            vec![ca.verifying_key().to_bytes()],
        )])
        .expect("msp");
        Org { ca, msp }
    }

    fn peer(o: &Org, name: &str) -> Identity {
        Identity::enroll(
            &o.ca,
            generate_signing_key(),
            &Enrollment::new("BankA", Role::Peer, name),
        )
    }

    fn announce(o: &Org, who: &Identity, endpoint: &str, issued_ms: u64) -> VerifiedPeer {
        let info = PeerInfo {
            channel_id: "c".into(),
            endpoint: endpoint.into(),
            certificate: who.cert_bytes().clone(),
            chaincodes: vec!["bank".into()],
            height: 1,
            issued_ms,
        };
        verify(&sign(who, &info), "c", &o.msp, issued_ms, TTL).expect("valid")
    }

    #[test]
    fn a_later_announcement_replaces_an_earlier_one_and_never_the_reverse() {
        let o = org();
        let p = peer(&o, "p0");
        let mut m = Membership::default();
        assert_eq!(
            m.offer(announce(&o, &p, "a:1", 1_000), 1_000, TTL),
            Offered::New
        );
        assert_eq!(
            m.offer(announce(&o, &p, "b:1", 2_000), 2_000, TTL),
            Offered::Updated
        );
        // A relay of the older one arriving late does not roll the peer back.
        let late = announce(&o, &p, "a:1", 1_000);
        assert_eq!(m.offer(late.clone(), 2_500, TTL), Offered::Stale);
        let live = m.live(2_500, TTL);
        assert_eq!(live.len(), 1, "one entry per identity");
        assert_eq!(live[0].info.endpoint, "b:1");
        assert!(m.holds(&live[0].signed.clone()));
        assert!(!m.holds(&late.signed));
    }

    #[test]
    fn entries_expire_by_the_signers_time_however_often_they_are_relayed() {
        let o = org();
        let (p0, p1) = (peer(&o, "p0"), peer(&o, "p1"));
        let mut m = Membership::default();
        let first = announce(&o, &p0, "a:1", 1_000);
        m.offer(first.clone(), 1_000, TTL);
        m.offer(announce(&o, &p1, "b:1", 15_000), 15_000, TTL);
        // Relayed again and again: still the same signing time.
        for now in [5_000, 10_000, 20_000] {
            assert_eq!(m.offer(first.clone(), now, TTL), Offered::Stale);
        }
        let names = |m: &Membership, now| -> Vec<String> {
            m.live(now, TTL)
                .iter()
                .map(|p| p.info.endpoint.clone())
                .collect()
        };
        assert_eq!(names(&m, 21_000), vec!["a:1", "b:1"]);
        assert_eq!(names(&m, 21_001), vec!["b:1"], "p0 is silent past its TTL");
        assert_eq!(m.len(), 2, "live() hides, expire() drops");
        m.expire(21_001, TTL);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_full_table_refuses_new_identities_until_some_expire() {
        let o = org();
        let mut m = Membership::default();
        for i in 0..MAX_PEERS_PER_CHANNEL {
            let p = peer(&o, &format!("p{i}"));
            assert_eq!(
                m.offer(announce(&o, &p, "a:1", 1_000), 1_000, TTL),
                Offered::New
            );
        }
        let late = peer(&o, "late");
        assert_eq!(
            m.offer(announce(&o, &late, "z:1", 2_000), 2_000, TTL),
            Offered::Full
        );
        assert_eq!(
            m.offer(announce(&o, &late, "z:1", 30_000), 30_000, TTL),
            Offered::New,
            "the old ones expired meanwhile"
        );
        assert_eq!(m.len(), 1);
    }
}
