//! Coverage-guided fuzzing of every input Ordo takes from the network or from operators
//! (issue "Every byte from the network fuzzed"): one target per entry point, run by
//! `cargo fuzz` (libFuzzer) from `fuzz_targets/`, their bodies here so that `cargo test`
//! replays every committed corpus file and every regression input through exactly the code
//! libFuzzer runs. `fuzz/RESULTS.md` records the long runs; `.ci/run` runs each target for
//! a short bounded time on its corpus.
//!
//! Targets drive the real code: pure checks with fixed inputs where the code is pure (the
//! filters, the validator, block verification, the kafka engine), and the real handlers of
//! an in-process orderer and peer on temporary directories where it is not (Broadcast,
//! Deliver, Admin, proposals, Query, raft). Where a signature guards the interesting
//! checks, the harness signs the fuzzer's bytes with a fixture key, so the fuzzer works on
//! the content and not only on the signature check.

pub mod fixture;
pub mod nodes;
pub mod targets;

#[cfg(test)]
mod replay;
