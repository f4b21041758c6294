//! The checkers can fail: an orderer built with the `test-faults` feature and run with
//! `ORDO_TEST_FAULT=ack-before-durable` answers SUCCESS in `committed` mode before the
//! envelope's block is on disk; killing it then loses acknowledged transactions, and the
//! `acked` checker must report exactly that.

use ordo_chaos::net::{Backend, NetSpec};
use ordo_chaos::proc::ordo_bin;
use ordo_chaos::scenario::{self, RunConfig, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acking_before_the_block_is_durable_is_caught() {
    let bin = ordo_bin().expect("ordo binary");
    let text = std::fs::read(&bin).expect("read the binary");
    let marker = b"TEST FAULT ack-before-durable";
    assert!(
        text.windows(marker.len()).any(|w| w == marker),
        "{} was built without the orderer's test faults: run the workspace tests \
         (cargo test --workspace), or build it with `cargo build -p ordo --features ordo-orderer/test-faults`",
        bin.display()
    );
    let mut spec = NetSpec::new(Backend::Solo);
    // Acknowledged envelopes wait up to two seconds for their block: a kill in that
    // window loses them.
    spec.batch_timeout_ms = 2_000;
    spec.max_message_count = 10_000;
    spec.orderer_env = vec![("ORDO_TEST_FAULT".into(), "ack-before-durable".into())];
    let cfg = RunConfig {
        record: false,
        ..RunConfig::short(11)
    };
    let report = scenario::run_with(Scenario::KillLoop, spec, &cfg)
        .await
        .expect("the network runs");
    println!("{}", report.line());
    let lost: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.property == "acked" && v.detail.contains("0 times"))
        .collect();
    assert!(
        !lost.is_empty(),
        "the acked checker missed the acknowledged transactions a crash lost: {:?}",
        report.violations
    );
    // Nothing else is broken by this fault: no fork, no gap, no duplicate.
    for v in &report.violations {
        assert!(
            v.property == "acked" || v.property == "liveness",
            "unexpected violation {v}"
        );
    }
}
