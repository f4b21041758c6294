//! Channel configuration: validation, the genesis block, and reading the configuration
//! back out of a config block.
//!
//! A configuration travels as the exact encoded bytes that were validated (inside a
//! `ConfigEnvelope`), so every node applies the same configuration byte for byte.

use std::collections::HashSet;

use bytes::Bytes;
use prost::Message;
use thiserror::Error;

use crate::block::{self, GENESIS_PREVIOUS_HASH};
use crate::envelope::{self, EnvelopeError};
use crate::hash;
use crate::pb::common::{
    AckMode, Block, ChannelConfig, ConfigEnvelope, Envelope, Header, HeaderType, OrdererConfig,
    Payload,
};
use crate::policy::{self, PolicyError};

/// Longest channel id (Kafka's topic-name limit, less the `ordo.` prefix).
pub const MAX_CHANNEL_ID_LEN: usize = 200;
/// Largest `absolute_max_bytes` a channel may set: bounds the size of every block.
pub const MAX_ABSOLUTE_MAX_BYTES: u32 = 64 * 1024 * 1024;
/// Largest `max_message_count` a channel may set.
pub const MAX_MESSAGE_COUNT: u32 = 100_000;
/// Longest batch timeout a channel may set.
pub const MAX_BATCH_TIMEOUT_MS: u64 = 60_000;
/// The consensus types Ordo knows.
pub const CONSENSUS_TYPES: [&str; 3] = ["solo", "kafka", "raft"];
/// Most chaincode definitions a channel holds (retired ones included).
pub const MAX_CHAINCODES: usize = 256;
/// Longest chaincode name.
pub const MAX_CHAINCODE_NAME_LEN: usize = 128;
/// Longest chaincode version.
pub const MAX_CHAINCODE_VERSION_LEN: usize = 64;
/// Most anchor peers one org may name: every peer of the channel announces itself to each
/// anchor every few seconds.
pub const MAX_ANCHOR_PEERS: usize = 16;
/// Longest `host:port` endpoint (a DNS name's limit plus a port).
pub const MAX_ENDPOINT_LEN: usize = 260;
/// Most organizations a channel holds: every node keeps each one's keys and roots, and
/// policies count them.
pub const MAX_ORGS: usize = 256;
/// Most CA keys one org may list (every certificate check tries them).
pub const MAX_ROOT_KEYS: usize = 16;
/// Most TLS CA certificates one org may list, and the largest one (DER).
pub const MAX_TLS_ROOTS: usize = 16;
/// Largest DER TLS CA certificate an org may list.
pub const MAX_TLS_ROOT_BYTES: usize = 64 * 1024;
/// Most revoked TLS certificate hashes one org may list (each node checks every handshake
/// against the union).
pub const MAX_REVOKED_TLS_CERTS: usize = 10_000;
/// Most consenters a channel may list, whatever its consensus type (peers dial them).
pub const MAX_CONSENTERS: usize = 64;
/// Shortest non-zero `tx_validity_window_s`: twice the orderers' bound on how far an
/// envelope's timestamp may be from their clock (600 s), plus 300 s. An honest
/// transaction is signed at most that far behind the orderer's clock, and the ledger's
/// clock (the latest VALID timestamp) is at most that far ahead of it; the 300 s cover
/// the orderers' whole-second rounding, differences between their clocks, and queues.
pub const MIN_TX_VALIDITY_WINDOW_S: u64 = 1500;
/// Longest `tx_validity_window_s` (a year): longer is "never" in practice; say 0.
pub const MAX_TX_VALIDITY_WINDOW_S: u64 = 365 * 24 * 3600;
/// The window new channels get (`ordo channel genesis`, `ordo up`): the minimum plus five
/// more minutes of margin. Peers keep about this much of the tx-id index.
pub const DEFAULT_TX_VALIDITY_WINDOW_S: u64 = 1800;

/// Why a configuration or config block is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A field or a relation between fields is invalid.
    #[error("invalid channel config: {0}")]
    Invalid(String),
    /// A policy in it is malformed.
    #[error("invalid channel config: policy {name}: {source}")]
    Policy {
        /// Which policy.
        name: &'static str,
        /// What is wrong with it.
        source: PolicyError,
    },
    /// The block or envelope is not a config block or envelope.
    #[error("not a config block: {0}")]
    NotConfig(String),
    /// The envelope inside does not decode.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// Checks a channel id: 1 to 200 characters of `[a-z0-9.-]`, starting with a letter.
/// Channel ids name Kafka topics and directories, hence the strict alphabet.
pub fn validate_channel_id(id: &str) -> Result<(), ConfigError> {
    let ok_len = !id.is_empty() && id.len() <= MAX_CHANNEL_ID_LEN;
    let ok_first = id.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(invalid(format!(
            "channel id {id:?} must be 1..={MAX_CHANNEL_ID_LEN} characters of [a-z0-9.-] starting with a letter"
        )))
    }
}

/// Checks a `host:port` endpoint that nodes will dial: a host of visible ASCII (no `/`,
/// no scheme) and a port in 1..=65535, at most [`MAX_ENDPOINT_LEN`] characters; an IPv6
/// host is written in brackets (`[::1]:7051`).
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(format!(
            "endpoint of {} characters; at most {MAX_ENDPOINT_LEN}",
            endpoint.len()
        ));
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(format!("endpoint {endpoint:?} is not host:port"));
    };
    let host_ok = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_graphic() && c != '/')
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("endpoint {endpoint:?} is not host:port"))
    }
}

/// Checks every field of a configuration and the relations between them.
pub fn validate(config: &ChannelConfig) -> Result<(), ConfigError> {
    validate_channel_id(&config.channel_id)?;
    if config.orgs.is_empty() {
        return Err(invalid("no organizations"));
    }
    if config.orgs.len() > MAX_ORGS {
        return Err(invalid(format!(
            "{} organizations; at most {MAX_ORGS}",
            config.orgs.len()
        )));
    }
    let mut names = HashSet::new();
    for org in &config.orgs {
        if org.name.is_empty() || !names.insert(org.name.clone()) {
            return Err(invalid(format!(
                "org name {:?} empty or repeated",
                org.name
            )));
        }
        if org.root_public_keys.is_empty() {
            return Err(invalid(format!("org {:?} has no root keys", org.name)));
        }
        validate_org_lists(org)?;
        if org.anchor_peers.len() > MAX_ANCHOR_PEERS {
            return Err(invalid(format!(
                "org {:?} names {} anchor peers; at most {MAX_ANCHOR_PEERS}",
                org.name,
                org.anchor_peers.len()
            )));
        }
        let mut anchors = HashSet::new();
        for anchor in &org.anchor_peers {
            check_endpoint(anchor)
                .map_err(|why| invalid(format!("org {:?} anchor peer: {why}", org.name)))?;
            if !anchors.insert(anchor) {
                return Err(invalid(format!(
                    "org {:?} names anchor peer {anchor:?} twice",
                    org.name
                )));
            }
        }
    }
    crate::cert::Msp::from_config(config).map_err(|e| invalid(e.to_string()))?;
    let orderer = config
        .orderer
        .as_ref()
        .ok_or_else(|| invalid("no orderer section"))?;
    if !CONSENSUS_TYPES.contains(&orderer.consensus_type.as_str()) {
        return Err(invalid(format!(
            "consensus type {:?} is not one of {CONSENSUS_TYPES:?}",
            orderer.consensus_type
        )));
    }
    let batch = orderer
        .batch_size
        .as_ref()
        .ok_or_else(|| invalid("no batch size"))?;
    if batch.max_message_count == 0 || batch.max_message_count > MAX_MESSAGE_COUNT {
        return Err(invalid(format!(
            "max_message_count {} not in 1..={MAX_MESSAGE_COUNT}",
            batch.max_message_count
        )));
    }
    if batch.absolute_max_bytes == 0 || batch.absolute_max_bytes > MAX_ABSOLUTE_MAX_BYTES {
        return Err(invalid(format!(
            "absolute_max_bytes {} not in 1..={MAX_ABSOLUTE_MAX_BYTES}",
            batch.absolute_max_bytes
        )));
    }
    if batch.preferred_max_bytes == 0 || batch.preferred_max_bytes > batch.absolute_max_bytes {
        return Err(invalid(format!(
            "preferred_max_bytes {} not in 1..=absolute_max_bytes ({})",
            batch.preferred_max_bytes, batch.absolute_max_bytes
        )));
    }
    if orderer.batch_timeout_ms == 0 || orderer.batch_timeout_ms > MAX_BATCH_TIMEOUT_MS {
        return Err(invalid(format!(
            "batch_timeout_ms {} not in 1..={MAX_BATCH_TIMEOUT_MS}",
            orderer.batch_timeout_ms
        )));
    }
    if !matches!(
        AckMode::try_from(orderer.ack_mode),
        Ok(AckMode::Enqueued) | Ok(AckMode::Committed)
    ) {
        return Err(invalid(format!(
            "ack_mode {} is not enqueued or committed",
            orderer.ack_mode
        )));
    }
    let window = config.tx_validity_window_s;
    if window != 0 && !(MIN_TX_VALIDITY_WINDOW_S..=MAX_TX_VALIDITY_WINDOW_S).contains(&window) {
        return Err(invalid(format!(
            "tx_validity_window_s {window} is neither 0 (never expire) nor in \
             {MIN_TX_VALIDITY_WINDOW_S}..={MAX_TX_VALIDITY_WINDOW_S}"
        )));
    }
    if orderer.consenters.len() > MAX_CONSENTERS {
        return Err(invalid(format!(
            "{} consenters; at most {MAX_CONSENTERS}",
            orderer.consenters.len()
        )));
    }
    if orderer.consensus_type == "raft" {
        validate_raft(orderer)?;
    }
    if orderer.consensus_type == "kafka" {
        validate_kafka(orderer)?;
    }
    let org_names: Vec<String> = config.orgs.iter().map(|o| o.name.clone()).collect();
    for (name, p) in [
        ("Readers", &config.readers),
        ("Writers", &config.writers),
        ("Admins", &config.admins),
        ("BlockValidation", &config.block_validation),
    ] {
        let p = p
            .as_ref()
            .ok_or_else(|| invalid(format!("no {name} policy")))?;
        policy::validate(p, &org_names).map_err(|source| ConfigError::Policy { name, source })?;
    }
    if let Some(p) = &config.lifecycle {
        policy::validate(p, &org_names).map_err(|source| ConfigError::Policy {
            name: "Lifecycle",
            source,
        })?;
    }
    validate_chaincodes(config, &org_names)
}

/// Every chaincode definition: a unique name of [`MAX_CHAINCODE_NAME_LEN`] characters at
/// most from `[A-Za-z0-9_-]`, a version, an endorsement policy naming only channel orgs,
/// and a runtime that is empty, `builtin:<name>` or `external:<host:port>`.
fn validate_chaincodes(config: &ChannelConfig, org_names: &[String]) -> Result<(), ConfigError> {
    if config.chaincodes.len() > MAX_CHAINCODES {
        return Err(invalid(format!(
            "{} chaincode definitions; at most {MAX_CHAINCODES}",
            config.chaincodes.len()
        )));
    }
    let mut names = HashSet::new();
    for def in &config.chaincodes {
        let name = &def.name;
        let name_ok = !name.is_empty()
            && name.len() <= MAX_CHAINCODE_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(invalid(format!(
                "chaincode name {name:?} must be 1..={MAX_CHAINCODE_NAME_LEN} characters of [A-Za-z0-9_-]"
            )));
        }
        if !names.insert(name.as_str()) {
            return Err(invalid(format!("chaincode {name:?} is defined twice")));
        }
        if def.version.is_empty() || def.version.len() > MAX_CHAINCODE_VERSION_LEN {
            return Err(invalid(format!(
                "chaincode {name:?}: version {:?} must be 1..={MAX_CHAINCODE_VERSION_LEN} characters",
                def.version
            )));
        }
        let endorsement = def
            .endorsement_policy
            .as_ref()
            .ok_or_else(|| invalid(format!("chaincode {name:?} has no endorsement policy")))?;
        policy::validate(endorsement, org_names)
            .map_err(|e| invalid(format!("chaincode {name:?}: endorsement policy {e}")))?;
        check_runtime(&def.runtime).map_err(|why| invalid(format!("chaincode {name:?}: {why}")))?;
    }
    Ok(())
}

/// Checks a chaincode runtime: empty, `builtin:<name>`, or `external:<host:port>`.
pub fn check_runtime(runtime: &str) -> Result<(), String> {
    match runtime.split_once(':') {
        _ if runtime.is_empty() => Ok(()),
        Some(("builtin", name)) if !name.is_empty() && name.len() <= MAX_CHAINCODE_NAME_LEN => {
            Ok(())
        }
        Some(("external", endpoint)) => {
            check_endpoint(endpoint).map_err(|why| format!("runtime {runtime:?}: {why}"))
        }
        _ => Err(format!(
            "runtime {runtime:?} is not builtin:<name> or external:<host:port>"
        )),
    }
}

/// An org's repeated fields within their limits: CA keys, TLS roots (non-empty, at most
/// [`MAX_TLS_ROOT_BYTES`] each; their parsing is each node's, which skips one it cannot
/// read) and revoked TLS certificate hashes (SHA-256: 32 bytes each).
fn validate_org_lists(org: &crate::pb::common::Organization) -> Result<(), ConfigError> {
    let too_many = |what: &str, n: usize, max: usize| {
        invalid(format!(
            "org {:?} lists {n} {what}; at most {max}",
            org.name
        ))
    };
    if org.root_public_keys.len() > MAX_ROOT_KEYS {
        return Err(too_many(
            "root keys",
            org.root_public_keys.len(),
            MAX_ROOT_KEYS,
        ));
    }
    if org.tls_root_certs.len() > MAX_TLS_ROOTS {
        return Err(too_many(
            "TLS roots",
            org.tls_root_certs.len(),
            MAX_TLS_ROOTS,
        ));
    }
    if let Some(bad) = org
        .tls_root_certs
        .iter()
        .find(|c| c.is_empty() || c.len() > MAX_TLS_ROOT_BYTES)
    {
        return Err(invalid(format!(
            "org {:?} lists a TLS root of {} bytes; 1 to {MAX_TLS_ROOT_BYTES}",
            org.name,
            bad.len()
        )));
    }
    if org.tls_revoked_cert_hashes.len() > MAX_REVOKED_TLS_CERTS {
        return Err(too_many(
            "revoked TLS certificates",
            org.tls_revoked_cert_hashes.len(),
            MAX_REVOKED_TLS_CERTS,
        ));
    }
    if let Some(bad) = org.tls_revoked_cert_hashes.iter().find(|h| h.len() != 32) {
        return Err(invalid(format!(
            "org {:?} lists a revoked TLS certificate hash of {} bytes; a SHA-256 is 32",
            org.name,
            bad.len()
        )));
    }
    Ok(())
}

/// A kafka channel's brokers (each an endpoint, [`check_endpoint`], or a comma-separated
/// list of them) and topic (Kafka's
/// topic alphabet, at most 249 characters; empty means `ordo.<channel>`).
fn validate_kafka(orderer: &OrdererConfig) -> Result<(), ConfigError> {
    let k = orderer
        .kafka
        .as_ref()
        .ok_or_else(|| invalid("a kafka channel needs a kafka section with its brokers"))?;
    if k.brokers.is_empty() {
        return Err(invalid("a kafka channel needs at least one broker"));
    }
    // An entry may itself be a comma-separated list, as librdkafka's bootstrap servers
    // are written (`ordo up` writes its mock cluster's that way).
    for b in k.brokers.iter().flat_map(|b| b.split(',')) {
        check_endpoint(b).map_err(|why| invalid(format!("kafka broker: {why}")))?;
    }
    let topic_ok = k.topic.len() <= 249
        && k.topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !topic_ok {
        return Err(invalid(format!(
            "kafka topic {:?} must be at most 249 characters of [a-zA-Z0-9._-]",
            k.topic
        )));
    }
    Ok(())
}

/// A raft channel's consenters (an id, an endpoint nodes can dial, a certificate of their
/// own) and timings. Zero timing fields mean "the default"
/// (`ordo_consensus::raft::RaftOptions`); set ones must make sense together, because every
/// consenter runs with them and a bad value (an election timeout shorter than the
/// heartbeat) would keep the group from ever settling on a leader.
fn validate_raft(orderer: &OrdererConfig) -> Result<(), ConfigError> {
    if orderer.consenters.is_empty() {
        return Err(invalid("a raft channel needs at least one consenter"));
    }
    let mut ids = HashSet::new();
    let mut certs = HashSet::new();
    for c in &orderer.consenters {
        if c.id.is_empty() || c.endpoint.is_empty() || c.certificate.is_empty() {
            return Err(invalid(format!(
                "consenter {:?} needs an id, an endpoint and a certificate",
                c.id
            )));
        }
        check_endpoint(&c.endpoint)
            .map_err(|why| invalid(format!("consenter {:?}: {why}", c.id)))?;
        if !ids.insert(c.id.as_str()) {
            return Err(invalid(format!("consenter id {:?} appears twice", c.id)));
        }
        if !certs.insert(c.certificate.as_ref()) {
            return Err(invalid(format!(
                "consenter {:?} shares its certificate with another consenter",
                c.id
            )));
        }
    }
    let Some(r) = orderer.raft.as_ref() else {
        return Ok(());
    };
    if r.tick_interval_ms != 0 && !(10..=10_000).contains(&r.tick_interval_ms) {
        return Err(invalid(format!(
            "raft tick_interval_ms {} not in 10..=10000",
            r.tick_interval_ms
        )));
    }
    let heartbeat = if r.heartbeat_tick == 0 {
        1
    } else {
        r.heartbeat_tick
    };
    let election = if r.election_tick == 0 {
        10
    } else {
        r.election_tick
    };
    if election <= heartbeat {
        return Err(invalid(format!(
            "raft election_tick {election} must exceed heartbeat_tick {heartbeat}"
        )));
    }
    if r.max_inflight_blocks > 256 {
        return Err(invalid(format!(
            "raft max_inflight_blocks {} above 256",
            r.max_inflight_blocks
        )));
    }
    if r.snapshot_interval_bytes != 0 && r.snapshot_interval_bytes < (1 << 20) {
        return Err(invalid(format!(
            "raft snapshot_interval_bytes {} below 1 MiB",
            r.snapshot_interval_bytes
        )));
    }
    Ok(())
}

/// The genesis block of a channel: block 0 holding one unsigned CONFIG envelope with the
/// encoded configuration. Deterministic: the nonce is the hash of the configuration.
///
/// Genesis envelopes are unsigned because their authority comes from the admin who hands
/// the block to each node (`ordo channel join`), not from a signature inside it.
pub fn genesis_block(config: &ChannelConfig, timestamp_ms: u64) -> Result<Block, ConfigError> {
    validate(config)?;
    if config.sequence != 0 {
        return Err(invalid("a genesis config has sequence 0"));
    }
    let config_bytes = config.encode_to_vec();
    let nonce = hash::sha256(&config_bytes).to_vec();
    let data = ConfigEnvelope {
        config: config_bytes.into(),
        last_update: Bytes::new(),
    };
    let header = Header {
        channel_id: config.channel_id.clone(),
        r#type: HeaderType::Config as i32,
        tx_id: hash::tx_id(&nonce, &[]),
        timestamp_ms,
        creator: Bytes::new(),
        nonce: nonce.into(),
    };
    let payload = Payload {
        header: Some(header),
        data: data.encode_to_vec().into(),
    };
    let env = Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    };
    Ok(block::build(
        0,
        GENESIS_PREVIOUS_HASH,
        vec![env.encode_to_vec().into()],
    ))
}

/// Reads the configuration out of a CONFIG envelope's bytes.
///
/// Does not check the envelope's signature (the genesis one has none); callers that take
/// config envelopes from the network check the creator first.
pub fn config_from_envelope(envelope_bytes: &[u8]) -> Result<ChannelConfig, ConfigError> {
    let env = envelope::decode(envelope_bytes)?;
    let payload = Payload::decode(env.payload.as_ref())
        .map_err(|e| ConfigError::NotConfig(format!("payload: {e}")))?;
    let header = payload
        .header
        .ok_or_else(|| ConfigError::NotConfig("no header".into()))?;
    if header.r#type != HeaderType::Config as i32 {
        return Err(ConfigError::NotConfig(format!(
            "header type {}",
            header.r#type
        )));
    }
    let ce = ConfigEnvelope::decode(payload.data.as_ref())
        .map_err(|e| ConfigError::NotConfig(format!("config envelope: {e}")))?;
    let config = ChannelConfig::decode(ce.config.as_ref())
        .map_err(|e| ConfigError::NotConfig(format!("config: {e}")))?;
    if config.channel_id != header.channel_id {
        return Err(ConfigError::NotConfig(format!(
            "config for channel {:?} in an envelope for {:?}",
            config.channel_id, header.channel_id
        )));
    }
    validate(&config)?;
    Ok(config)
}

/// Reads the configuration out of a config block (one CONFIG envelope, nothing else).
pub fn config_from_block(block: &Block) -> Result<ChannelConfig, ConfigError> {
    let data = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default();
    match data {
        [only] => config_from_envelope(only),
        _ => Err(ConfigError::NotConfig(format!(
            "{} envelopes, a config block has one",
            data.len()
        ))),
    }
}

/// Whether an envelope's bytes carry a CONFIG envelope (cheap check, no validation).
pub fn is_config_envelope(envelope_bytes: &[u8]) -> bool {
    envelope::decode(envelope_bytes)
        .ok()
        .and_then(|e| Payload::decode(e.payload.as_ref()).ok())
        .and_then(|p| p.header)
        .is_some_and(|h| h.r#type == HeaderType::Config as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::common::KafkaConfig;

    #[test]
    fn kafka_channels_need_brokers_and_a_valid_topic() {
        let mut c = raft_config(vec![], None);
        let orderer = c.orderer.as_mut().expect("orderer");
        orderer.consensus_type = "kafka".into();
        orderer.consenters.clear();
        assert!(validate(&c).is_err(), "no kafka section");
        let with = |brokers: &[&str], topic: &str| {
            let mut c = c.clone();
            if let Some(o) = c.orderer.as_mut() {
                o.kafka = Some(KafkaConfig {
                    brokers: brokers.iter().map(|b| b.to_string()).collect(),
                    topic: topic.into(),
                });
            }
            validate(&c)
        };
        assert!(with(&["k1:9092", "10.0.0.2:9093"], "").is_ok());
        assert!(with(&["k1:9092"], "ordo.channel_1-x").is_ok());
        assert!(with(&["k1:9092,k2:9092"], "").is_ok(), "a bootstrap list");
        assert!(with(&["k1:9092,k2:0"], "").is_err());
        assert!(with(&["k1:9092,"], "").is_err());
        assert!(with(&[], "").is_err());
        assert!(with(&["k1"], "").is_err());
        assert!(with(&["k1:notaport"], "").is_err());
        // Port 0 and a URL are no endpoints a node can dial.
        assert!(with(&["k1:0"], "").is_err());
        assert!(with(&["http://k1:9092"], "").is_err());
        assert!(with(&["k1:9092"], "bad topic!").is_err());
    }
    use crate::pb::common::{BatchSize, Consenter, Organization, RaftConfig, Role};

    #[test]
    fn the_tx_validity_window_is_off_or_long_enough_for_honest_transactions() {
        let base = raft_config(vec![consenter("o0", 1)], None);
        let with = |window: u64| {
            let mut c = base.clone();
            c.tx_validity_window_s = window;
            validate(&c)
        };
        assert!(with(0).is_ok(), "0: never expire");
        assert!(with(MIN_TX_VALIDITY_WINDOW_S).is_ok());
        assert!(with(DEFAULT_TX_VALIDITY_WINDOW_S).is_ok());
        assert!(with(MAX_TX_VALIDITY_WINDOW_S).is_ok());
        let short = with(MIN_TX_VALIDITY_WINDOW_S - 1).expect_err("shorter than the minimum");
        assert!(
            short.to_string().contains("tx_validity_window_s 1499"),
            "{short}"
        );
        assert!(with(MAX_TX_VALIDITY_WINDOW_S + 1).is_err());
        assert!(with(1).is_err());
    }

    #[test]
    fn every_repeated_org_field_has_a_limit() {
        let base = raft_config(vec![consenter("o0", 1)], None);
        assert!(validate(&base).is_ok());
        let with = |change: &dyn Fn(&mut Organization)| {
            let mut c = base.clone();
            change(&mut c.orgs[0]);
            validate(&c)
        };
        let key = base.orgs[0].root_public_keys[0].clone();
        assert!(with(&|o| o.root_public_keys = vec![key.clone(); MAX_ROOT_KEYS]).is_ok());
        assert!(with(&|o| o.root_public_keys = vec![key.clone(); MAX_ROOT_KEYS + 1]).is_err());
        let root = Bytes::from(vec![0x30u8; 900]);
        assert!(with(&|o| o.tls_root_certs = vec![root.clone(); MAX_TLS_ROOTS]).is_ok());
        assert!(with(&|o| o.tls_root_certs = vec![root.clone(); MAX_TLS_ROOTS + 1]).is_err());
        assert!(with(&|o| o.tls_root_certs = vec![Bytes::new()]).is_err());
        assert!(
            with(&|o| o.tls_root_certs = vec![vec![1u8; MAX_TLS_ROOT_BYTES + 1].into()]).is_err()
        );
        let hash = Bytes::from(vec![7u8; 32]);
        assert!(
            with(&|o| o.tls_revoked_cert_hashes = vec![hash.clone(); MAX_REVOKED_TLS_CERTS])
                .is_ok()
        );
        assert!(with(
            &|o| o.tls_revoked_cert_hashes = vec![hash.clone(); MAX_REVOKED_TLS_CERTS + 1]
        )
        .is_err());
        assert!(with(&|o| o.tls_revoked_cert_hashes = vec![vec![7u8; 31].into()]).is_err());

        let mut c = base.clone();
        let org = c.orgs[0].clone();
        c.orgs = (0..=MAX_ORGS)
            .map(|i| Organization {
                name: format!("org{i}"),
                ..org.clone()
            })
            .collect();
        let refused = validate(&c).expect_err("too many orgs").to_string();
        assert!(refused.contains("at most 256"), "{refused}");
        let consenters = (0..=MAX_CONSENTERS as u8)
            .map(|i| consenter(&format!("o{i}"), i))
            .collect();
        let refused = validate(&raft_config(consenters, None))
            .expect_err("too many consenters")
            .to_string();
        assert!(refused.contains("at most 64"), "{refused}");
    }

    #[test]
    fn consenters_need_endpoints_nodes_can_dial() {
        let with = |endpoint: &str| {
            let mut c = consenter("o0", 1);
            c.endpoint = endpoint.into();
            validate(&raft_config(vec![c], None))
        };
        assert!(with("orderer0.banka.example:7050").is_ok());
        for bad in ["orderer0", "orderer0:0", "http://o:7050", ":7050"] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn anchor_peers_must_be_distinct_endpoints_and_few() {
        let with = |anchors: &[&str]| {
            let mut c = raft_config(vec![consenter("o0", 1)], None);
            c.orgs[0].anchor_peers = anchors.iter().map(|a| a.to_string()).collect();
            validate(&c)
        };
        assert!(with(&[]).is_ok());
        assert!(with(&["peer0.banka.example:7051", "10.0.0.7:7051", "[::1]:7051"]).is_ok());
        for bad in [
            "peer0",
            "peer0:",
            "peer0:0",
            ":7051",
            "http://p:7051",
            "::1:7051",
            "a b:1",
        ] {
            let err = with(&[bad]).expect_err(bad).to_string();
            assert!(err.contains("anchor peer"), "{bad}: {err}");
        }
        assert!(with(&["p:1", "p:1"]).is_err(), "repeated");
        let many: Vec<String> = (0..=MAX_ANCHOR_PEERS)
            .map(|i| format!("p{i}:7051"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(with(&many).is_err(), "too many");
        assert!(with(&many[..MAX_ANCHOR_PEERS]).is_ok());
    }

    fn raft_config(consenters: Vec<Consenter>, raft: Option<RaftConfig>) -> ChannelConfig {
        ChannelConfig {
            channel_id: "r".into(),
            sequence: 0,
            orgs: vec![Organization {
                name: "A".into(),
                root_public_keys: vec![crate::crypto::generate_signing_key()
                    .verifying_key()
                    .to_bytes()
                    .to_vec()
                    .into()],
                ..Default::default()
            }],
            orderer: Some(OrdererConfig {
                consensus_type: "raft".into(),
                batch_size: Some(BatchSize {
                    max_message_count: 10,
                    absolute_max_bytes: 1 << 20,
                    preferred_max_bytes: 1 << 19,
                }),
                batch_timeout_ms: 100,
                ack_mode: AckMode::Enqueued as i32,
                consenters,
                raft,
                ..Default::default()
            }),
            readers: Some(policy::build::any_member(&[], &[])),
            writers: Some(policy::build::any_member(&[], &[])),
            admins: Some(policy::build::any_member(&[], &[Role::Admin])),
            block_validation: Some(policy::build::any_member(&[], &[Role::Orderer])),
            chaincodes: vec![],
            lifecycle: None,
            tx_validity_window_s: 0,
        }
    }

    fn consenter(id: &str, cert: u8) -> Consenter {
        Consenter {
            id: id.into(),
            endpoint: "127.0.0.1:7050".into(),
            certificate: vec![cert; 8].into(),
            ..Default::default()
        }
    }

    #[test]
    fn raft_channels_need_distinct_consenters_and_coherent_timings() {
        let good = vec![consenter("o1", 1), consenter("o2", 2), consenter("o3", 3)];
        assert_eq!(
            validate(&raft_config(good.clone(), None)).map_err(|e| e.to_string()),
            Ok(())
        );
        assert!(validate(&raft_config(vec![], None)).is_err());
        let dup_id = vec![consenter("o1", 1), consenter("o1", 2)];
        assert!(validate(&raft_config(dup_id, None)).is_err());
        let dup_cert = vec![consenter("o1", 1), consenter("o2", 1)];
        assert!(validate(&raft_config(dup_cert, None)).is_err());
        let timings = |r: RaftConfig| validate(&raft_config(good.clone(), Some(r)));
        assert!(
            timings(RaftConfig::default()).is_ok(),
            "zeros mean defaults"
        );
        assert!(timings(RaftConfig {
            tick_interval_ms: 50,
            election_tick: 20,
            heartbeat_tick: 2,
            max_inflight_blocks: 10,
            snapshot_interval_bytes: 32 << 20,
        })
        .is_ok());
        assert!(timings(RaftConfig {
            election_tick: 2,
            heartbeat_tick: 2,
            ..RaftConfig::default()
        })
        .is_err());
        assert!(timings(RaftConfig {
            tick_interval_ms: 1,
            ..RaftConfig::default()
        })
        .is_err());
        assert!(timings(RaftConfig {
            snapshot_interval_bytes: 1_000,
            ..RaftConfig::default()
        })
        .is_err());
    }
}
