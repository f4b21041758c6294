#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 15) on its committed corpus, with
# libFuzzer through `cargo fuzz`: what `.ci/run` does on every change, and, with a long
# time, what produced fuzz/RESULTS.md.
#
#   fuzz/scripts/run-all.sh [SECONDS] [TARGET...]
#
# New inputs go to a scratch corpus, never into the committed one (`cargo fuzz cmin`
# and a commit add them, deliberately). A crash leaves its input under
# fuzz/artifacts/<target>/ and fails the run; add it to fuzz/regressions/<target>/ once
# fixed, so `cargo test -p ordo-fuzz` keeps replaying it.
#
# Build: `--dev` (dependencies optimised as in the test build, Ordo's crates not) and no
# sanitizer (Ordo is safe Rust: a panic is the bug; ASan would double every execution's
# cost). RocksDB's C++ is linked from the test build's archive when one exists, so this
# build compiles no C++ again. ORDO_FUZZ_RELEASE=1 builds with optimisations instead,
# for long runs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
shift || true
source scripts/build-env.sh
profile=(--dev)
if [[ "${ORDO_FUZZ_RELEASE:-0}" == 1 ]]; then
    profile=(-O --codegen-units 16)
fi
build=(cargo fuzz build "${profile[@]}" -s none --target-dir "$fuzz_target_dir")
echo "== building the fuzz targets (${profile[*]})"
"${build[@]}"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi
# ORDO_FUZZ_SKIP: targets with a known open crash (fuzz/open/<target>/, fuzz/RESULTS.md),
# skipped by name so that the others still run.
status=0
for t in "${targets[@]}"; do
    if [[ " ${ORDO_FUZZ_SKIP:-} " == *" $t "* ]]; then
        echo "== skipping $t (known open crash: fuzz/open/$t/)"
        continue
    fi
    scratch=$(mktemp -d)
    echo "== fuzzing $t for ${seconds}s"
    if ! cargo fuzz run "${profile[@]}" -s none --target-dir "$fuzz_target_dir" "$t" \
        "$scratch" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=4096 \
        -timeout=60 -print_final_stats=1 2>&1 |
        grep -E 'DONE|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|panicked|ERROR|SUMMARY|Test unit written|deadly signal'; then
        echo "!! $t failed" >&2
        status=1
    fi
    rm -rf "$scratch"
done
exit "$status"
