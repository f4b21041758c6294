//! `cargo test` for the fuzz targets: every target's seeds, committed corpus and
//! regression inputs run through it (a crash found by fuzzing becomes a file under
//! `regressions/<target>/` and stays a test), and the committed corpus holds at least
//! the seeds.
//!
//! `ORDO_REGENERATE_CORPUS=1 cargo test -p ordo-fuzz` writes the seeds into
//! `corpus/<target>/` (named by their SHA-256, as libFuzzer names inputs).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::targets::ALL;

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn name(seed: &[u8]) -> String {
    Sha256::digest(seed)
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_target_has_a_binary_and_a_seeded_corpus() {
    let regenerate = std::env::var_os("ORDO_REGENERATE_CORPUS").is_some();
    for target in ALL {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz_targets")
            .join(format!("{}.rs", target.name));
        assert!(bin.is_file(), "no fuzz_targets/{}.rs", target.name);
        let corpus = dir("corpus", target.name);
        let seeds = (target.seeds)();
        assert!(!seeds.is_empty(), "{} has no seeds", target.name);
        for seed in seeds {
            let path = corpus.join(name(&seed));
            if regenerate {
                std::fs::create_dir_all(&corpus).expect("corpus directory");
                std::fs::write(&path, &seed).expect("seed written");
            }
            assert!(
                path.is_file(),
                "{}'s seed {} is not in its corpus; run with ORDO_REGENERATE_CORPUS=1",
                target.name,
                path.display()
            );
        }
    }
}

#[test]
fn every_corpus_and_regression_input_runs_clean() {
    for target in ALL {
        let inputs: Vec<PathBuf> = files(&dir("corpus", target.name))
            .into_iter()
            .chain(files(&dir("regressions", target.name)))
            .collect();
        for path in &inputs {
            let data = std::fs::read(path).expect("a corpus file");
            (target.run)(&data);
        }
        for seed in (target.seeds)() {
            (target.run)(&seed);
        }
    }
}
