//! `ordo-sim`: runs the seeded simulations of the consensus cores.
//!
//! ```text
//! ordo-sim --core kafka --seed 1234          # replay one seed
//! ordo-sim --core cutter --seeds 10000       # sweep seeds 0..10000
//! ordo-sim --core kafka --seeds 1000 --from 5000
//! ```
//!
//! Exits 1 when a seed breaks a property, printing the seed and what broke.
//! `ORDO_SIM_LOG=debug` (a tracing filter) prints the nodes' logs while replaying.

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: ordo-sim --core cutter|kafka|raft|raft-torn|raft-disk|raft-disk-torn (--seed N | --seeds COUNT [--from N])"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    if let Ok(filter) = std::env::var("ORDO_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<&String> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let Some(core) = value("--core") else {
        return usage();
    };
    let (from, count) = match (value("--seed"), value("--seeds")) {
        (Some(s), None) => match s.parse::<u64>() {
            Ok(s) => (s, 1),
            Err(_) => return usage(),
        },
        (None, Some(n)) => {
            let from = value("--from").and_then(|f| f.parse().ok()).unwrap_or(0);
            match n.parse::<u64>() {
                Ok(n) => (from, n),
                Err(_) => return usage(),
            }
        }
        _ => return usage(),
    };
    // Seed by seed, so that a long sweep shows progress and a hang names its seed.
    let mut failures = Vec::new();
    for seed in from..from.saturating_add(count) {
        if count > 1 {
            eprint!("\rseed {seed} ({} failed so far)   ", failures.len());
        }
        match ordo_chaos::sim::sweep(core, seed, 1) {
            Err(e) => {
                eprintln!("{e}");
                return usage();
            }
            Ok(f) => failures.extend(f),
        }
    }
    if count > 1 {
        eprintln!();
    }
    if failures.is_empty() {
        println!("{core}: seeds {from}..{} passed", from + count);
        return ExitCode::SUCCESS;
    }
    for f in &failures {
        println!("FAIL {f}");
    }
    println!("{core}: {} of {count} seeds failed", failures.len());
    ExitCode::from(1)
}
