//! The proof an orderer attaches to Cluster requests (`ordo_proto::cluster_auth`), as the
//! Cluster service checks it: a `StepRequest` (purpose Step, empty context) or a
//! `SubmitRequest` (purpose Submit, the envelope's SHA-256 as context), against the
//! consenters of a raft variant of the fixture channel.
//!
//! Input: a mode byte, then the encoded request. Mode bit 0 picks Submit over Step; with
//! bit 1 set, the harness replaces the proof with a fresh one by the consenter (for the
//! request's own channel and context), so acceptance paths are fuzzed too.
//!
//! Invariants: an accepted proof names the consenter whose certificate it carries, and it
//! binds its purpose, channel and context: the same proof is refused for the other
//! purpose, another channel and another context.

use std::sync::OnceLock;

use prost::Message;
use sha2::{Digest, Sha256};

use ordo_consensus::ConfigState;
use ordo_proto::cluster_auth::{sign, verify, Purpose};
use ordo_proto::pb::cluster::{ClusterAuth, StepRequest, SubmitRequest};
use ordo_testkit::org::consenter_entry;

use crate::fixture::{self, members, CHANNEL, NOW_MS};

/// The fixture channel with raft ordering by org A's orderer.
fn raft_state() -> &'static ConfigState {
    static STATE: OnceLock<ConfigState> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut config = fixture::config().clone();
        if let Some(o) = config.orderer.as_mut() {
            o.consensus_type = "raft".into();
            o.consenters = vec![consenter_entry(
                &members().orderer,
                "orderer0",
                "orderer0:7050",
            )];
        }
        ConfigState::new(config, 0).expect("the raft fixture config")
    })
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((mode, rest)) = fixture::split(data) else {
        return;
    };
    let (purpose, channel, context, auth) = if mode & 1 == 0 {
        let Ok(r) = StepRequest::decode(rest) else {
            return;
        };
        (Purpose::Step, r.channel, Vec::new(), r.auth)
    } else {
        let Ok(r) = SubmitRequest::decode(rest) else {
            return;
        };
        (
            Purpose::Submit,
            r.channel,
            Sha256::digest(&r.envelope).to_vec(),
            r.auth,
        )
    };
    let auth = if mode & 2 != 0 {
        Some(sign(
            &members().orderer,
            purpose,
            &channel,
            &context,
            NOW_MS,
        ))
    } else {
        auth
    };
    let state = raft_state();
    let consenters = state
        .config
        .orderer
        .as_ref()
        .map(|o| o.consenters.clone())
        .unwrap_or_default();
    let check = |purpose, channel: &str, context: &[u8]| {
        verify(
            auth.as_ref(),
            &consenters,
            &state.msp,
            purpose,
            channel,
            context,
            NOW_MS,
        )
        .map(|c| c.id.clone())
    };
    let Ok(id) = check(purpose, &channel, &context) else {
        return;
    };
    let named = consenters.iter().find(|c| c.id == id).expect("a consenter");
    assert_eq!(
        Some(&named.certificate),
        auth.as_ref().map(|a: &ClusterAuth| &a.certificate)
    );
    let other = match purpose {
        Purpose::Step => Purpose::Submit,
        Purpose::Submit => Purpose::Step,
    };
    assert!(
        check(other, &channel, &context).is_err(),
        "a proof valid for both purposes"
    );
    assert!(
        check(purpose, &format!("{channel}x"), &context).is_err(),
        "a proof valid for two channels"
    );
    let longer = [&context[..], b"x"].concat();
    assert!(
        check(purpose, &channel, &longer).is_err(),
        "a proof valid for two contexts"
    );
}

/// A Step and a Submit request with valid proofs, and one with a stale proof.
pub fn seeds() -> Vec<Vec<u8>> {
    let orderer = &members().orderer;
    let envelope = b"an envelope".to_vec();
    let step = StepRequest {
        channel: CHANNEL.into(),
        message: vec![8, 1].into(),
        auth: Some(sign(orderer, Purpose::Step, CHANNEL, &[], NOW_MS)),
    };
    let submit = SubmitRequest {
        channel: CHANNEL.into(),
        envelope: envelope.clone().into(),
        tx_id: "t".into(),
        config_seq: 0,
        is_config: false,
        auth: Some(sign(
            orderer,
            Purpose::Submit,
            CHANNEL,
            &Sha256::digest(&envelope),
            NOW_MS,
        )),
    };
    let stale = StepRequest {
        auth: Some(sign(
            orderer,
            Purpose::Step,
            CHANNEL,
            &[],
            NOW_MS - 3_600_000,
        )),
        ..step.clone()
    };
    vec![
        [&[0u8][..], &step.encode_to_vec()].concat(),
        [&[1u8][..], &submit.encode_to_vec()].concat(),
        [&[0u8][..], &stale.encode_to_vec()].concat(),
    ]
}
