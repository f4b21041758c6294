"""Member identities and the network file of ``ordo up``.

PROTOCOL.md, "Identities": an identity is two text files, the 32-byte Ed25519 seed in
hex and the encoded ``Certificate`` in hex; surrounding whitespace is ignored. TLS uses
ordinary PEM files next to them. ``ordo up --dir DIR`` writes ``DIR/network.json``,
which names every node and every member's files with absolute paths.
"""

import json
import pathlib
from dataclasses import dataclass, field

from . import crypto
from .pb import common_pb2

#: The network file format this client reads (``version`` in network.json).
NETWORK_FILE_VERSION = 1
#: Encoded certificates are at most this long.
CERTIFICATE_BYTES_MAX = 4096


class IdentityError(Exception):
    """A key or certificate file that cannot be used."""


def _read_hex(path, what):
    text = pathlib.Path(path).read_text().strip()
    try:
        return bytes.fromhex(text)
    except ValueError as e:
        raise IdentityError(f"{path}: the {what} is not hex ({e})") from None


@dataclass(frozen=True)
class Certificate:
    """A decoded member certificate, with the exact bytes it was decoded from."""

    raw: bytes
    body_bytes: bytes
    issuer_signature: bytes
    body: "common_pb2.CertificateBody"

    @classmethod
    def decode(cls, raw):
        raw = bytes(raw)
        if len(raw) > CERTIFICATE_BYTES_MAX:
            raise IdentityError(
                f"certificate of {len(raw)} bytes (at most {CERTIFICATE_BYTES_MAX})"
            )
        cert = common_pb2.Certificate()
        body = common_pb2.CertificateBody()
        try:
            cert.ParseFromString(raw)
            body.ParseFromString(cert.body)
        except Exception as e:  # protobuf's DecodeError, and friends
            raise IdentityError(f"certificate does not decode: {e}") from None
        return cls(raw, bytes(cert.body), bytes(cert.issuer_signature), body)

    @property
    def org(self):
        return self.body.org

    @property
    def role(self):
        return self.body.role

    @property
    def public_key(self):
        return bytes(self.body.public_key)

    def valid_at(self, secs):
        return self.body.not_before <= secs <= self.body.not_after


def issue(ca_key, body):
    """A certificate for ``body`` (a ``CertificateBody``), signed by ``ca_key``, whose
    public key becomes the body's ``issuer_public_key``; returns the encoded
    ``Certificate``. Ordo's own tools issue certificates; this is for tests and vectors."""
    if not isinstance(body, common_pb2.CertificateBody):
        raise TypeError("issue() takes an ordo.common.CertificateBody")
    signed = common_pb2.CertificateBody()
    signed.CopyFrom(body)
    signed.issuer_public_key = crypto.public_key_bytes(ca_key)
    body_bytes = signed.SerializeToString()
    cert = common_pb2.Certificate(
        body=body_bytes, issuer_signature=crypto.sign(ca_key, body_bytes)
    )
    return cert.SerializeToString()


class Identity:
    """A member's signing key and certificate: what signs envelopes and requests."""

    def __init__(self, seed, certificate_bytes):
        self.key = crypto.signing_key(seed)
        self.certificate = Certificate.decode(certificate_bytes)
        if crypto.public_key_bytes(self.key) != self.certificate.public_key:
            raise IdentityError("the key is not the certificate's key")

    @classmethod
    def load(cls, key_file, cert_file):
        """Reads a key file (hex seed) and a certificate file (hex Certificate)."""
        return cls(_read_hex(key_file, "key"), _read_hex(cert_file, "certificate"))

    @property
    def creator(self):
        """The encoded certificate, exactly as issued: a header's ``creator``."""
        return self.certificate.raw

    @property
    def org(self):
        return self.certificate.org

    def sign(self, message):
        return crypto.sign(self.key, message)


@dataclass(frozen=True)
class TlsFiles:
    """A member's TLS key pair (PEM) and the CA certificates it trusts (PEM)."""

    cert: pathlib.Path
    key: pathlib.Path
    ca: tuple

    def root_certificates(self):
        return b"".join(pathlib.Path(p).read_bytes().rstrip() + b"\n" for p in self.ca)


@dataclass(frozen=True)
class Member:
    """One identity of network.json: its files, and TLS when the network uses it."""

    org: str
    name: str
    key: pathlib.Path
    cert: pathlib.Path
    tls: TlsFiles = None

    def identity(self):
        return Identity.load(self.key, self.cert)


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # "orderer" or "peer"
    org: str
    grpc_addr: str
    ops_addr: str


@dataclass(frozen=True)
class Channel:
    name: str
    consensus: str
    ack_mode: str
    genesis_block: pathlib.Path


@dataclass
class Network:
    """The network file ``ordo up`` writes (``<dir>/network.json``)."""

    path: pathlib.Path
    dir: pathlib.Path
    channels: list
    nodes: list
    members: dict = field(default_factory=dict)  # (org, name) -> Member

    @classmethod
    def load(cls, path):
        """Reads ``path``: a network.json file, or a directory holding one."""
        path = pathlib.Path(path)
        if path.is_dir():
            path = path / "network.json"
        doc = json.loads(path.read_text())
        if doc.get("version") != NETWORK_FILE_VERSION:
            raise IdentityError(
                f"{path}: format version {doc.get('version')} "
                f"(this client reads {NETWORK_FILE_VERSION})"
            )
        members = {}
        for org, by_name in doc["identities"].items():
            for name, files in by_name.items():
                tls = files.get("tls")
                members[(org, name)] = Member(
                    org=org,
                    name=name,
                    key=pathlib.Path(files["key"]),
                    cert=pathlib.Path(files["cert"]),
                    tls=TlsFiles(
                        cert=pathlib.Path(tls["cert"]),
                        key=pathlib.Path(tls["key"]),
                        ca=tuple(pathlib.Path(c) for c in tls["ca"]),
                    )
                    if tls
                    else None,
                )
        return cls(
            path=path,
            dir=pathlib.Path(doc["dir"]),
            channels=[
                Channel(
                    c["name"], c["consensus"], c["ack_mode"], pathlib.Path(c["genesis_block"])
                )
                for c in doc["channels"]
            ],
            nodes=[
                Node(n["name"], n["role"], n["org"], n["grpc_addr"], n["ops_addr"])
                for n in doc["nodes"]
            ],
            members=members,
        )

    @property
    def orgs(self):
        """The orgs with identities, in name order."""
        return sorted({org for org, _ in self.members})

    def member(self, org=None, name="client"):
        """``org``'s member ``name`` (default: the first org's client)."""
        org = org or self.orgs[0]
        try:
            return self.members[(org, name)]
        except KeyError:
            raise IdentityError(f"no identity {name!r} of {org!r} in {self.path}") from None

    def channel(self, name=None):
        if name is None:
            return self.channels[0]
        for c in self.channels:
            if c.name == name:
                return c
        raise IdentityError(f"no channel {name!r} in {self.path}")

    def orderers(self):
        return [n for n in self.nodes if n.role == "orderer"]

    def peers(self):
        return [n for n in self.nodes if n.role == "peer"]

    def peer_of(self, org):
        for n in self.peers():
            if n.org == org:
                return n
        raise IdentityError(f"no peer of {org!r} in {self.path}")
