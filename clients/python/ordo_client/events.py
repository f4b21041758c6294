"""Chaincode events (``Events.ChaincodeEvents``, PROTOCOL.md "Events and commit
status"), resumable from a checkpoint kept in a file.

A checkpoint is the (block, tx id) of the last event handled. Resuming asks for
``start_block = block`` and ``after_tx_id = tx id``: the peer answers from right after
that transaction, so nothing is repeated and nothing is skipped. Without a checkpoint,
events start at the block given, by default the peer's height ("from now on").
"""

import json
import os
import pathlib
from dataclasses import dataclass

import grpc

from . import envelope
from .pb import gateway_pb2, gateway_pb2_grpc
from .query import Query


@dataclass(frozen=True)
class Event:
    block: int
    tx_id: str
    chaincode: str
    name: str
    payload: bytes


class FileCheckpoint:
    """The last event handled, as JSON ``{"block": N, "tx_id": "..."}``, replaced
    atomically (temporary file, fsync, rename) so a crash leaves the old or the new one."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def load(self):
        """(block, tx_id), or None when nothing was handled yet."""
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        return int(doc["block"]), str(doc["tx_id"])

    def save(self, block, tx_id):
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"block": block, "tx_id": tx_id}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class ChaincodeEvents:
    """One chaincode's events from one peer."""

    def __init__(self, grpc_channel, identity, channel_id):
        self.grpc_channel = grpc_channel
        self.identity = identity
        self.channel_id = channel_id
        self.stub = gateway_pb2_grpc.EventsStub(grpc_channel)

    def stream(self, chaincode, start_block, after_tx_id="", timeout=None):
        """Yields Events from ``start_block`` (after ``after_tx_id`` in it) as blocks
        commit; never ends by itself: the caller stops iterating (the call is cancelled
        then), or ``timeout`` seconds bound the whole call (grpc DEADLINE_EXCEEDED)."""
        req = envelope.message(
            self.identity,
            self.channel_id,
            gateway_pb2.ChaincodeEventsRequest(
                chaincode=chaincode, start_block=start_block, after_tx_id=after_tx_id
            ),
        )
        call = self.stub.ChaincodeEvents(req, timeout=timeout)
        try:
            for resp in call:
                for e in resp.events:
                    yield Event(resp.block_number, e.tx_id, e.chaincode, e.name, bytes(e.payload))
        finally:
            call.cancel()

    def follow(self, chaincode, checkpoint, start_block=None, timeout=None):
        """Yields Events from ``checkpoint`` (a FileCheckpoint) on, or, without a saved
        one, from ``start_block`` (None: the peer's height). Each event is recorded as
        handled when the caller asks for the next one, so an event the caller was
        handling when it stopped comes again on the next follow."""
        saved = checkpoint.load()
        if saved is not None:
            start, after = saved
        else:
            if start_block is None:
                start_block = Query(self.grpc_channel, self.identity, self.channel_id).height()
            start, after = start_block, ""
        for event in self.stream(chaincode, start, after, timeout):
            yield event
            checkpoint.save(event.block, event.tx_id)


def is_deadline(error):
    """Whether a grpc error from a stream is its deadline passing."""
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
