//! Building a channel's configuration and genesis block: from a crypto directory's
//! manifest (`ordo up`, `ordo channel genesis`) or from the orgs' public bundles.

use super::*;

/// The channel configuration `ordo` writes for a crypto directory holding every org:
/// the orgs in manifest order, and consenter `i` at `orderer_endpoints[i]` running as org
/// `i mod orgs`' `orderer` (its first orderer) or `orderer<i>` member, with id
/// `orderer<i>`; `anchor_peers` (`ORG=[MEMBER=]HOST:PORT`, the member `peer` by default) become
/// the orgs' anchor peers. Each org goes through the same export and verification as an org bundle
/// sent between machines ([`crate::cmd::bundle`]), so `ordo up` and a consortium of many
/// hosts build channels with the same code. See [`config_from_parts`] for the policies.
pub fn channel_config(
    manifest: &Manifest,
    channel: &str,
    consensus: Consensus,
    orderer_endpoints: &[String],
    anchor_peers: &[String],
    batch: &BatchArgs,
) -> anyhow::Result<ChannelConfig> {
    let now_secs = ordo_proto::now_ms() / 1000;
    let mut anchors: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for spec in anchor_peers {
        let Some((org, endpoint)) = spec.split_once('=') else {
            bail!("--anchor-peer {spec}: write it as ORG=HOST:PORT");
        };
        manifest
            .org(org)
            .with_context(|| format!("--anchor-peer {spec}"))?;
        anchors.entry(org).or_default().push(endpoint.to_string());
    }
    let mut bundles = Vec::new();
    for o in &manifest.orgs {
        let endpoints = crate::cmd::bundle::Endpoints {
            orderers: Vec::new(),
            peers: anchors.remove(o.name.as_str()).unwrap_or_default(),
        };
        let exported = crate::cmd::bundle::export(manifest, &o.name, &endpoints)?;
        bundles.push(
            crate::cmd::bundle::verify(&exported, now_secs)
                .with_context(|| format!("the crypto directory's org {}", o.name))?,
        );
    }
    if bundles.is_empty() {
        bail!("no orgs in crypto.json");
    }
    let mut consenters = Vec::new();
    for (i, endpoint) in orderer_endpoints.iter().enumerate() {
        let b = &bundles[i % bundles.len()];
        // The first orderer of each org runs with its "orderer" identity; more orderers
        // per org need their own (`ordo crypto issue --name orderer<i>`).
        let own = format!("orderer{i}");
        let node = b
            .orderers
            .iter()
            .find(|n| n.name == own)
            .or_else(|| {
                (i < bundles.len())
                    .then(|| b.orderers.iter().find(|n| n.name == "orderer"))
                    .flatten()
            })
            .with_context(|| {
                format!(
                    "orderer {i} runs in org {} and needs its own identity: ordo crypto issue --org {} --name {own} --role orderer",
                    b.org, b.org
                )
            })?;
        consenters.push(b.consenter(node, &own, endpoint));
    }
    let orgs = bundles.iter().map(VerifiedBundle::organization).collect();
    config_from_parts(orgs, consenters, channel, consensus, batch)
}

/// The channel configuration for org bundles (already verified): the orgs in the order
/// given, and as consenters every bundle orderer that has an endpoint, with id
/// `<member>.<org>`. See [`config_from_parts`] for the policies.
pub fn bundles_config(
    bundles: &[VerifiedBundle],
    channel: &str,
    consensus: Consensus,
    batch: &BatchArgs,
) -> anyhow::Result<ChannelConfig> {
    let mut names = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    for b in bundles {
        if !names.insert(b.org.as_str()) {
            bail!("org {} is given by two bundles", b.org);
        }
        if !keys.insert(b.ca_public_key.as_slice()) {
            bail!(
                "the bundle of {} has the same CA key as another org's bundle",
                b.org
            );
        }
    }
    let orgs = bundles.iter().map(VerifiedBundle::organization).collect();
    let consenters: Vec<Consenter> = bundles
        .iter()
        .flat_map(|b| {
            b.orderers.iter().filter_map(move |o| {
                o.endpoint
                    .as_deref()
                    .map(|e| b.consenter(o, &b.consenter_id(o), e))
            })
        })
        .collect();
    if consenters.is_empty() {
        bail!(
            "no bundle gives an orderer endpoint, so the channel would have no orderer: \
             export at least one bundle with `ordo crypto export --orderer-endpoint HOST:PORT`"
        );
    }
    config_from_parts(orgs, consenters, channel, consensus, batch)
}

/// The configuration of a new channel over `orgs` and `consenters`, whatever they were
/// read from: Readers = any member; Writers = any admin, client or peer (orderers do not
/// submit transactions); Admins = a majority of orgs' admins; Lifecycle (chaincode
/// definitions) = a majority of orgs' admins; BlockValidation = any orderer. The policies name no org, so an org added later is covered by them.
pub fn config_from_parts(
    orgs: Vec<Organization>,
    consenters: Vec<Consenter>,
    channel: &str,
    consensus: Consensus,
    batch: &BatchArgs,
) -> anyhow::Result<ChannelConfig> {
    let org_names: Vec<String> = orgs.iter().map(|o| o.name.clone()).collect();
    let cfg = ChannelConfig {
        channel_id: channel.to_string(),
        sequence: 0,
        orgs,
        orderer: Some(OrdererConfig {
            consensus_type: match consensus {
                Consensus::Solo => "solo",
                Consensus::Kafka => "kafka",
                Consensus::Raft => "raft",
            }
            .into(),
            batch_size: Some(BatchSize {
                max_message_count: batch.max_message_count,
                absolute_max_bytes: batch.absolute_max_bytes,
                preferred_max_bytes: batch.preferred_max_bytes,
            }),
            batch_timeout_ms: batch.batch_timeout_ms,
            consenters,
            kafka: (consensus == Consensus::Kafka).then(|| KafkaConfig {
                brokers: batch.kafka_brokers.clone(),
                topic: batch.kafka_topic.clone(),
            }),
            raft: (consensus == Consensus::Raft).then_some(RaftConfig {
                tick_interval_ms: batch.raft_tick_ms,
                election_tick: batch.raft_election_tick,
                heartbeat_tick: batch.raft_heartbeat_tick,
                max_inflight_blocks: batch.raft_max_inflight_blocks,
                snapshot_interval_bytes: batch.raft_snapshot_bytes,
            }),
            ack_mode: match batch.ack_mode {
                AckModeArg::Enqueued => AckMode::Enqueued,
                AckModeArg::Committed => AckMode::Committed,
            } as i32,
        }),
        readers: Some(policy::any_member(&[], &[])),
        writers: Some(policy::any_member(
            &[],
            &[Role::Admin, Role::Client, Role::Peer],
        )),
        admins: Some(policy::majority(&[], Role::Admin)),
        block_validation: Some(policy::any_member(&[], &[Role::Orderer])),
        chaincodes: chaincode_definitions(&org_names, &batch.chaincodes)?,
        lifecycle: Some(policy::majority(&[], Role::Admin)),
        tx_validity_window_s: batch.tx_validity_window_s,
    };
    config::validate(&cfg)?;
    Ok(cfg)
}

/// `NAME[:N]` → a chaincode definition endorsed by the peers of `N` distinct orgs.
fn chaincode_definitions(
    org_names: &[String],
    specs: &[String],
) -> anyhow::Result<Vec<ChaincodeDefinition>> {
    let orgs: Vec<&str> = org_names.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for spec in specs {
        let (name, n) = match spec.split_once(':') {
            Some((name, n)) => (
                name,
                n.parse::<u32>()
                    .with_context(|| format!("--chaincode {spec}: N is not a number"))?,
            ),
            None => (spec.as_str(), orgs.len() as u32 / 2 + 1),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("--chaincode {spec}: the name must be letters, digits, '-' and '_'");
        }
        if n == 0 || n as usize > orgs.len() {
            bail!(
                "--chaincode {spec}: N must be between 1 and the number of orgs ({})",
                orgs.len()
            );
        }
        let principals: Vec<(&str, Role)> = orgs.iter().map(|o| (*o, Role::Peer)).collect();
        out.push(ChaincodeDefinition {
            name: name.to_string(),
            version: "1".into(),
            endorsement_policy: Some(policy::n_out_of(n, &principals)),
            runtime: format!("builtin:{name}"),
            sequence: 1,
            retired: false,
        });
    }
    Ok(out)
}

/// Builds a channel's genesis block from a crypto directory.
pub fn genesis(
    crypto: &Path,
    channel: &str,
    consensus: Consensus,
    orderer_endpoints: &[String],
    anchor_peers: &[String],
    batch: &BatchArgs,
) -> anyhow::Result<Block> {
    let manifest = Manifest::load(crypto)?;
    let cfg = channel_config(
        &manifest,
        channel,
        consensus,
        orderer_endpoints,
        anchor_peers,
        batch,
    )?;
    Ok(config::genesis_block(&cfg, ordo_proto::now_ms())?)
}

/// Builds a channel's genesis block from verified org bundles.
pub fn genesis_from_bundles(
    bundles: &[VerifiedBundle],
    channel: &str,
    consensus: Consensus,
    batch: &BatchArgs,
) -> anyhow::Result<Block> {
    let cfg = bundles_config(bundles, channel, consensus, batch)?;
    Ok(config::genesis_block(&cfg, ordo_proto::now_ms())?)
}
