//! Three `ordo orderer` processes running one raft channel over the Cluster service, on
//! real sockets: a leader is elected, every node orders (followers forward to the leader),
//! acknowledged (`committed` mode) envelopes are in every ledger exactly once, the leader
//! is killed with SIGKILL under load and a new one takes over, and the killed node comes
//! back and catches up to byte-identical block headers.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::raft::*;
use common::*;
use ordo_proto::identity::Identity;

const CHANNEL: &str = "raftch";
const ORGS: [&str; 3] = ["BankA", "BankB", "BankC"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_raft_orderers_survive_a_killed_leader() {
    let c = Consortium::new(&ORGS.join(","));
    let mut nodes: Vec<OrdererProcess> = ORGS
        .iter()
        .enumerate()
        .map(|(i, org)| OrdererProcess::start(&c, &format!("orderer{i}"), org))
        .collect();
    let admins: Vec<Identity> = ORGS.iter().map(|o| c.identity(o, "admin")).collect();
    for (n, a) in nodes.iter_mut().zip(&admins) {
        n.wait_ready(a).await;
    }
    let endpoints: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let genesis = c.genesis(
        CHANNEL,
        &[
            "--consensus",
            "raft",
            "--orderer-endpoints",
            &endpoints.join(","),
            "--ack-mode",
            "committed",
            "--batch-timeout-ms",
            "50",
        ],
    );
    for (n, a) in nodes.iter().zip(&admins) {
        join(&n.addr, a, &genesis).await;
    }
    let client = c.identity("BankA", "client");
    let all: Vec<(&str, &Identity)> = nodes
        .iter()
        .zip(&admins)
        .map(|(n, a)| (n.addr.as_str(), a))
        .collect();
    let leader = agreed_leader(CHANNEL, &all).await;
    let leader_ix: usize = leader
        .trim_start_matches("orderer")
        .parse()
        .expect("consenter names are orderer<i>");

    // Every node takes envelopes; followers forward them to the leader.
    let mut acked = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        acked.extend(submit_all(CHANNEL, &n.addr, &client, i as u64 * 1_000, 60).await);
    }
    converged(CHANNEL, &all, &acked).await;

    // The metrics name the leader: 1 on it, 0 on the others, all in the same term.
    let mut terms = HashSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let (code, text) = http_get(&n.ops, "/metrics");
        assert_eq!(code, 200);
        let expected = u8::from(i == leader_ix);
        assert!(
            text.contains(&format!(
                "ordo_orderer_raft_is_leader{{channel=\"{CHANNEL}\"}} {expected}"
            )),
            "orderer{i} metrics:\n{text}"
        );
        let term = text
            .lines()
            .find(|l| l.starts_with(&format!("ordo_orderer_raft_term{{channel=\"{CHANNEL}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
            .expect("raft_term exported");
        terms.insert(term);
    }
    assert_eq!(terms.len(), 1, "every node reports the same term");

    // SIGKILL the leader while a follower is being loaded.
    let survivor_ix = (leader_ix + 1) % 3;
    let survivor = nodes[survivor_ix].addr.clone();
    let load = {
        let client = client.clone();
        let survivor = survivor.clone();
        tokio::spawn(async move { submit_all(CHANNEL, &survivor, &client, 10_000, 400).await })
    };
    // Not synchronisation: the delay only moves where in the load the kill lands (the
    // assertions below hold wherever it lands: every envelope answered, every SUCCESS in
    // every ledger exactly once).
    tokio::time::sleep(Duration::from_millis(30)).await;
    nodes[leader_ix].kill();
    let killed_at = tokio::time::Instant::now();
    let failover = {
        let survivors: Vec<(String, Identity)> = nodes
            .iter()
            .zip(&admins)
            .enumerate()
            .filter(|(i, _)| *i != leader_ix)
            .map(|(_, (n, a))| (n.addr.clone(), a.clone()))
            .collect();
        tokio::spawn(async move {
            let refs: Vec<(&str, &Identity)> =
                survivors.iter().map(|(a, i)| (a.as_str(), i)).collect();
            agreed_leader(CHANNEL, &refs).await;
            killed_at.elapsed()
        })
    };
    acked.extend(load.await.expect("load task"));
    // A new leader within two election timeouts, each at its randomised maximum
    // (2 × 10 ticks of 100 ms): the followers notice the silence, pre-vote and vote.
    let failover = failover.await.expect("failover watcher");
    eprintln!("new raft leader {failover:?} after the kill");
    assert!(
        failover < Duration::from_secs(4),
        "no new leader within two election timeouts: {failover:?}"
    );
    let rest: Vec<(&str, &Identity)> = nodes
        .iter()
        .zip(&admins)
        .enumerate()
        .filter(|(i, _)| *i != leader_ix)
        .map(|(_, (n, a))| (n.addr.as_str(), a))
        .collect();
    let new_leader = agreed_leader(CHANNEL, &rest).await;
    assert_ne!(new_leader, leader, "a new leader took over");
    acked.extend(submit_all(CHANNEL, &survivor, &client, 20_000, 40).await);
    converged(CHANNEL, &rest, &acked).await;

    // The killed node restarts and catches up.
    nodes[leader_ix].restart(&admins[leader_ix]).await;
    let all: Vec<(&str, &Identity)> = nodes
        .iter()
        .zip(&admins)
        .map(|(n, a)| (n.addr.as_str(), a))
        .collect();
    let height = converged(CHANNEL, &all, &acked).await;
    assert!(height > 2, "blocks were cut");
    for n in nodes.iter_mut() {
        n.stop();
    }
}

/// The Cluster service is for consenters only: unauthenticated, forged and outsider
/// requests are refused with PERMISSION_DENIED, unknown channels with NOT_FOUND, and the
/// node keeps ordering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_requests_from_non_consenters_are_refused() {
    use ordo_proto::cluster_auth::{self, Purpose};
    use ordo_proto::pb::cluster::cluster_client::ClusterClient;
    use ordo_proto::pb::cluster::{StepRequest, SubmitRequest};

    let c = Consortium::new("BankA,BankB");
    let mut node = OrdererProcess::start(&c, "orderer0", "BankA");
    let admin = c.identity("BankA", "admin");
    node.wait_ready(&admin).await;
    let genesis = c.genesis(
        CHANNEL,
        &["--consensus", "raft", "--orderer-endpoints", &node.addr],
    );
    join(&node.addr, &admin, &genesis).await;
    let client = c.identity("BankA", "client");
    let outsider = c.identity("BankB", "orderer");
    let mut cluster = ClusterClient::new(common::connect(&node.addr).await.expect("connect"));
    let (env, tx_id) = message(&client, CHANNEL, 100, 1);
    let envelope: bytes::Bytes = prost::Message::encode_to_vec(&env).into();
    let digest: Vec<u8> = ordo_proto::hash::sha256(&envelope).to_vec();
    let submit = |auth| SubmitRequest {
        channel: CHANNEL.into(),
        envelope: envelope.clone(),
        tx_id: tx_id.clone(),
        config_seq: 0,
        is_config: false,
        auth,
    };
    let now = ordo_proto::now_ms();
    for (what, auth) in [
        ("no proof", None),
        (
            "a BankB orderer that is not a consenter",
            Some(cluster_auth::sign(
                &outsider,
                Purpose::Submit,
                CHANNEL,
                &digest,
                now,
            )),
        ),
        (
            "a proof for another purpose",
            Some(cluster_auth::sign(
                &client,
                Purpose::Step,
                CHANNEL,
                &digest,
                now,
            )),
        ),
    ] {
        let err = cluster.submit(submit(auth)).await.expect_err("refused");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{what}: {err}");
    }
    let mut unknown = submit(None);
    unknown.channel = "nope".into();
    let err = cluster.submit(unknown).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::NotFound);

    let step = StepRequest {
        channel: CHANNEL.into(),
        message: vec![1, 2, 3].into(),
        auth: Some(cluster_auth::sign(
            &outsider,
            Purpose::Step,
            CHANNEL,
            &[],
            now,
        )),
    };
    let err = cluster
        .step(tokio_stream::iter(vec![step]))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // Still serving: a client's envelopes are ordered (once the raft group is ready).
    let acked = submit_all(CHANNEL, &node.addr, &client, 100, 5).await;
    assert_eq!(acked.len(), 5);
    node.stop();
}
