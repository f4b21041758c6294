#!/usr/bin/env bash
# An endurance run (#19): `ordo bench e2e` for DURATION_S against a fresh `ordo up`
# network (three orgs, a peer each, mutual TLS) with pruning on in every node, watching
# each node's data directory:
#   endurance.sh BIN LABEL DURATION_S CLIENTS ACCOUNTS
# UP_ARGS adds flags to `ordo up` (e.g. UP_ARGS="--consensus raft --ack-mode committed").
# RETAIN_BYTES is each node's block budget per channel (default 256 MiB; set through the
# nodes' environment, ORDO_LEDGER_RETAIN_BYTES); no archive, so that what the nodes hold
# is all the disk the run uses.
# Keeps, in $BENCH_DIR/results (default /var/tmp/bn/results): the JSON report, the plot
# (SVG), the live progress lines, and the nodes' CPU seconds; deletes the network after.
set -uo pipefail
BIN=$1 LABEL=$2 DUR=$3 C=$4 A=$5
mkdir -p "${BENCH_DIR:-/var/tmp/bn}/results" && cd "${BENCH_DIR:-/var/tmp/bn}"
D=$PWD/$LABEL R=$PWD/results/$LABEL
rm -rf "$D" "$D.up.log"
export ORDO_LEDGER_RETAIN_BYTES=${RETAIN_BYTES:-268435456}
"$BIN" up --dir "$D" ${UP_ARGS:-} > "$D.up.log" 2>&1 &
UP=$!
for _ in $(seq 180); do grep -q "network ready" "$D.up.log" && break; sleep 1; done
grep -q "network ready" "$D.up.log" || { echo "the network did not start"; tail "$D.up.log"; kill -INT $UP; exit 1; }
sleep 2
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
declare -A pid c0
names=()
for p in $(pgrep -f -- "--config $D/"); do
  n=$(tr '\0' ' ' < /proc/$p/cmdline | sed -E "s#.*--config $D/([^/]+)/.*#\1#")
  names+=("$n"); pid[$n]=$p; c0[$n]=$(cpu_s "$p")
done
watch=()
for n in "${names[@]}"; do watch+=(--watch-disk "$D/$n/data"); done
echo "$LABEL: ${DUR}s, $C clients, $A accounts, retain_bytes $ORDO_LEDGER_RETAIN_BYTES, nodes ${names[*]}"
/usr/bin/time -f "client cpu_s=%U+%S wall_s=%e maxrss_kb=%M" -o "$R.time" \
  "$BIN" bench e2e --network "$D/network.json" --duration "$DUR" --clients "$C" \
  --accounts "$A" --window-s 60 "${watch[@]}" --plot "$R.svg" --json ${BENCH_ARGS:-} \
  > "$R.json" 2> "$R.progress"
{
  for n in "${names[@]}"; do
    echo "$n cpu_s=$(awk -v a="${c0[$n]}" -v b="$(cpu_s "${pid[$n]}")" 'BEGIN{printf "%.2f", b - a}')"
  done
  cat "$R.time"
  # What each node says it holds: first block held and ledger bytes, from its metrics.
  for port in $(grep -o '"ops_addr": *"[^"]*"' "$D/network.json" | grep -o '[0-9]*"$' | tr -d '"'); do
    curl -s "http://127.0.0.1:$port/metrics" | grep -E '^ordo_[a-z]+_ledger_(first_block|chain_bytes)' | sed "s/^/:$port /"
  done
} > "$R.nodes"
cat "$R.nodes"
python3 - "$R.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['tx_per_s']:.0f} VALID tx/s over {r['duration_s']:.0f} s; p50 {r['latency_ms_p50']:.0f} ms, p99 {r['latency_ms_p99']:.0f} ms; "
      f"peers agree {r['commit_hashes_agree']}, money conserved {r['money_conserved']}; failures {r['failures']}")
d = r.get('drift')
if d:
    print(f"first {d['span_s']:.0f} s vs last: {d['first_tx_per_s']:.0f} -> {d['last_tx_per_s']:.0f} tx/s "
          f"({d['throughput_change_pct']:+.1f}%), p99 {d['first_p99_ms']:.0f} -> {d['last_p99_ms']:.0f} ms ({d['p99_change_pct']:+.1f}%)")
disk = r.get('disk') or {'samples': []}
s = disk['samples']
if s:
    mib = lambda b: b / 2**20
    print(f"disk MiB: start {mib(s[0]['total_bytes']):.0f}, max {max(mib(x['total_bytes']) for x in s):.0f}, end {mib(s[-1]['total_bytes']):.0f}; "
          + ", ".join(f"{k} {mib(v):.0f}" for k, v in s[-1]['parts'].items()))
for w in r['windows']:
    t = w['end_s']
    total = [x['total_bytes'] for x in s if x['at_s'] <= t]
    print(f"  {w['start_s']:5.0f}-{w['end_s']:<5.0f} {w['tx_per_s']:7.0f} tx/s  p50 {w['latency_ms_p50']:6.0f}  p99 {w['latency_ms_p99']:6.0f} ms"
          + (f"  disk {total[-1] / 2**20:7.0f} MiB" if total else ""))
EOF
kill -INT $UP; wait $UP 2>/dev/null
rm -rf "$D"
