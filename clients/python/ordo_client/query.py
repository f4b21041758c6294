"""A peer's ledger queries (``ordo.query.Query``): signed MESSAGE requests carrying a
QueryRequest; a refusal is the call's gRPC status (PROTOCOL.md, "Statuses")."""

import grpc

from . import envelope
from .pb import query_pb2, query_pb2_grpc

CALL_TIMEOUT_S = 30.0


class QueryError(Exception):
    """The peer refused a query; ``code`` is the gRPC status code."""

    def __init__(self, code, details):
        super().__init__(f"query refused: {code.name}: {details}")
        self.code = code
        self.details = details


class Query:
    def __init__(self, grpc_channel, identity, channel_id):
        self.identity = identity
        self.channel_id = channel_id
        self.stub = query_pb2_grpc.QueryStub(grpc_channel)

    def _ask(self, request, timeout=CALL_TIMEOUT_S):
        req = envelope.message(self.identity, self.channel_id, request)
        try:
            return self.stub.Query(req, timeout=timeout)
        except grpc.RpcError as e:
            raise QueryError(e.code(), e.details()) from None

    def height(self):
        """Blocks committed on the channel: also the next block's number."""
        return self._ask(query_pb2.QueryRequest(height=query_pb2.GetHeight())).height

    def state(self, namespace, key):
        """The committed VersionedValue of ``key``, or None when it does not exist."""
        try:
            resp = self._ask(
                query_pb2.QueryRequest(state=query_pb2.GetState(namespace=namespace, key=key))
            )
        except QueryError as e:
            if e.code == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return resp.values[0] if resp.values else None

    def transaction(self, tx_id):
        """The TransactionStatus of ``tx_id`` on this peer (block, index, code)."""
        return self._ask(
            query_pb2.QueryRequest(transaction=query_pb2.GetTransaction(tx_id=tx_id))
        ).transaction

    def block(self, number):
        """Committed block ``number``, with this peer's validation codes."""
        return self._ask(query_pb2.QueryRequest(block=query_pb2.GetBlock(number=number))).block
