#!/bin/bash
# One bank admin's step in a multi-bank config update, run in that bank's admin container
# (only its own keys are there). The update file travels on the shared volume, as it would
# travel by mail between banks' machines.
#   update.sh propose-org NEWORG CHANNEL      write updates/add-org-NEWORG.json (unsigned)
#   update.sh propose-consenter NEWORG CHANNEL  write updates/add-consenter-NEWORG.json
#   update.sh sign NAME                       this bank signs updates/NAME.json
#   update.sh submit NAME [BLOCK]             submit it; save the config block as BLOCK
set -euo pipefail
org=$(sed -n 's/^org=//p' /org/org.env)
dom=$(tr '[:upper:]' '[:lower:]' <<<"$org")
m=/org/crypto/$org
shared=/etc/ordo/shared
mkdir -p "$shared/updates"
client=(--key "$m/admin.key" --cert "$m/admin.cert" --tls-cert "$m/admin.tls.crt" --tls-key "$m/admin.tls.key")
for ca in "$shared"/tls-ca-*.crt; do client+=(--tls-ca "$ca"); done
orderer="orderer.$dom:7050"

case "$1" in
propose-org)
    new=$2 channel=$3
    out=$shared/updates/add-org-$new.json
    ordo channel org add --org-bundle "$shared/bundles/$new.org.json" --endorse bank,kv \
        --orderer "$orderer" --channel "$channel" "${client[@]}" --out-update "$out"
    ;;
propose-consenter)
    new=$2 channel=$3
    out=$shared/updates/add-consenter-$new.json
    ordo channel consenter add --org-bundle "$shared/bundles/$new.org.json" \
        --orderer "$orderer" --channel "$channel" "${client[@]}" --out-update "$out"
    ;;
sign)
    ordo channel update sign --update "$shared/updates/$2.json" --key "$m/admin.key" --cert "$m/admin.cert"
    ;;
submit)
    extra=()
    [[ -n "${3:-}" ]] && extra=(--out-block "$shared/$3")
    ordo channel update submit --update "$shared/updates/$2.json" --orderer "$orderer" \
        "${client[@]}" "${extra[@]}"
    ;;
*)
    echo "update.sh: unknown step ${1:-} (propose-org, propose-consenter, sign, submit)" >&2
    exit 2
    ;;
esac
chmod -R a+rX "$shared/updates" 2>/dev/null || true
