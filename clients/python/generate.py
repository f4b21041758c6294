#!/usr/bin/env python3
"""Generates the Python protobuf and gRPC stubs of Ordo's .proto files into
``ordo_client/pb/``.

The stubs are not committed: they are made from ``proto/proto/*.proto`` of the same
checkout (so they cannot drift from the protocol), with ``grpc_tools.protoc`` (the
``grpcio-tools`` package, needed only here, never at run time).

usage: generate.py [--proto-dir DIR] [--out DIR]

protoc writes ``import common_pb2`` for ``import "common.proto"``: a top-level module
name. The generated files are rewritten to import each other relatively
(``from . import common_pb2``), so they live inside the ``ordo_client.pb`` package
without touching ``sys.path``.
"""

import argparse
import os
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
# The checkout's proto files; ORDO_PROTO_DIR names them when this package was copied
# elsewhere (as cli/tests/python_client.rs does).
DEFAULT_PROTO_DIR = pathlib.Path(
    os.environ.get("ORDO_PROTO_DIR", HERE.parent.parent / "proto" / "proto")
)
DEFAULT_OUT = HERE / "ordo_client" / "pb"

# `import common_pb2 as common__pb2` at the start of a line, as protoc writes it for an
# import of a file in the same directory.
_TOP_LEVEL_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)


def generate(proto_dir=DEFAULT_PROTO_DIR, out=DEFAULT_OUT):
    """Runs protoc over every .proto file of ``proto_dir``; returns the files written."""
    try:
        from grpc_tools import protoc
    except ImportError as e:  # told to whoever runs it
        raise SystemExit(
            f"generate.py needs grpcio-tools ({e}): python3 -m pip install grpcio-tools"
        )
    import importlib.resources

    proto_dir = pathlib.Path(proto_dir).resolve()
    out = pathlib.Path(out).resolve()
    protos = sorted(proto_dir.glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {proto_dir}")
    out.mkdir(parents=True, exist_ok=True)
    # protoc needs the well-known types' include directory, which grpcio-tools ships.
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
    ] + [str(p) for p in protos]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with {code}: {' '.join(args)}")
    written = []
    for path in sorted(out.glob("*_pb2*.py")):
        text = path.read_text()
        fixed = _TOP_LEVEL_IMPORT.sub(r"from . import \1 as \2", text)
        if fixed != text:
            path.write_text(fixed)
        written.append(path)
    # Records which protos the stubs came from, so a stale set can be recognised.
    (out / "_sources.txt").write_text(
        "".join(f"{p.name} {_digest(p)}\n" for p in protos)
    )
    return written


def _digest(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def up_to_date(proto_dir=DEFAULT_PROTO_DIR, out=DEFAULT_OUT):
    """Whether ``out`` holds stubs generated from exactly the current ``proto_dir``."""
    proto_dir = pathlib.Path(proto_dir)
    stamp = pathlib.Path(out) / "_sources.txt"
    if not stamp.exists():
        return False
    want = "".join(
        f"{p.name} {_digest(p)}\n" for p in sorted(proto_dir.glob("*.proto"))
    )
    return stamp.read_text() == want


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto-dir", default=str(DEFAULT_PROTO_DIR))
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    a = parser.parse_args(argv)
    for path in generate(a.proto_dir, a.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
