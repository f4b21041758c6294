#!/usr/bin/env bash
# Joining a channel from a snapshot against replaying it from genesis, on a fresh `ordo up`
# network (solo, three orgs, a peer each, mutual TLS; under $BENCH_DIR, default
# /var/tmp/bn; deleted afterwards):
#   snapshot_join.sh BIN TXS [LOAD_TXS]
# 1. `ordo bench peer --txs TXS` commits TXS signed `bank` transactions on every peer;
# 2. the BankA peer takes a snapshot (`ordo peer snapshot`), timed;
# 3. the BankC peer leaves the channel and joins it again from the genesis block: the time
#    until it is back at the height is the replay;
# 4. it leaves again and joins from the snapshot while `ordo bench peer --txs LOAD_TXS`
#    (default 100000) loads the network: the time the join call takes, and the time until
#    it has caught up with the load;
# 5. every peer's height and commit hash, which must agree.
# Prints one line per step and a JSON summary (benches/RESULTS.md).
set -euo pipefail
BIN=$1 TXS=$2 LOAD=${3:-100000}
mkdir -p "${BENCH_DIR:-/var/tmp/bn}" && cd "${BENCH_DIR:-/var/tmp/bn}"
D=$PWD/snapjoin
rm -rf "$D" "$D.up.log"
"$BIN" up --dir "$D" ${UP_ARGS:-} > "$D.up.log" 2>&1 &
UP=$!
trap 'kill -INT $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 180); do grep -q "network ready" "$D.up.log" && break; sleep 1; done
NET=(--network "$D/network.json")
CH=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["channels"][0]["name"])' "$D/network.json")
GENESIS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["channels"][0]["genesis_block"])' "$D/network.json")
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}'; }
info() { "$BIN" channel info "${NET[@]}" --node "$1" --org "$2" --channel "$CH" --json; }
height() { info "$1" "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["height"])'; }
wait_height() { # node org height
  while [ "$(height "$1" "$2" 2>/dev/null || echo 0)" -lt "$3" ]; do sleep 0.2; done
}

t=$(now)
"$BIN" bench peer "${NET[@]}" --txs "$TXS" --json > "$D.fill.json" 2> "$D.fill.err"
echo "fill: $TXS txs committed on every peer in $(since "$t") s"
H=$(height peer0.BankA BankA)

t=$(now)
"$BIN" peer snapshot "${NET[@]}" --node peer0.BankA --org BankA --channel "$CH" --json > "$D.snap.json"
SNAP_S=$(since "$t")
SNAP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["path"])' "$D.snap.json")
echo "snapshot: height $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["height"])' "$D.snap.json") in ${SNAP_S} s, $(du -sh "$SNAP" | cut -f1) at $SNAP"

"$BIN" channel remove "${NET[@]}" --node peer0.BankC --org BankC --channel "$CH" > /dev/null
t=$(now)
"$BIN" channel join "${NET[@]}" --node peer0.BankC --org BankC --genesis "$GENESIS" > /dev/null
wait_height peer0.BankC BankC "$H"
REPLAY_S=$(since "$t")
echo "replay from genesis: back at height $H in ${REPLAY_S} s"

"$BIN" channel remove "${NET[@]}" --node peer0.BankC --org BankC --channel "$CH" > /dev/null
# The load's bench watches every peer of its network file: give it the other two.
python3 - "$D/network.json" "$D/network-load.json" <<'PY'
import json, sys
n = json.load(open(sys.argv[1]))
n["nodes"] = [x for x in n["nodes"] if x["name"] != "peer0.BankC"]
json.dump(n, open(sys.argv[2], "w"))
PY
"$BIN" bench peer --network "$D/network-load.json" --txs "$LOAD" --json > "$D.load.json" 2> "$D.load.err" &
LOADER=$!
sleep 3
t=$(now)
"$BIN" channel join "${NET[@]}" --node peer0.BankC --org BankC --snapshot "$SNAP" > /dev/null
JOIN_S=$(since "$t")
echo "join from the snapshot: ${JOIN_S} s (while loaded)"
LOGC=$(python3 -c 'import json,sys; print([x["log_file"] for x in json.load(open(sys.argv[1]))["nodes"] if x["name"]=="peer0.BankC"][0])' "$D/network.json")
IMPORT_MS=$(grep -h "channel joined from a snapshot" "$LOGC" | tail -1 | sed -E 's/.*import_ms[=:" ]+([0-9]+).*/\1/')
echo "  of which the import (files checked and loaded): ${IMPORT_MS} ms"
wait $LOADER
FINAL=$(height peer0.BankA BankA)
wait_height peer0.BankC BankC "$FINAL"
CAUGHT_S=$(since "$t")
echo "caught up to height $FINAL ${CAUGHT_S} s after the join began"

HASHES=$(for p in "peer0.BankA BankA" "peer0.BankB BankB" "peer0.BankC BankC"; do
  set -- $p; info "$1" "$2" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["height"], d["commit_hash"])'
done | sort -u)
echo "peers' (height, commit hash): $HASHES"
[ "$(echo "$HASHES" | wc -l)" -eq 1 ] || { echo "peers disagree" >&2; exit 1; }
python3 - "$TXS" "$H" "$SNAP_S" "$REPLAY_S" "$JOIN_S" "$CAUGHT_S" "$FINAL" "$HASHES" "$(du -sb "$SNAP" | cut -f1)" "${IMPORT_MS:-0}" <<'EOF'
import json, sys
a = sys.argv[1:]
print(json.dumps({"txs": int(a[0]), "height": int(a[1]), "snapshot_s": float(a[2]),
                  "replay_s": float(a[3]), "join_s": float(a[4]), "caught_up_s": float(a[5]),
                  "final_height": int(a[6]), "commit_hash": a[7].split()[1],
                  "snapshot_bytes": int(a[8]), "import_ms": int(a[9] or 0)}))
EOF
