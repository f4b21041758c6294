//! Config updates, checked by the orderer and then by the peers: a CONFIG_UPDATE envelope
//! goes through the orderer's filters and `process_config_update` (sequence, validity of
//! the whole proposed configuration, consensus type, chaincode lifecycle rules, raft
//! membership steps, the admins' signatures against the policy the change needs); the
//! CONFIG envelope the orderer makes of an accepted update goes through the peers' check
//! (`ordo_proto::config_change::check`), as it would in a block.
//!
//! Input: a mode byte, then bytes. Top bit set: the bytes are the envelope as received.
//! Otherwise they are a payload a fixture member signs (see [`fixture::sign_payload`]).
//! The seeds are payloads of updates the admins approved, so the fuzzer mutates the
//! proposed configuration itself.
//!
//! Invariant: orderers and peers agree — every update the orderer turns into a config
//! envelope, the peers accept, and they read the same proposed configuration from it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use prost::Message;

use ordo_consensus::configtx::process_config_update;
use ordo_consensus::filters;
use ordo_consensus::ChainSupport;
use ordo_ledger::BlockStore;
use ordo_proto::config_change::{check, CurrentConfig};
use ordo_proto::envelope::create_signed_with_nonce;
use ordo_proto::pb::common::{ChannelConfig, ConfigUpdate, HeaderType};

use crate::fixture::{self, members, CHANNEL, NOW_MS, NOW_SECS};

/// The orderer's side of the channel (a ledger holding the genesis block only).
fn support() -> &'static Arc<ChainSupport> {
    static SUPPORT: OnceLock<Arc<ChainSupport>> = OnceLock::new();
    SUPPORT.get_or_init(|| {
        let store = BlockStore::open(fixture::scratch("config_update")).expect("a block store");
        if store.height() == 0 {
            store.append(fixture::genesis()).expect("genesis appended");
        }
        Arc::new(ChainSupport::new(store, members().orderer.clone()).expect("chain support"))
    })
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((mode, rest)) = fixture::split(data) else {
        return;
    };
    let Some(envelope) = fixture::request(mode, rest) else {
        return;
    };
    let support = support();
    let state = support.state();
    let Ok(candidate) = filters::precheck(&state, envelope, NOW_SECS) else {
        return;
    };
    if candidate.header_type() != HeaderType::ConfigUpdate {
        return;
    }
    let Ok((config_envelope, _tx_id)) = process_config_update(support, &candidate, NOW_SECS) else {
        return;
    };
    let current = CurrentConfig {
        config: &state.config,
        msp: &state.msp,
        org_names: &state.org_names,
    };
    let (accepted, _) = check(&current, &config_envelope)
        .unwrap_or_else(|e| panic!("the orderer accepted an update the peers refuse: {e}"));
    let update = ConfigUpdate::decode(candidate.unpacked.data.as_ref()).expect("decoded once");
    let proposed = ChannelConfig::decode(update.config.as_ref()).expect("decoded once");
    assert_eq!(accepted, proposed, "the peers read another configuration");
}

/// Updates both admins approved: a batch timeout change (Admins policy), a new chaincode
/// definition (Lifecycle policy), an org removed; and one approved by org A alone.
pub fn seeds() -> Vec<Vec<u8>> {
    let m = members();
    let updates = [
        fixture::config_update(&fixture::next_config(|c| {
            if let Some(o) = c.orderer.as_mut() {
                o.batch_timeout_ms = 40;
            }
        })),
        fixture::config_update(&fixture::next_config(|c| {
            let mut def = c.chaincodes[1].clone();
            def.name = "kv2".into();
            c.chaincodes.push(def);
        })),
        fixture::config_update(&fixture::next_config(|c| {
            c.orgs.truncate(1);
        })),
        {
            let mut u = fixture::config_update(&fixture::next_config(|_| {}));
            u.signatures.truncate(1);
            u
        },
    ];
    updates
        .iter()
        .enumerate()
        .map(|(i, update)| {
            let (env, _) = create_signed_with_nonce(
                &m.admin_a,
                CHANNEL,
                HeaderType::ConfigUpdate,
                Bytes::from(update.encode_to_vec()),
                NOW_MS,
                &[i as u8; 24],
            );
            [&[(1u8 << 3) | 0b110][..], &env.payload].concat()
        })
        .collect()
}
