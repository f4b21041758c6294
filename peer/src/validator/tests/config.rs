//! Config blocks: accepted when they follow from the configuration in force, and a
//! config envelope anywhere else is INVALID_CONFIG.

use bytes::Bytes;
use prost::Message;

use ordo_proto::config;
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{
    ChaincodeDefinition, ChannelConfig, ConfigEnvelope, ConfigSignature, ConfigUpdate, HeaderType,
    Role,
};
use ordo_proto::policy::build as policy;

use super::fixture::*;
use crate::validator::{validate_block, TxValidationCode as Code, ValidationContext};

/// The genesis configuration plus a `kv` chaincode, at sequence 1.
pub(crate) fn next_config() -> ChannelConfig {
    let mut cfg = net().config.clone();
    cfg.sequence = 1;
    cfg.chaincodes.push(ChaincodeDefinition {
        name: "kv".into(),
        version: "1".into(),
        endorsement_policy: Some(policy::any_member(&[], &[Role::Peer])),
        runtime: "builtin:kv".into(),
        sequence: 1,
        retired: false,
    });
    cfg
}

/// A config block as the orderer makes it: the CONFIG_UPDATE (by admin A, proposing
/// `proposed`, signed by `signers`) inside a CONFIG envelope carrying `config`.
pub(crate) fn config_block(
    number: u64,
    proposed: &ChannelConfig,
    config: &ChannelConfig,
    signers: &[&Identity],
) -> ordo_proto::Block {
    let n = net();
    let proposed_bytes: Bytes = proposed.encode_to_vec().into();
    let update = ConfigUpdate {
        config: proposed_bytes.clone(),
        signatures: signers
            .iter()
            .map(|s| ConfigSignature {
                signer: s.cert_bytes().clone(),
                signature: s.sign(&proposed_bytes).to_vec().into(),
            })
            .collect(),
    };
    let (update_env, _) = envelope::create_signed_with_nonce(
        &n.orgs[0].admin,
        CHANNEL,
        HeaderType::ConfigUpdate,
        update.encode_to_vec().into(),
        1,
        b"update",
    );
    let ce = ConfigEnvelope {
        config: config.encode_to_vec().into(),
        last_update: update_env.encode_to_vec().into(),
    };
    let (env, _) = envelope::create_signed_with_nonce(
        &n.orgs[0].orderer,
        &config.channel_id,
        HeaderType::Config,
        ce.encode_to_vec().into(),
        1,
        b"config",
    );
    block_of(number, vec![env.encode_to_vec().into()])
}

#[test]
fn the_genesis_block_is_a_valid_config_block() {
    let n = net();
    let genesis = config::genesis_block(&n.config, 1).expect("genesis");
    let out = validate(&genesis);
    assert_eq!(out.codes, vec![Code::Valid]);
    assert_eq!(out.config.as_ref(), Some(&n.config));
    assert!(out.tx_ids[0].is_some());
    assert!(out.updates.is_empty());
}

#[test]
fn a_config_change_signed_by_a_majority_of_admins_is_valid() {
    let n = net();
    let cfg = next_config();
    let block = config_block(4, &cfg, &cfg, &[&n.orgs[0].admin, &n.orgs[2].admin]);
    let out = validate(&block);
    assert_eq!(out.codes, vec![Code::Valid]);
    assert_eq!(out.codes_bytes(), vec![0]);
    assert_eq!(out.config.as_ref(), Some(&cfg));

    // From the next block on, the new chaincode exists.
    let mut t = n.tx(1);
    t.chaincode = "kv".into();
    t.endorsers = vec![n.peer(1, 0)];
    let tx_block = block_of(5, vec![t.build()]);
    assert_eq!(validate(&tx_block).codes, vec![Code::UnknownChaincode]);
    let new_ctx = ValidationContext::new(cfg, NOW).expect("ctx");
    let out = validate_block(
        &tx_block,
        &new_ctx,
        &State::new(),
        &std::collections::HashSet::<String>::new(),
    );
    assert_eq!(out.codes, vec![Code::Valid]);
}

#[test]
fn config_changes_that_do_not_follow_are_invalid() {
    let n = net();
    let admins = [&n.orgs[0].admin, &n.orgs[1].admin];
    let cfg = next_config();

    let one_admin = config_block(4, &cfg, &cfg, &[&n.orgs[0].admin]);
    let clients = config_block(4, &cfg, &cfg, &[n.client(0), n.client(1)]);
    let mut skipped = cfg.clone();
    skipped.sequence = 2;
    let skips = config_block(4, &skipped, &skipped, &admins);
    let mut swapped = cfg.clone();
    swapped.chaincodes.pop();
    let swapped_block = config_block(4, &cfg, &swapped, &admins);
    let mut other = cfg.clone();
    other.channel_id = "other".into();
    let other_channel = config_block(4, &other, &other, &admins);
    // A genesis block later in the chain has no update behind it.
    let genesis_again = {
        let mut g = config::genesis_block(&cfg_with_sequence(0), 1).expect("genesis");
        if let Some(h) = g.header.as_mut() {
            h.number = 4;
        }
        g
    };
    for (name, block) in [
        ("one admin", one_admin),
        ("clients", clients),
        ("skipped sequence", skips),
        ("config differs from update", swapped_block),
        ("other channel", other_channel),
        ("genesis again", genesis_again),
    ] {
        let out = validate(&block);
        assert_eq!(out.codes, vec![Code::InvalidConfig], "{name}");
        assert_eq!(out.config, None, "{name}");
        assert_eq!(out.tx_ids, vec![None], "{name}");
    }
}

fn cfg_with_sequence(seq: u64) -> ChannelConfig {
    let mut c = net().config.clone();
    c.sequence = seq;
    c
}

#[test]
fn a_config_envelope_among_transactions_is_invalid_config() {
    let n = net();
    let genesis = config::genesis_block(&n.config, 1).expect("genesis");
    let config_env = genesis.data.expect("data").data[0].clone();
    let cfg = next_config();
    let signed_config = config_block(4, &cfg, &cfg, &[&n.orgs[0].admin, &n.orgs[1].admin])
        .data
        .expect("data")
        .data[0]
        .clone();
    let out = validate(&block_of(
        4,
        vec![config_env, n.tx(1).build(), signed_config],
    ));
    assert_eq!(
        out.codes,
        vec![Code::InvalidConfig, Code::Valid, Code::InvalidConfig]
    );
    assert_eq!(out.config, None);
}
