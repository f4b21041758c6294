#!/bin/bash
# Prints the one ready line once every bank has joined.
#   ready.sh CHANNEL
set -euo pipefail
channel=$1
export ORDO_NETWORK=/org/network.json
info=$(ordo channel info --node orderer.BankA --org BankA --channel "$channel" --json)
height=$(echo "$info" | sed -n 's/.*"height": *\([0-9]*\).*/\1/p' | head -1)
leader=$(echo "$info" | sed -n 's/.*"leader": *"\([^"]*\)".*/\1/p' | head -1)
echo "ordo consortium ready: channel $channel (raft, committed acks) at height ${height:-?}, leader ${leader:-?}; banks BankA BankB BankC, each an orderer and a peer"
echo "try: docker compose run --rm cli-banka tx invoke --org BankA --chaincode bank --fn open --args alice 100"
