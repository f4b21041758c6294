//! Three `ordo orderer` processes on one kafka channel, on librdkafka's mock cluster (or
//! a real broker when `ORDO_KAFKA_BROKERS` is set): concurrent broadcasts to all of them,
//! batch timeouts firing on several orderers at once, and every orderer cuts the same
//! blocks — byte-identical headers and data, each block signed by its own orderer. A
//! SIGKILLed orderer resumes from its last block's offset with no gap and no duplicate.
//! With every broker down Broadcast answers SERVICE_UNAVAILABLE, and once they are back
//! the chain goes on with nothing acknowledged lost; partition leader moves and injected
//! produce and fetch errors under load change nothing in the chains. A fourth orderer
//! joins after a config block in the middle of the chain, without the blocks below it,
//! and cuts the same blocks from the partition offset recorded in that block.

mod common;

use std::collections::HashMap;

use common::kafka::*;
use common::raft::*;
use common::*;
use ordo_consensus::kafka::core::KafkaMessage;
use ordo_consensus::kafka::wire;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{
    Block, ConfigSignature, ConfigUpdate, Envelope, HeaderType, Status as Code,
};
use ordo_proto::pb::orderer::SeekBehavior;
use prost::Message;

const CHANNEL: &str = "kafkach";
const ORGS: [&str; 3] = ["BankA", "BankB", "BankC"];

/// Three orderers (one per org) joined to a kafka channel on `cluster`'s `topic`.
struct Network {
    c: Consortium,
    nodes: Vec<OrdererProcess>,
    admins: Vec<Identity>,
}

impl Network {
    async fn start(cluster: &Cluster, topic: &str, node_toml: &str, extra: &[&str]) -> Self {
        let c = Consortium::new(&ORGS.join(","));
        let mut nodes: Vec<OrdererProcess> = ORGS
            .iter()
            .enumerate()
            .map(|(i, org)| OrdererProcess::start_with(&c, &format!("orderer{i}"), org, node_toml))
            .collect();
        let admins: Vec<Identity> = ORGS.iter().map(|o| c.identity(o, "admin")).collect();
        for (n, a) in nodes.iter_mut().zip(&admins) {
            n.wait_ready(a).await;
        }
        let endpoints: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        let brokers = cluster.brokers();
        let mut args = vec![
            "--consensus",
            "kafka",
            "--kafka-brokers",
            &brokers,
            "--kafka-topic",
            topic,
            "--orderer-endpoints",
        ];
        let endpoints = endpoints.join(",");
        args.push(&endpoints);
        args.extend_from_slice(extra);
        let genesis = c.genesis(CHANNEL, &args);
        for (n, a) in nodes.iter().zip(&admins) {
            join(&n.addr, a, &genesis).await;
        }
        Self { c, nodes, admins }
    }

    fn all(&self) -> Vec<(&str, &Identity)> {
        self.nodes
            .iter()
            .zip(&self.admins)
            .map(|(n, a)| (n.addr.as_str(), a))
            .collect()
    }
}

/// Every node's chain: same headers and data block by block, metadata signed by the
/// node's own orderer, and the kafka resume point in every block after the genesis one.
async fn assert_identical_chains(net: &Network) -> Vec<Block> {
    let mut chains = Vec::new();
    for (addr, admin) in net.all() {
        chains.push(chain(CHANNEL, addr, admin).await);
    }
    let reference = &chains[0];
    for (i, c) in chains.iter().enumerate() {
        assert_eq!(c.len(), reference.len(), "node {i} height");
        for (a, b) in c.iter().zip(reference) {
            assert_eq!(
                a.header.as_ref().map(Message::encode_to_vec),
                b.header.as_ref().map(Message::encode_to_vec),
                "node {i}: header of block {} differs",
                ordo_proto::block::number(a)
            );
            assert_eq!(a.data, b.data, "node {i}: data differs");
            assert_eq!(
                a.metadata.as_ref().map(|m| &m.consenter_metadata),
                b.metadata.as_ref().map(|m| &m.consenter_metadata),
                "node {i}: resume points differ"
            );
        }
    }
    for b in &reference[1..] {
        wire::resume_point(Some(b)).expect("every block records its last offset");
        let signers: std::collections::HashSet<Vec<u8>> = chains
            .iter()
            .map(|c| {
                let m = c[ordo_proto::block::number(b) as usize]
                    .metadata
                    .clone()
                    .expect("metadata");
                m.signatures.first().expect("signed").signer.to_vec()
            })
            .collect();
        assert_eq!(signers.len(), 3, "each orderer signs its own copy");
    }
    chains.swap_remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_kafka_orderers_cut_identical_blocks_and_resume_after_a_kill() {
    let cluster = Cluster::from_env();
    let topic = unique_topic("ordo.kafkach");
    cluster.create_topic(&topic).await;
    let mut net = Network::start(
        &cluster,
        &topic,
        "",
        &["--batch-timeout-ms", "20", "--max-message-count", "40"],
    )
    .await;
    let client = net.c.identity("BankA", "client");

    // Concurrent broadcasts to all three, in rounds small enough that most blocks are
    // cut by timers (which fire on every orderer holding the batch).
    let mut acked = Vec::new();
    for round in 0..4u64 {
        let tasks: Vec<_> = net
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let addr = n.addr.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    submit_all(CHANNEL, &addr, &client, (round * 10 + i as u64) * 1000, 150).await
                })
            })
            .collect();
        for t in tasks {
            acked.extend(t.await.expect("submitter"));
        }
    }
    converged(CHANNEL, &net.all(), &acked).await;
    let blocks = assert_identical_chains(&net).await;
    let (code, metrics) = http_get(&net.nodes[2].ops, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains(&format!(
            "ordo_orderer_kafka_ready{{channel=\"{CHANNEL}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "ordo_orderer_kafka_consumed_offset{{channel=\"{CHANNEL}\"}}"
        )),
        "{metrics}"
    );
    // Caught up: nothing in the partition this orderer has not handled, as the high
    // watermark librdkafka reports (once a second) says.
    let lag = format!("ordo_orderer_kafka_consumer_lag{{channel=\"{CHANNEL}\"}} 0\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, metrics) = http_get(&net.nodes[2].ops, "/metrics");
        if metrics.contains(&lag) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{lag} in {metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Several orderers' timers fired for the same block: the partition holds more than
    // one time-to-cut for some block, and every orderer ignored the late ones alike.
    let last = wire::resume_point(blocks.last())
        .expect("resume point")
        .last_offset;
    let messages = read_partition(&cluster.brokers(), &topic, last).await;
    let mut ttc: HashMap<u64, usize> = HashMap::new();
    for m in &messages {
        if let KafkaMessage::TimeToCut { block_number } = m {
            *ttc.entry(*block_number).or_default() += 1;
        }
    }
    assert!(
        ttc.values().any(|n| *n > 1),
        "no block had time-to-cuts from more than one orderer: {ttc:?}"
    );
    assert!(
        messages
            .iter()
            .filter(|m| matches!(m, KafkaMessage::Connect))
            .count()
            >= 3,
        "each orderer announced itself"
    );

    // SIGKILL one orderer under load; the others go on; it comes back and resumes from
    // its last block's offset: no gap, no duplicate, the same blocks as the others.
    let victim = 1;
    let load = {
        let addr = net.nodes[0].addr.clone();
        let client = client.clone();
        tokio::spawn(async move { submit_all(CHANNEL, &addr, &client, 900_000, 600).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    net.nodes[victim].kill();
    acked.extend(load.await.expect("load during the kill"));
    acked.extend(submit_all(CHANNEL, &net.nodes[2].addr, &client, 950_000, 100).await);
    let admin = net.admins[victim].clone();
    net.nodes[victim].restart(&admin).await;
    acked.extend(submit_all(CHANNEL, &net.nodes[victim].addr, &client, 990_000, 50).await);
    converged(CHANNEL, &net.all(), &acked).await;
    assert_identical_chains(&net).await;
    assert!(
        net.nodes[victim]
            .log_text()
            .contains("kafka chain starting"),
        "the restarted orderer logged where it resumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_answers_unavailable_then_recovers_losing_nothing() {
    let cluster = Cluster::mock();
    let topic = unique_topic("ordo.outage");
    cluster.create_topic(&topic).await;
    let net = Network::start(
        &cluster,
        &topic,
        "[kafka]\ndelivery_timeout_ms = 1500\nretry_backoff_ms = 200\n",
        &["--batch-timeout-ms", "20"],
    )
    .await;
    let client = net.c.identity("BankB", "client");
    let mut acked = submit_all(CHANNEL, &net.nodes[0].addr, &client, 0, 200).await;

    cluster.all_down();
    // Every envelope sent during the outage is answered, none with SUCCESS: the first
    // ones once their delivery times out, later ones at once (the chain knows it is
    // disconnected).
    let mut unavailable = 0;
    for round in 0..3u64 {
        let (envs, _): (Vec<_>, Vec<_>) = (0..20)
            .map(|i| message(&client, CHANNEL, 100, 10_000 + round * 100 + i))
            .unzip();
        let responses = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            broadcast(&net.nodes[(round % 3) as usize].addr, envs),
        )
        .await
        .expect("answered during the outage");
        for r in responses {
            assert_eq!(
                Code::try_from(r.status),
                Ok(Code::ServiceUnavailable),
                "during the outage: {}",
                r.info
            );
            unavailable += 1;
        }
    }
    assert_eq!(unavailable, 60);
    let info = channel_info(&net.nodes[0].addr, &net.admins[0], CHANNEL).await;
    assert_ne!(info.role, "kafka", "the chain says it is not connected");

    cluster.all_up();
    for (i, n) in net.nodes.iter().enumerate() {
        acked.extend(submit_all(CHANNEL, &n.addr, &client, 100_000 * (i as u64 + 1), 100).await);
    }
    converged(CHANNEL, &net.all(), &acked).await;
    assert_identical_chains(&net).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_moves_and_injected_errors_under_load_change_nothing() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = Cluster::mock();
    let topic = unique_topic("ordo.faults");
    cluster.create_topic(&topic).await;
    let net = Network::start(
        &cluster,
        &topic,
        "[kafka]\ndelivery_timeout_ms = 5000\nretry_backoff_ms = 200\n",
        &["--batch-timeout-ms", "20", "--max-message-count", "50"],
    )
    .await;
    let client = net.c.identity("BankC", "client");
    let load: Vec<_> = net
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let addr = n.addr.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for round in 0..6u64 {
                    acked.extend(
                        submit_all(CHANNEL, &addr, &client, (i as u64 * 10 + round) * 1000, 100)
                            .await,
                    );
                }
                acked
            })
        })
        .collect();
    // While the load runs: the leader moves around the brokers, produce requests fail
    // with retriable errors, and fetches hit a stale leader.
    for (step, leader) in [2, 3, 1, 3, 2, 1].into_iter().enumerate() {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        cluster.move_leader(&topic, leader);
        if step % 2 == 0 {
            cluster.inject_errors(
                RDKafkaApiKey::Produce,
                &[
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                ],
            );
        } else {
            cluster.inject_errors(
                RDKafkaApiKey::Fetch,
                &[
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
                ],
            );
        }
    }
    let mut acked = Vec::new();
    for t in load {
        acked.extend(t.await.expect("load"));
    }
    assert_eq!(acked.len(), 1800, "every envelope acknowledged in the end");
    converged(CHANNEL, &net.all(), &acked).await;
    assert_identical_chains(&net).await;
}

/// A CONFIG_UPDATE of `channel` to `config`, signed by `admins` (the submitter is the
/// first).
fn config_update(config: &ordo_proto::pb::common::ChannelConfig, admins: &[&Identity]) -> Envelope {
    let bytes = config.encode_to_vec();
    let update = ConfigUpdate {
        config: bytes.clone().into(),
        signatures: admins
            .iter()
            .map(|a| ConfigSignature {
                signer: a.cert_bytes().clone(),
                signature: a.sign(&bytes).to_vec().into(),
            })
            .collect(),
    };
    ordo_proto::envelope::create_signed(
        admins[0],
        &config.channel_id,
        HeaderType::ConfigUpdate,
        update.encode_to_vec().into(),
        ordo_proto::now_ms(),
    )
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_orderer_joins_after_a_config_block_without_the_history() {
    let cluster = Cluster::from_env();
    let topic = unique_topic("ordo.kafkajoin");
    cluster.create_topic(&topic).await;
    let net = Network::start(
        &cluster,
        &topic,
        "",
        &["--batch-timeout-ms", "20", "--max-message-count", "40"],
    )
    .await;
    let client = net.c.identity("BankB", "client");
    let mut acked = submit_all(CHANNEL, &net.nodes[0].addr, &client, 0, 200).await;

    // A config update (smaller blocks) puts a config block in the middle of the chain.
    let before = chain(CHANNEL, &net.nodes[0].addr, &net.admins[0]).await;
    let mut config = ordo_proto::config::config_from_block(&before[0]).expect("genesis config");
    config.sequence = 1;
    if let Some(b) = config.orderer.as_mut().and_then(|o| o.batch_size.as_mut()) {
        b.max_message_count = 25;
    }
    // Sent to an orderer that may still be connecting to the brokers: retried while it
    // answers SERVICE_UNAVAILABLE, as a client would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = broadcast(
            &net.nodes[1].addr,
            vec![config_update(&config, &[&net.admins[1], &net.admins[2]])],
        )
        .await;
        if r[0].status == Code::Success as i32 {
            break;
        }
        assert_eq!(
            r[0].status,
            Code::ServiceUnavailable as i32,
            "{}",
            r[0].info
        );
        assert!(std::time::Instant::now() < deadline, "{}", r[0].info);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    acked.extend(submit_all(CHANNEL, &net.nodes[2].addr, &client, 1_000, 200).await);
    converged(CHANNEL, &net.all(), &acked).await;
    let chain0 = chain(CHANNEL, &net.nodes[0].addr, &net.admins[0]).await;
    let config_block = chain0
        .iter()
        .rev()
        .find(|b| ordo_proto::config::config_from_block(b).is_ok())
        .expect("the config block")
        .clone();
    let h = ordo_proto::block::number(&config_block);
    assert!(h > 1, "the config block is in the middle of the chain");

    // A block that is not the channel's block h (another previous hash: a different
    // header) is refused by what the orderers hold, and leaves nothing behind.
    // The new orderer has an identity of its own: the channel config lists it nowhere.
    issue_orderer(&net.c, "BankA", "orderer3");
    let admin = net.c.identity("BankA", "admin");
    let mut joiner = OrdererProcess::start_as(&net.c, "orderer3", "BankA", "orderer3", "");
    joiner.wait_ready(&admin).await;
    let joiner_addr = joiner.addr.clone();
    let mut forged = config_block.clone();
    if let Some(header) = forged.header.as_mut() {
        header.previous_hash = vec![9u8; 32].into();
    }
    let (code, info) = join_block(&joiner.addr, &admin, forged.encode_to_vec()).await;
    assert_eq!(code, tonic::Code::InvalidArgument, "{info}");
    assert!(info.contains("holds another block"), "{info}");

    // The real one: the new orderer holds nothing below h + 1 and cuts the same blocks.
    let (code, info) = join_block(&joiner.addr, &admin, config_block.encode_to_vec()).await;
    assert_eq!(code, tonic::Code::Ok, "{info}");
    let info = channel_info(&joiner.addr, &admin, CHANNEL).await;
    assert_eq!(info.first_block, h + 1, "{info:?}");
    acked.extend(submit_all(CHANNEL, &joiner.addr, &client, 2_000, 100).await);
    acked.extend(submit_all(CHANNEL, &net.nodes[0].addr, &client, 3_000, 100).await);
    let mut all = net.all();
    all.push((joiner_addr.as_str(), &admin));
    converged(CHANNEL, &all, &acked).await;
    let joined = chain(CHANNEL, &joiner.addr, &admin).await;
    let reference = chain(CHANNEL, &net.nodes[0].addr, &net.admins[0]).await;
    assert_eq!(ordo_proto::block::number(&joined[0]), h + 1);
    for b in &joined {
        let theirs = &reference[ordo_proto::block::number(b) as usize];
        assert_eq!(
            b.header,
            theirs.header,
            "block {}",
            ordo_proto::block::number(b)
        );
        assert_eq!(
            b.metadata.as_ref().map(|m| &m.consenter_metadata),
            theirs.metadata.as_ref().map(|m| &m.consenter_metadata),
            "resume point of block {}",
            ordo_proto::block::number(b)
        );
    }
    // Below the join block: NOT_FOUND naming the first block held; the join block itself,
    // the config in force, is still served.
    let d = deliver(
        &joiner.addr,
        &client,
        CHANNEL,
        at(1),
        Some(at(1)),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::NotFound, "{}", d.info);
    assert!(
        d.info
            .contains(&format!("the lowest block held is {}", h + 1)),
        "{}",
        d.info
    );
    let d = deliver(
        &joiner.addr,
        &client,
        CHANNEL,
        at(h),
        Some(at(h)),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(d.code, tonic::Code::Ok, "{}", d.info);
    assert_eq!(d.blocks.len(), 1);
    // Another orderer's copy: the same block, signed by that orderer.
    assert_eq!(
        ordo_proto::block::hash(&d.blocks[0]),
        ordo_proto::block::hash(&config_block)
    );
    assert_eq!(d.blocks[0].data, config_block.data);
    assert_eq!(
        d.blocks[0].metadata.as_ref().map(|m| &m.consenter_metadata),
        config_block
            .metadata
            .as_ref()
            .map(|m| &m.consenter_metadata)
    );

    // Killed and restarted, it resumes from its own last block.
    joiner.kill();
    joiner.restart(&admin).await;
    acked.extend(submit_all(CHANNEL, &joiner.addr, &client, 4_000, 50).await);
    converged(CHANNEL, &all, &acked).await;
}
