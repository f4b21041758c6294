//! Seeded simulations of the cores: 1,000 seeds per core in every test run (a few
//! seconds); `ORDO_SIM_SEED=N` replays one seed, `ORDO_SIM_SEEDS=N` sweeps more.

use ordo_chaos::sim;

fn seeds() -> (u64, u64) {
    if let Some(seed) = std::env::var("ORDO_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return (seed, 1);
    }
    let count = std::env::var("ORDO_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    (0, count)
}

fn sweep(core: &str) {
    let (from, count) = seeds();
    let failures = sim::sweep(core, from, count).expect("known core");
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn cutter_thousand_seeds() {
    sweep("cutter");
}

#[test]
fn kafka_core_thousand_seeds() {
    sweep("kafka");
}

#[test]
fn a_seed_replays_exactly() {
    let a = sim::kafka::run(42).expect("seed 42 passes");
    let b = sim::kafka::run(42).expect("seed 42 passes");
    assert_eq!(
        (a.submitted, a.crashes, a.blocks, a.messages),
        (b.submitted, b.crashes, b.blocks, b.messages)
    );
    assert!(
        a.blocks > 10 && a.crashes > 0,
        "the run did something: {a:?}"
    );
}
