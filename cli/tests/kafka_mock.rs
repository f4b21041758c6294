//! `ordo kafka mock` as its own process: it prints its bootstrap address, speaks the real
//! Kafka protocol to real rdkafka clients (Ordo's partition producer and consumer), and
//! stops cleanly on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use ordo_consensus::kafka::broker::{PartitionConfig, PartitionConsumer, PartitionProducer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_cluster_process_serves_ordos_partition_clients() {
    let mut child = ordo()
        .args(["kafka", "mock", "--brokers", "3", "--topics", "ordo.mocked"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ordo kafka mock starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("bootstrap line");
    let brokers = line.trim().to_string();
    assert!(brokers.contains(':'), "bootstrap address: {brokers:?}");

    let cfg = PartitionConfig::new(brokers, "ordo.mocked");
    let producer = PartitionProducer::new(&cfg).expect("producer");
    for i in 0u8..20 {
        let offset = producer
            .send(&[i], Duration::from_secs(20))
            .await
            .expect("acknowledged by the mock brokers");
        assert_eq!(offset, i64::from(i));
    }
    let mut consumer = PartitionConsumer::new(&cfg, 10).expect("consumer");
    for i in 10u8..20 {
        let (offset, payload) = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("in time")
            .expect("consumed");
        assert_eq!((offset, payload.as_ref()), (i64::from(i), &[i][..]));
    }
    signal(child.id(), libc::SIGTERM);
    let status = child.wait().expect("exits");
    assert!(status.success(), "exit status {status}");
}
