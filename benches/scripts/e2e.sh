#!/usr/bin/env bash
# One `ordo bench e2e` run on a fresh `ordo up` network (solo, three orgs, mutual TLS;
# under $BENCH_DIR, default /var/tmp/bn; deleted afterwards):
#   e2e.sh BIN LABEL CLIENTS ACCOUNTS DURATION_S
# UP_ARGS adds flags to `ordo up` (e.g. UP_ARGS="--consensus raft --ack-mode committed").
# Prints the CPU seconds each node and the bench client used during the load (user +
# system, from /proc and /usr/bin/time), so a transaction's cost can be split by process,
# then the bench's JSON summary. Alternate two binaries run by run to compare them back
# to back (benches/RESULTS.md).
set -uo pipefail
BIN=$1 LABEL=$2 C=$3 A=$4 DUR=$5
mkdir -p "${BENCH_DIR:-/var/tmp/bn}" && cd "${BENCH_DIR:-/var/tmp/bn}"
D=$PWD/$LABEL
rm -rf "$D" "$D.up.log"
"$BIN" up --dir "$D" ${UP_ARGS:-} > "$D.up.log" 2>&1 &
UP=$!
for _ in $(seq 180); do grep -q "network ready" "$D.up.log" && break; sleep 1; done
sleep 2
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
declare -A pid c0
names=()
for p in $(pgrep -f -- "--config $D/"); do
  n=$(tr '\0' ' ' < /proc/$p/cmdline | sed -E "s#.*--config $D/([^/]+)/.*#\1#")
  names+=("$n"); pid[$n]=$p; c0[$n]=$(cpu_s "$p")
done
/usr/bin/time -f "client cpu_s=%U+%S wall_s=%e" -o "$D.time" \
  "$BIN" bench e2e --network "$D/network.json" --duration "$DUR" --clients "$C" \
  --accounts "$A" --json ${BENCH_ARGS:-} > "$D.bench.json" 2> "$D.bench.err"
# Node CPU over the whole bench command: opening the accounts before the clock is
# included (a small part at these durations; the JSON times the load alone).
for n in "${names[@]}"; do
  echo "$n cpu_s=$(awk -v a="${c0[$n]}" -v b="$(cpu_s "${pid[$n]}")" 'BEGIN{printf "%.2f", b - a}')"
done
cat "$D.time"
tail -1 "$D.bench.json"
kill -INT $UP; wait $UP 2>/dev/null
rm -rf "$D"
