#!/usr/bin/env bash
# One raft-3 benchmark run on a fresh `ordo up` network (under $BENCH_DIR, default
# /var/tmp/bn; deleted afterwards): raft3.sh BIN LABEL ACK_MODE CLIENTS
# Prints, per orderer, the bytes it wrote to disk during the bench (/proc/PID/io
# write_bytes) per block written and the CPU seconds it used, then the bench's JSON
# summary. Alternate two
# binaries run by run to compare them back to back (benches/RESULTS.md). UP_ARGS adds
# flags to `ordo up` (e.g. UP_ARGS="--raft-max-inflight-blocks 10").
set -uo pipefail
BIN=$1 LABEL=$2 ACK=$3 C=$4
mkdir -p "${BENCH_DIR:-/var/tmp/bn}" && cd "${BENCH_DIR:-/var/tmp/bn}"
D=$PWD/$LABEL
rm -rf "$D" "$D.up.log"
"$BIN" up --dir "$D" --consensus raft --no-peers --ack-mode "$ACK" ${UP_ARGS:-} > "$D.up.log" 2>&1 &
UP=$!
for _ in $(seq 120); do grep -q "network ready" "$D.up.log" && break; sleep 1; done
sleep 2
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
declare -A pid w0 b0 c0
for i in 0 1 2; do
  pid[$i]=$(pgrep -f "orderer --config $D/orderer$i/orderer.toml")
  w0[$i]=$(awk '/^write_bytes/{print $2}' /proc/${pid[$i]}/io)
  c0[$i]=$(cpu_s "${pid[$i]}")
  b0[$i]=$(curl -s http://127.0.0.1:$((8443+10*i))/metrics | awk '/^ordo_orderer_blocks_written_total/{print $2}')
done
"$BIN" bench orderer --network "$D/network.json" --txs 200000 --payload-bytes 1024 --clients "$C" --json > "$D.bench.json" 2> "$D.bench.err"
sleep 3
for i in 0 1 2; do
  w1=$(awk '/^write_bytes/{print $2}' /proc/${pid[$i]}/io)
  b1=$(curl -s http://127.0.0.1:$((8443+10*i))/metrics | awk '/^ordo_orderer_blocks_written_total/{print $2}')
  blocks=$(( ${b1%.*} - ${b0[$i]%.*} ))
  bytes=$(( w1 - ${w0[$i]} ))
  cpu=$(awk -v a="${c0[$i]}" -v b="$(cpu_s "${pid[$i]}")" 'BEGIN{printf "%.2f", b - a}')
  echo "orderer$i blocks=$blocks write_bytes=$bytes per_block=$(( blocks > 0 ? bytes / blocks : 0 )) cpu_s=$cpu"
done
tail -1 "$D.bench.json"
kill -INT $UP; wait $UP 2>/dev/null
rm -rf "$D"
