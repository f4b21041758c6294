#!/usr/bin/env python3
"""Asks a node's standard gRPC health service (grpc.health.v1.Health/Check) over mutual
TLS, with gRPC's own Python client (grpcio + grpcio-health-checking): an implementation
independent of Ordo's, as a load balancer or Kubernetes probe would be.

usage: health_check.py ADDRESS SERVICE CA CERT KEY [SERVICE ...]

ADDRESS is host:port; SERVICE a fully qualified service name, or "" for the node as a
whole; CA a PEM file of the root certificates that may sign the node's certificate; CERT
and KEY the client's PEM certificate chain and private key.

Prints one line per service, in order: the status name (SERVING, NOT_SERVING, ...), or
NOT_FOUND when the node does not know the service. Exits 0 when every call was answered,
2 on usage errors, 3 when a call failed (its gRPC error on stderr).
"""

import sys

try:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
except ImportError as e:  # pragma: no cover - told to the test's reader
    sys.stderr.write(
        f"health_check.py needs grpcio and grpcio-health-checking ({e}); "
        "install them with: python3 -m pip install grpcio grpcio-health-checking\n"
    )
    sys.exit(2)

# Bounds each call, so that a hung node fails the check instead of the test hanging.
TIMEOUT_S = 5.0


def main(argv):
    if len(argv) < 6:
        sys.stderr.write(__doc__)
        return 2
    address, first, ca, cert, key = argv[1:6]
    services = [first] + argv[6:]
    with open(ca, "rb") as f:
        root = f.read()
    with open(cert, "rb") as f:
        chain = f.read()
    with open(key, "rb") as f:
        private_key = f.read()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=private_key, certificate_chain=chain
    )
    with grpc.secure_channel(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            request = health_pb2.HealthCheckRequest(service=service)
            try:
                reply = stub.Check(request, timeout=TIMEOUT_S)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    print("NOT_FOUND", flush=True)
                    continue
                sys.stderr.write(
                    f"Health/Check({service!r}) on {address}: {e.code().name}: {e.details()}\n"
                )
                return 3
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            print(name, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
