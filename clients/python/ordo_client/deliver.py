"""Blocks from an orderer's Deliver (``ordo.orderer.AtomicBroadcast``): a signed
DELIVER_SEEK_INFO request, answered by a stream of blocks. The stream's gRPC status is its
outcome: OK once ``stop`` was sent, otherwise the refusal (PROTOCOL.md, "Statuses")."""

import grpc

from . import envelope
from .pb import orderer_pb2_grpc

#: Bounds a whole fetch, so that a node that stops answering fails it.
FETCH_TIMEOUT_S = 120.0


class DeliverError(Exception):
    pass


def blocks(grpc_channel, identity, channel_id, start=0, stop=None, timeout=FETCH_TIMEOUT_S):
    """Yields blocks ``start..=stop`` (stop None: up to the newest when asked) in order;
    raises DeliverError when the stream ends with a refusal."""
    stub = orderer_pb2_grpc.AtomicBroadcastStub(grpc_channel)
    req = envelope.seek_request(identity, channel_id, start, stop)
    stream = stub.Deliver(req, timeout=timeout)
    try:
        for resp in stream:
            if not resp.HasField("block"):
                raise DeliverError("Deliver sent a response without a block")
            yield resp.block
    except grpc.RpcError as e:
        raise DeliverError(f"Deliver ended with {e.code().name}: {e.details()}") from None
    finally:
        stream.cancel()
