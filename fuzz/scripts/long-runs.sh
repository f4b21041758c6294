#!/usr/bin/env bash
# The long runs fuzz/RESULTS.md records: every target (or those named) until 10 million
# executions or one hour, whichever comes first, on an optimised build.
#
#   fuzz/scripts/long-runs.sh OUT_DIR [TARGET...]
#
# Builds once (`cargo fuzz build -O`, no sanitizer, RocksDB linked from the test build as
# in run-all.sh), then runs each target's binary directly, so that editing the sources
# during a run of many hours changes nothing under way. Each target's corpus grows in
# OUT_DIR/corpus/<target> (seeded from the committed one, kept between runs); its log is
# OUT_DIR/<target>.log; one line per finished target is appended to OUT_DIR/summary.tsv:
# target, executions, exec/s, seconds, cov, ft, corpus entries, peak RSS MiB, result.
# ORDO_FUZZ_MAX_RUNS and ORDO_FUZZ_MAX_SECONDS change the limits.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:?usage: long-runs.sh OUT_DIR [TARGET...]}")
shift
max_runs=${ORDO_FUZZ_MAX_RUNS:-10000000}
max_seconds=${ORDO_FUZZ_MAX_SECONDS:-3600}
source scripts/build-env.sh
echo "== building the fuzz targets (-O)"
cargo fuzz build -O --codegen-units 16 -s none --target-dir "$fuzz_target_dir"
bin_dir="$fuzz_target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p "$out"
status=0
for t in "${targets[@]}"; do
    corpus="$out/corpus/$t"
    mkdir -p "$corpus" "$out/artifacts/$t"
    echo "== $t: up to $max_runs executions or ${max_seconds}s ($(date -u +%FT%TZ))"
    start=$(date +%s)
    result=clean
    if ! "$bin_dir/$t" "$corpus" "corpus/$t" -runs="$max_runs" -max_total_time="$max_seconds" \
        -rss_limit_mb=4096 -timeout=60 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$t/" >"$out/$t.log" 2>&1; then
        result=crash
        status=1
    fi
    seconds=$(($(date +%s) - start))
    stat() { sed -n "s/^stat::$1: *//p" "$out/$t.log" | tail -1; }
    last=$(grep -E '^#[0-9]+' "$out/$t.log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    entries=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$(stat number_of_executed_units)" \
        "$(stat average_exec_per_sec)" "$seconds" "$cov" "$ft" "$entries" \
        "$(stat peak_rss_mb)" "$result" | tee -a "$out/summary.tsv"
done
exit "$status"
