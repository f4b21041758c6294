#!/bin/bash
# The consortium administrator's step: the channel's genesis block from the banks' public
# bundles (each verified: certificates signed by their CAs, no private keys). Runs once;
# later runs keep the block the nodes already joined with.
#   genesis.sh CHANNEL
set -euo pipefail
channel=$1
shared=/etc/ordo/shared
block=$shared/$channel.block
bundles=()
for org in BankA BankB BankC; do
    bundles+=(--org-bundle "$shared/bundles/$org.org.json")
    ordo crypto verify-bundle --org-bundle "$shared/bundles/$org.org.json" \
        --tls-ca-out "$shared/tls-ca-$org.crt" >/dev/null
done
if [[ -f $block ]]; then
    echo "genesis: $block exists; keeping it"
else
    ordo channel genesis "${bundles[@]}" --channel "$channel" --consensus raft \
        --ack-mode committed --chaincode bank,kv --out "$block.tmp"
    mv "$block.tmp" "$block"
fi
chmod 0644 "$block" "$shared"/tls-ca-*.crt
chmod 0755 "$shared" "$shared/bundles"
echo "genesis: channel $channel from ${#bundles[@]} bundle flags -> $block"
