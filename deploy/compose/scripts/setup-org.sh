#!/bin/bash
# One bank's own setup, as its platform team would run it on its own machine: keys made
# here (only on this bank's volumes), node configs, and the bank's public org bundle
# published on the shared volume. Idempotent: a second run keeps the keys.
#   setup-org.sh ORG host-suffix      e.g. setup-org.sh BankA banka
set -euo pipefail
org=$1
dom=$2
uid=10001
# The banks this bank knows of: "Org:host-suffix" pairs (a bank joining later lists itself).
consortium=${ORDO_CONSORTIUM:-BankA:banka BankB:bankb BankC:bankc}
crypto=/org/crypto
mine=$crypto/$org

if [[ ! -f $crypto/crypto.json ]]; then
    ordo crypto init --orgs "$org" --out "$crypto" \
        --hosts "orderer.$dom,peer.$dom,localhost,127.0.0.1"
    # Each node's TLS certificate names only that node (plus loopback for the host).
    ordo crypto renew --crypto "$crypto" --org "$org" --name orderer --tls-only \
        --hosts "orderer.$dom,localhost,127.0.0.1"
    ordo crypto renew --crypto "$crypto" --org "$org" --name peer --tls-only \
        --hosts "peer.$dom,localhost,127.0.0.1"
else
    echo "setup $org: keys already made; keeping them"
fi

# Each node's volume gets its config, its own key pairs and its org's TLS CA only
# (`ordo config` copies them and checks the node will load them); the CA keys and the
# admin's keys stay on the bank's admin volume. Both listen on every interface of their
# container; the operations port is 8443 for both. The peer announces itself as
# peer.$dom:7051 and finds the other banks' peers through the channel's anchor peers (the
# bundles' peer endpoints), so its config lists no endorsers.
ordo config orderer --crypto "$crypto" --org "$org" --out /keys/orderer --force \
    --listen 0.0.0.0:7050 --ops-listen 0.0.0.0:8443 --data-dir /var/lib/ordo
ordo config peer --crypto "$crypto" --org "$org" --out /keys/peer --force \
    --listen 0.0.0.0:7051 --ops-listen 0.0.0.0:8443 --data-dir /var/lib/ordo \
    --endpoint "peer.$dom:7051"

# The bank's client view of the consortium (`ordo` commands with ORDO_NETWORK): every
# node, but only this bank's identities; other banks' TLS CAs come from their bundles
# (genesis.sh writes them to the shared volume).
node_entry() { # name role org addr
    printf '    {"name": "%s", "role": "%s", "org": "%s", "grpc_addr": "%s", "ops_addr": "", "pid": null, "command": [], "config": "", "data_dir": "", "log_file": ""}' "$1" "$2" "$3" "$4"
}
cas=""
for pair in $consortium; do
    cas+="${cas:+, }\"/etc/ordo/shared/tls-ca-${pair%%:*}.crt\""
done
member_entry() { # member
    printf '      "%s": {"key": "%s/%s.key", "cert": "%s/%s.cert", "tls": {"cert": "%s/%s.tls.crt", "key": "%s/%s.tls.key", "ca": [%s]}}' \
        "$1" "$mine" "$1" "$mine" "$1" "$mine" "$1" "$mine" "$1" "$cas"
}
{
    echo '{'
    echo '  "version": 1,'
    echo '  "dir": "/org",'
    echo "  \"crypto_dir\": \"$crypto\","
    echo '  "channels": [{"name": "payments", "consensus": "raft", "ack_mode": "committed", "genesis_block": "/etc/ordo/shared/payments.block"}],'
    echo '  "nodes": ['
    first=1
    for role in orderer peer; do
        port=7050
        [[ $role == peer ]] && port=7051
        for pair in $consortium; do
            [[ $first == 1 ]] || echo ','
            first=0
            node_entry "$role.${pair%%:*}" "$role" "${pair%%:*}" "$role.${pair#*:}:$port"
        done
    done
    echo
    echo '  ],'
    echo "  \"identities\": {\"$org\": {"
    member_entry admin; echo ','
    member_entry client; echo
    echo '  }}'
    echo '}'
} >/org/network.json
echo "org=$org" >/org/org.env
chown -R $uid:$uid /keys/orderer /keys/peer /org
chmod 0700 /keys/orderer /keys/peer /org

# The public org bundle: all another bank (or the genesis administrator) gets.
mkdir -p /etc/ordo/shared/bundles
install -m 0644 "$mine/tls/ca.crt" "/etc/ordo/shared/tls-ca-$org.crt"
ordo crypto export --crypto "$crypto" --org "$org" \
    --orderer-endpoint "orderer.$dom:7050" --peer-endpoint "peer.$dom:7051" \
    --out "/etc/ordo/shared/bundles/$org.org.json"
chmod 0644 "/etc/ordo/shared/bundles/$org.org.json"
echo "setup $org: keys on the $dom volumes, bundle /etc/ordo/shared/bundles/$org.org.json"
