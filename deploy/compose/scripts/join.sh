#!/bin/bash
# A bank's admin joins its own orderer and peer to the channel (skipped when a node has
# joined already), then waits until its orderer knows the raft leader and its peer has
# caught up to the orderer's height at that moment.
#   join.sh host-suffix CHANNEL [ORDERER_BLOCK]
# ORDERER_BLOCK (on the shared volume): the config block that made this bank's orderer a
# consenter of a running channel; its peer still joins from the genesis block.
set -euo pipefail
dom=$1
channel=$2
export ORDO_NETWORK=/org/network.json
org=$(sed -n 's/^org=//p' /org/org.env)
block=/etc/ordo/shared/$channel.block
orderer_block=/etc/ordo/shared/${3:-$channel.block}
for node in "orderer.$org" "peer.$org"; do
    # Captured first: `grep -q` closing the pipe early would fail the pipeline.
    joined=$(ordo channel list --node "$node" --org "$org" --json)
    if grep -q "\"$channel\"" <<<"$joined"; then
        echo "join: $node already serves $channel"
    else
        from=$block
        [[ $node == orderer.* ]] && from=$orderer_block
        ordo channel join --node "$node" --org "$org" --genesis "$from"
    fi
done
# The height of a node's channel, from `ordo channel info --json` (0 while it cannot answer).
height_of() {
    local info
    info=$(ordo channel info --node "$1" --org "$org" --channel "$channel" --json 2>/dev/null || true)
    grep -o '"height": *[0-9]*' <<<"$info" | grep -o '[0-9]*$' || echo 0
}
leader=no
for _ in $(seq 1 120); do
    info=$(ordo channel info --node "orderer.$org" --org "$org" --channel "$channel" --json 2>&1 || true)
    if grep -q '"leader": *"[^"]' <<<"$info"; then
        leader=yes
        break
    fi
    sleep 1
done
if [[ $leader != yes ]]; then
    echo "join: orderer.$org has no raft leader for $channel after 120 s" >&2
    exit 1
fi
# The peer joined from the genesis block: until it has pulled the blocks up to the one
# that admitted this org, its gateway refuses this org's own clients ("unknown org").
target=$(height_of "orderer.$org")
for i in $(seq 1 300); do
    got=$(height_of "peer.$org")
    if (( got >= target )); then
        echo "join: $org joined $channel; its orderer knows the leader and its peer is at height $got"
        exit 0
    fi
    (( i % 10 == 0 )) && echo "join: peer.$org at height $got of $target"
    sleep 1
done
echo "join: peer.$org reached only height $(height_of "peer.$org") of $target after 300 s" >&2
exit 1
