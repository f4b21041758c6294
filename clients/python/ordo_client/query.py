"""A peer's ledger queries (``ordo.query.Query``): signed MESSAGE requests carrying a
QueryRequest, answered with a status in the body."""

from . import envelope
from .pb import common_pb2, query_pb2, query_pb2_grpc

CALL_TIMEOUT_S = 30.0


class QueryError(Exception):
    def __init__(self, status, info):
        name = common_pb2.Status.Name(status) if status in common_pb2.Status.values() else status
        super().__init__(f"query answered {name}: {info}")
        self.status = status
        self.info = info


class Query:
    def __init__(self, grpc_channel, identity, channel_id):
        self.identity = identity
        self.channel_id = channel_id
        self.stub = query_pb2_grpc.QueryStub(grpc_channel)

    def _ask(self, request, timeout=CALL_TIMEOUT_S):
        req = envelope.message(self.identity, self.channel_id, request)
        resp = self.stub.Query(req, timeout=timeout)
        if resp.status != common_pb2.SUCCESS:
            raise QueryError(resp.status, resp.info)
        return resp

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
            if e.status == common_pb2.NOT_FOUND:
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
