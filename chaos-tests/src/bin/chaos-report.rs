//! `chaos-report`: the results table of `chaos-tests/RESULTS.md` from the runs' reports.
//!
//! ```text
//! chaos-report [target/chaos/results.jsonl]
//! ```
//!
//! Every scenario run appends one JSON report to `results.jsonl`; this groups them by
//! scenario and backend and prints a Markdown table: runs (seeds), faults injected,
//! transactions submitted and acknowledged, blocks, violations.

use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Default)]
struct Row {
    seeds: Vec<u64>,
    faults: u64,
    submitted: u64,
    acked: u64,
    blocks: u64,
    violations: u64,
}

fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ordo_chaos::scenario::results_dir().join("results.jsonl"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            eprintln!("skipping a line that is not a report");
            continue;
        };
        let key = (
            v["scenario"].as_str().unwrap_or("?").to_string(),
            v["backend"].as_str().unwrap_or("?").to_string(),
        );
        let row = rows.entry(key).or_default();
        row.seeds.push(v["seed"].as_u64().unwrap_or(0));
        row.faults += v["faults"].as_u64().unwrap_or(0);
        row.submitted += v["submitted"].as_u64().unwrap_or(0);
        row.acked += v["acked"].as_u64().unwrap_or(0);
        row.blocks += v["blocks"].as_u64().unwrap_or(0);
        row.violations += v["violations"].as_array().map_or(0, |a| a.len() as u64);
    }
    println!("| scenario | backend | runs | seeds | faults injected | txs submitted | txs acked | blocks | violations |");
    println!("|---|---|---:|---|---:|---:|---:|---:|---:|");
    let mut total = Row::default();
    for ((scenario, backend), r) in &rows {
        let mut seeds = r.seeds.clone();
        seeds.sort_unstable();
        seeds.dedup();
        let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
        println!(
            "| {scenario} | {backend} | {} | {} | {} | {} | {} | {} | {} |",
            r.seeds.len(),
            list.join(", "),
            r.faults,
            r.submitted,
            r.acked,
            r.blocks,
            r.violations
        );
        total.seeds.extend(&r.seeds);
        total.faults += r.faults;
        total.submitted += r.submitted;
        total.acked += r.acked;
        total.blocks += r.blocks;
        total.violations += r.violations;
    }
    println!(
        "| **all** | {} combinations | {} | | {} | {} | {} | {} | {} |",
        rows.len(),
        total.seeds.len(),
        total.faults,
        total.submitted,
        total.acked,
        total.blocks,
        total.violations
    );
    ExitCode::SUCCESS
}
