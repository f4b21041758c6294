"""A small command line over the client: ``python3 -m ordo_client --network DIR CMD``.

  invoke CHAINCODE FN [ARG ...]   endorse, submit, wait for the commit; prints the result
  query CHAINCODE FN [ARG ...]    evaluate on the gateway peer; prints the result
  events CHAINCODE --checkpoint FILE [--from N]   follow events (Ctrl-C stops)
  verify [--to N]                 fetch blocks from an orderer and verify them

``--network`` is an ``ordo up`` directory or its network.json (default: $ORDO_NETWORK,
else .ordo); ``--org`` picks the org whose client signs and whose peer is used.
"""

import argparse
import json
import os
import sys
import time

from . import connection, deliver, verify
from .events import ChaincodeEvents, FileCheckpoint
from .gateway import ChaincodeRefused, Gateway, GatewayError
from .identity import Network


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m ordo_client", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--network", default=os.environ.get("ORDO_NETWORK", ".ordo"))
    parser.add_argument("--org")
    parser.add_argument("--channel")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("invoke", "query"):
        p = sub.add_parser(name)
        p.add_argument("chaincode")
        p.add_argument("function")
        p.add_argument("args", nargs="*")
    p = sub.add_parser("events")
    p.add_argument("chaincode")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--from", dest="start", type=int)
    p = sub.add_parser("verify")
    p.add_argument("--to", type=int)
    a = parser.parse_args(argv)

    net = Network.load(a.network)
    org = a.org or net.orgs[0]
    member = net.member(org, "client")
    ident = member.identity()
    channel_id = net.channel(a.channel).name
    if a.cmd == "verify":
        orderer = net.orderers()[0]
        m = net.member(orderer.org, "client")
        v = verify.ChainVerifier()
        envelopes = last = 0
        with connection.channel(orderer.grpc_addr, m.tls) as ch:
            for b in deliver.blocks(ch, m.identity(), channel_id, 0, a.to):
                c = v.check(b, int(time.time()))
                envelopes += c.envelopes
                last = c.number
        print(f"OK: blocks 0..={last} of channel {channel_id} ({envelopes} envelopes) verify")
        return 0
    with connection.channel(net.peer_of(org).grpc_addr, member.tls) as ch:
        if a.cmd == "events":
            ev = ChaincodeEvents(ch, ident, channel_id)
            try:
                for e in ev.follow(a.chaincode, FileCheckpoint(a.checkpoint), a.start):
                    print(json.dumps({"block": e.block, "tx_id": e.tx_id, "name": e.name,
                                      "payload": e.payload.decode("utf-8", "replace")}),
                          flush=True)
            except KeyboardInterrupt:
                return 0
            return 0
        gw = Gateway(ch, ident, channel_id)
        try:
            if a.cmd == "query":
                r = gw.evaluate(a.chaincode, a.function, a.args)
                print(r.payload.decode("utf-8", "replace"))
                return 0 if 200 <= r.status < 400 else 1
            c = gw.submit_transaction(a.chaincode, a.function, a.args)
        except ChaincodeRefused as e:
            print(f"refused: {e.refusal.status} {e.refusal.message}", file=sys.stderr)
            return 1
        except GatewayError as e:
            print(e, file=sys.stderr)
            return 1
        print(json.dumps({"tx_id": c.tx_id, "code": c.code_name, "block": c.block,
                          "result": c.result.payload.decode("utf-8", "replace")}))
        return 0 if c.valid else 1


if __name__ == "__main__":
    sys.exit(main())
