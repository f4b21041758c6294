//! The engines' transcript fixtures, from the shared test kit: one org whose keys come
//! from fixed seeds, a channel genesis block, envelopes named by a number — the same
//! bytes on every run, so a transcript names exact tx ids and block hashes.

use bytes::Bytes;

use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, Role};
use ordo_testkit::{envelopes, keys, ChannelBuilder, TestOrg};

/// The channel of every fixture.
pub(crate) const CHANNEL: &str = "engine-test";

/// Org "A", its CA from seed byte 1.
fn org() -> TestOrg {
    TestOrg::with_ca("A", keys::fixed(1))
}

/// The channel's genesis block: one org, raft consenters `1..=size` (keys from seed bytes
/// 11, 12, ...), blocks of at most `max_count` envelopes or 4 KiB.
pub(crate) fn genesis(size: u64, max_count: u32) -> Block {
    let org = org();
    let consenters = (1..=size)
        .map(|n| {
            let name = format!("orderer{n}");
            let (_, entry) = org.consenter(&name, &format!("test:{n}"), keys::fixed(10 + n as u8));
            entry
        })
        .collect();
    ChannelBuilder::new(CHANNEL)
        .org(&org)
        .consensus("raft")
        .max_count(max_count)
        .batch_bytes(4096, 4096)
        .consenters(consenters)
        .genesis(1)
}

/// The channel's client (key from seed byte 2).
pub(crate) fn client() -> Identity {
    org().member_with_key(Role::Client, "client", keys::fixed(2))
}

/// An envelope whose tx id the test names by `n`.
pub(crate) fn envelope(n: u64, size: usize) -> (Bytes, String) {
    envelopes::numbered(&client(), CHANNEL, n, size)
}
