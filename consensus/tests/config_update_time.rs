//! The orderer and the peers agree on a config update whose admin certificate is valid at
//! only one of two times: the update's own signed creation time and the orderer's clock.
//! Peers can only check at the former (`ordo_proto::config_change::check`), so the orderer
//! must too; checking at its clock once let the orderers put in force a change that every
//! peer refused as INVALID_CONFIG.

use bytes::Bytes;
use prost::Message;

use ordo_consensus::filters::{precheck, FilterError};
use ordo_consensus::{configtx, ChainSupport};
use ordo_ledger::BlockStore;
use ordo_proto::config;
use ordo_proto::config_change::{self, CurrentConfig};
use ordo_proto::envelope;
use ordo_proto::identity::Enrollment;
use ordo_proto::pb::common::{
    ConfigEnvelope, ConfigSignature, ConfigUpdate, HeaderType, Role, Status,
};
use ordo_testkit::{keys, ChannelBuilder, TestOrg};

/// The orderer's clock in these tests, Unix seconds.
const NOW: u64 = 1_800_000_000;

/// The orderer's and the peers' verdicts on an update stamped `update_secs` and signed
/// by the one admin of the channel, whose certificate is valid from `not_before` to
/// `not_after`.
fn verdicts(not_before: u64, not_after: u64, update_secs: u64) -> (Result<(), Status>, bool) {
    let org = TestOrg::new("A");
    let admin = org.enroll(
        keys::random(),
        &Enrollment::new("A", Role::Admin, "admin").valid(not_before, not_after),
    );
    let submitter = org.member(Role::Client, "client");
    let orderer = org.member(Role::Orderer, "orderer");
    let genesis_config = ChannelBuilder::new("times").org(&org).build();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlockStore::open(&dir.path().join("ledger")).expect("ledger");
    store
        .append(&config::genesis_block(&genesis_config, 1).expect("genesis"))
        .expect("genesis appended");
    let support = ChainSupport::new(store, orderer.clone()).expect("support");

    let mut proposed = support.state().config.clone();
    proposed.sequence += 1;
    if let Some(o) = proposed.orderer.as_mut() {
        o.batch_timeout_ms += 1;
    }
    let config_bytes = Bytes::from(proposed.encode_to_vec());
    let update = ConfigUpdate {
        config: config_bytes.clone(),
        signatures: vec![ConfigSignature {
            signer: admin.cert_bytes().clone(),
            signature: admin.sign(&config_bytes).to_vec().into(),
        }],
    };
    let (update_env, _) = envelope::create_signed(
        &submitter,
        "times",
        HeaderType::ConfigUpdate,
        update.encode_to_vec().into(),
        update_secs * 1000,
    );
    let update_bytes = update_env.encode_to_vec();
    let candidate = precheck(&support.state(), update_env, NOW).expect("passes the filters");
    let orderer_verdict = configtx::process_config_update(&support, &candidate, NOW)
        .map(|_| ())
        .map_err(|e: FilterError| e.status());

    // The CONFIG envelope as an orderer would make it, checked as every peer does.
    let config_env = envelope::create_signed(
        &orderer,
        "times",
        HeaderType::Config,
        ConfigEnvelope {
            config: config_bytes,
            last_update: update_bytes.into(),
        }
        .encode_to_vec()
        .into(),
        NOW * 1000,
    )
    .0
    .encode_to_vec();
    let state = support.state();
    let current = CurrentConfig {
        config: &state.config,
        msp: &state.msp,
        org_names: &state.org_names,
    };
    let peers_accept = config_change::check(&current, &config_env).is_ok();
    (orderer_verdict, peers_accept)
}

fn assert_agree(not_before: u64, not_after: u64, update_secs: u64, accepted: bool) {
    let (orderer, peers) = verdicts(not_before, not_after, update_secs);
    assert_eq!(peers, accepted, "the peers' verdict");
    let expected = if accepted {
        Ok(())
    } else {
        Err(Status::Forbidden)
    };
    assert_eq!(orderer, expected, "the orderer agrees with the peers");
}

#[test]
fn valid_at_both_times_is_accepted() {
    assert_agree(NOW - 3_600, NOW + 3_600, NOW - 60, true);
}

#[test]
fn valid_now_but_not_yet_when_the_update_was_signed_is_refused() {
    assert_agree(NOW - 10, NOW + 3_600, NOW - 60, false);
}

#[test]
fn expired_by_the_update_time_though_valid_now_is_refused() {
    assert_agree(NOW - 3_600, NOW + 30, NOW + 60, false);
}

#[test]
fn valid_when_signed_though_not_yet_now_is_accepted() {
    assert_agree(NOW + 30, NOW + 3_600, NOW + 60, true);
}

#[test]
fn valid_when_signed_though_expired_now_is_accepted() {
    assert_agree(NOW - 3_600, NOW - 30, NOW - 60, true);
}
