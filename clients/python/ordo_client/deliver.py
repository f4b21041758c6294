"""Blocks from an orderer's Deliver (``ordo.orderer.AtomicBroadcast``): a signed
DELIVER_SEEK_INFO request, answered by a stream of blocks that ends with a status."""

import grpc

from . import envelope
from .pb import common_pb2, orderer_pb2_grpc

#: Bounds a whole fetch, so that a node that stops answering fails it.
FETCH_TIMEOUT_S = 120.0


class DeliverError(Exception):
    pass


def blocks(grpc_channel, identity, channel_id, start=0, stop=None, timeout=FETCH_TIMEOUT_S):
    """Yields blocks ``start..=stop`` (stop None: up to the newest when asked) in order;
    raises DeliverError unless the stream ends with SUCCESS."""
    stub = orderer_pb2_grpc.AtomicBroadcastStub(grpc_channel)
    req = envelope.seek_request(identity, channel_id, start, stop)
    stream = stub.Deliver(req, timeout=timeout)
    try:
        for resp in stream:
            kind = resp.WhichOneof("type")
            if kind == "block":
                yield resp.block
            elif kind == "status":
                if resp.status == common_pb2.SUCCESS:
                    return
                raise DeliverError(
                    f"Deliver ended with {common_pb2.Status.Name(resp.status)}: {resp.info}"
                )
            else:
                raise DeliverError("Deliver sent an empty response")
    except grpc.RpcError as e:
        raise DeliverError(f"Deliver: {e.code().name}: {e.details()}") from None
    finally:
        stream.cancel()
    raise DeliverError("Deliver stream ended without a status")
