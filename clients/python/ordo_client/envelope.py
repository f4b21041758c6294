"""Signed envelopes (PROTOCOL.md, "Envelope, header and tx id"): a header naming the
channel, type, tx id, time, creator and nonce, and the creator's signature over the
payload's exact bytes.
"""

import os
import time

from . import crypto
from .pb import common_pb2, orderer_pb2, transaction_pb2

#: Ordo's clients use 24 random bytes; the protocol allows 1 to 64.
NONCE_LEN = 24
NONCE_LEN_MAX = 64

HeaderType = common_pb2.HeaderType


def now_ms():
    return int(time.time() * 1000)


def new_nonce():
    return os.urandom(NONCE_LEN)


def header(identity, channel_id, header_type, timestamp_ms, nonce):
    """A header for ``identity``'s envelope; its tx id is derived from nonce and creator."""
    if not 1 <= len(nonce) <= NONCE_LEN_MAX:
        raise ValueError(f"a nonce is 1 to {NONCE_LEN_MAX} bytes, not {len(nonce)}")
    return common_pb2.Header(
        channel_id=channel_id,
        type=header_type,
        tx_id=crypto.tx_id(nonce, identity.creator),
        timestamp_ms=timestamp_ms,
        creator=identity.creator,
        nonce=nonce,
    )


def sign_payload(identity, payload_bytes):
    """An envelope of ``payload_bytes`` exactly as given, signed by ``identity``."""
    payload_bytes = bytes(payload_bytes)
    return common_pb2.Envelope(payload=payload_bytes, signature=identity.sign(payload_bytes))


def signed(identity, channel_id, header_type, data, timestamp_ms=None, nonce=None):
    """A signed envelope carrying ``data``; returns (envelope, tx_id)."""
    h = header(
        identity,
        channel_id,
        header_type,
        now_ms() if timestamp_ms is None else timestamp_ms,
        new_nonce() if nonce is None else nonce,
    )
    payload = common_pb2.Payload(header=h, data=bytes(data))
    return sign_payload(identity, payload.SerializeToString()), h.tx_id


def message(identity, channel_id, request):
    """A MESSAGE envelope: how Events, CommitStatus and Query requests are sent (the
    node checks that its time lies within its freshness window, so it is stamped now)."""
    env, _ = signed(identity, channel_id, HeaderType.MESSAGE, request.SerializeToString())
    return env


class Proposal:
    """A signed PROPOSAL envelope and what the transaction it becomes is bound to."""

    def __init__(self, identity, channel_id, chaincode, function, args=(), transient=None):
        self.identity = identity
        self.channel_id = channel_id
        self.chaincode = chaincode
        self.function = function
        proposal = transaction_pb2.ChaincodeProposal(
            chaincode=chaincode,
            function=function,
            args=[a.encode() if isinstance(a, str) else bytes(a) for a in args],
        )
        for k, v in (transient or {}).items():
            proposal.transient[k] = v.encode() if isinstance(v, str) else bytes(v)
        #: The signed ChaincodeProposal bytes, transient data included.
        self.proposal_bytes = proposal.SerializeToString()
        self.nonce = new_nonce()
        self.envelope, self.tx_id = signed(
            identity,
            channel_id,
            HeaderType.PROPOSAL,
            self.proposal_bytes,
            nonce=self.nonce,
        )

    @property
    def transaction_proposal_bytes(self):
        """The proposal bytes the transaction carries: transient data cut out."""
        return crypto.strip_transient(self.proposal_bytes)

    @property
    def proposal_hash(self):
        return crypto.proposal_hash(
            self.tx_id, self.channel_id, self.transaction_proposal_bytes
        )


def decode_payload(envelope_bytes):
    """(Envelope, Payload) of an envelope's bytes."""
    env = common_pb2.Envelope()
    env.ParseFromString(bytes(envelope_bytes))
    payload = common_pb2.Payload()
    payload.ParseFromString(env.payload)
    return env, payload


def seek_request(identity, channel_id, start=0, stop=None, wait=False):
    """A signed DELIVER_SEEK_INFO envelope for blocks ``start..=stop`` (stop None: the
    newest block at the time of the request). ``wait`` blocks until the blocks exist
    instead of failing when they do not."""
    def position(n):
        if n is None:
            return orderer_pb2.SeekPosition(newest=orderer_pb2.SeekNewest())
        return orderer_pb2.SeekPosition(specified=n)

    info = orderer_pb2.SeekInfo(
        start=position(start),
        stop=position(stop),
        behavior=orderer_pb2.BLOCK_UNTIL_READY if wait else orderer_pb2.FAIL_IF_NOT_READY,
    )
    env, _ = signed(identity, channel_id, HeaderType.DELIVER_SEEK_INFO, info.SerializeToString())
    return env

