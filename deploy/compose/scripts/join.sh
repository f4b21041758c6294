#!/bin/bash
# A bank's admin joins its own orderer and peer to the channel (skipped when a node has
# joined already), then waits until its orderer knows the raft leader.
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
for _ in $(seq 1 120); do
    info=$(ordo channel info --node "orderer.$org" --org "$org" --channel "$channel" --json 2>&1 || true)
    if grep -q '"leader": *"[^"]' <<<"$info"; then
        echo "join: $org joined $channel; its orderer knows the leader"
        exit 0
    fi
    sleep 1
done
echo "join: orderer.$org has no raft leader for $channel after 120 s" >&2
exit 1
