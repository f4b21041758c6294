"""Protobuf messages and gRPC stubs generated from Ordo's ``proto/proto/*.proto``.

Nothing here is committed: ``generate.py`` (at the package's root) writes the modules
(``common_pb2``, ``gateway_pb2_grpc``, ...) into this directory. Importing one that is
missing says so instead of failing with a bare ModuleNotFoundError.
"""

import importlib

_MODULES = (
    "admin",
    "chaincode",
    "cluster",
    "common",
    "discovery",
    "gateway",
    "kafka",
    "orderer",
    "query",
    "transaction",
)


def __getattr__(name):
    base = name[: -len("_pb2_grpc")] if name.endswith("_pb2_grpc") else name[: -len("_pb2")]
    if base in _MODULES and name in (f"{base}_pb2", f"{base}_pb2_grpc"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            raise ImportError(
                f"ordo_client.pb.{name} is not generated yet ({e}); run "
                "`python3 clients/python/generate.py` (needs grpcio-tools)"
            ) from e
    raise AttributeError(name)
