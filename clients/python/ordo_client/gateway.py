"""A peer's Gateway (PROTOCOL.md, "Endorser transactions", "Events and commit status"):
evaluate a proposal, have it endorsed across orgs, sign and submit the transaction, and
wait for its commit status.

The client signs only what it has checked: before signing the payload that ``Endorse``
returns, it verifies that the payload is the ENDORSER_TRANSACTION of *its* proposal
(same channel, tx id, creator and nonce; the proposal bytes without transient data),
that the response payload is bound to it by the proposal hash, and that every
endorsement is a good signature of its endorser's certificate over those exact bytes.
"""

from dataclasses import dataclass

import grpc

from . import crypto, envelope
from .identity import Certificate
from .pb import common_pb2, gateway_pb2, gateway_pb2_grpc, transaction_pb2

#: How long a unary call may take by default.
CALL_TIMEOUT_S = 30.0
#: How long commit_status waits by default (several batch timeouts and a raft election).
COMMIT_TIMEOUT_S = 60.0

_GRPC_STATUS_DETAILS = "grpc-status-details-bin"


class GatewayError(Exception):
    """A Gateway call failed; ``code`` is the gRPC status code."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class ChaincodeRefused(GatewayError):
    """The chaincode answered a status outside 200..=399 at Endorse (gRPC ABORTED);
    ``refusal`` is the ``ordo.gateway.ChaincodeRefusal`` from the status details."""

    def __init__(self, refusal, details):
        super().__init__(
            f"chaincode refused: {refusal.status} {refusal.message} ({details})",
            grpc.StatusCode.ABORTED,
        )
        self.refusal = refusal


class UntrustedPayload(GatewayError):
    """The gateway returned a payload this client will not sign."""


def chaincode_refusal(error):
    """The ChaincodeRefusal in a gRPC error's status details, or None.

    Ordo puts the encoded ``ChaincodeRefusal`` itself in the ``grpc-status-details-bin``
    trailer (not a ``google.rpc.Status`` around it); grpcio hands it over decoded from
    base64."""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == _GRPC_STATUS_DETAILS:
            try:
                return gateway_pb2.ChaincodeRefusal.FromString(bytes(value))
            except Exception:  # noqa: BLE001 - details of another shape: no refusal
                return None
    return None


@dataclass
class Endorsed:
    """A transaction endorsed and checked, ready to sign and submit."""

    proposal: envelope.Proposal
    payload: bytes
    result: "transaction_pb2.ChaincodeResponse"
    endorsing_orgs: list
    response_payload: "transaction_pb2.ProposalResponsePayload"

    @property
    def tx_id(self):
        return self.proposal.tx_id


@dataclass
class Committed:
    tx_id: str
    result: "transaction_pb2.ChaincodeResponse"
    code: int
    code_name: str
    block: int
    orderer: str

    @property
    def valid(self):
        return self.code == transaction_pb2.VALID


class Gateway:
    """A peer's Gateway, used as ``identity`` on ``channel_id``."""

    def __init__(self, grpc_channel, identity, channel_id):
        self.identity = identity
        self.channel_id = channel_id
        self.stub = gateway_pb2_grpc.GatewayStub(grpc_channel)

    def proposal(self, chaincode, function, args=(), transient=None):
        return envelope.Proposal(
            self.identity, self.channel_id, chaincode, function, args, transient
        )

    def evaluate(self, chaincode, function, args=(), transient=None, timeout=CALL_TIMEOUT_S):
        """The chaincode's response on this peer, whatever its status; nothing is
        endorsed or ordered."""
        p = self.proposal(chaincode, function, args, transient)
        try:
            return self.stub.Evaluate(p.envelope, timeout=timeout).result
        except grpc.RpcError as e:
            raise GatewayError(f"Evaluate: {e.code().name}: {e.details()}", e.code()) from None

    def endorse(self, proposal, endorsing_orgs=(), timeout=CALL_TIMEOUT_S):
        """Endorsements across orgs for ``proposal``; checks what it gets (module docs)."""
        request = gateway_pb2.EndorseRequest(
            proposal=proposal.envelope, endorsing_orgs=list(endorsing_orgs)
        )
        try:
            resp = self.stub.Endorse(request, timeout=timeout)
        except grpc.RpcError as e:
            refusal = chaincode_refusal(e)
            if e.code() == grpc.StatusCode.ABORTED and refusal is not None:
                raise ChaincodeRefused(refusal, e.details()) from None
            raise GatewayError(f"Endorse: {e.code().name}: {e.details()}", e.code()) from None
        rpp = self._check_endorsed(proposal, bytes(resp.payload))
        return Endorsed(
            proposal=proposal,
            payload=bytes(resp.payload),
            result=resp.result,
            endorsing_orgs=list(resp.endorsing_orgs),
            response_payload=rpp,
        )

    def _check_endorsed(self, proposal, payload_bytes):
        def refuse(why):
            raise UntrustedPayload(f"Endorse returned a payload this client will not sign: {why}")

        payload = common_pb2.Payload.FromString(payload_bytes)
        h = payload.header
        if h.type != common_pb2.ENDORSER_TRANSACTION:
            refuse(f"header type {h.type}")
        if h.channel_id != self.channel_id:
            refuse(f"channel {h.channel_id!r}")
        if h.creator != self.identity.creator or h.nonce != proposal.nonce:
            refuse("another creator or nonce than the proposal's")
        if h.tx_id != proposal.tx_id or crypto.tx_id(h.nonce, h.creator) != h.tx_id:
            refuse(f"tx id {h.tx_id}")
        tx = transaction_pb2.EndorserTransaction.FromString(payload.data)
        if tx.proposal != proposal.transaction_proposal_bytes:
            refuse("its proposal is not ours without transient data")
        rpp = transaction_pb2.ProposalResponsePayload.FromString(tx.response_payload)
        if rpp.proposal_hash != proposal.proposal_hash:
            refuse("the response payload is bound to another proposal hash")
        if not tx.endorsements:
            refuse("no endorsements")
        for e in tx.endorsements:
            cert = Certificate.decode(e.endorser)
            if not crypto.verify(cert.public_key, tx.response_payload, e.signature):
                refuse(f"the endorsement of {cert.body.subject} does not verify")
        return rpp

    def submit(self, endorsed, timeout=CALL_TIMEOUT_S):
        """Signs the endorsed payload (the same nonce, so the same tx id) and sends it to
        the channel's orderers; returns the orderer that accepted it."""
        env = envelope.sign_payload(self.identity, endorsed.payload)
        try:
            return self.stub.Submit(env, timeout=timeout).orderer
        except grpc.RpcError as e:
            raise GatewayError(f"Submit: {e.code().name}: {e.details()}", e.code()) from None

    def commit_status(self, tx_id, timeout=COMMIT_TIMEOUT_S):
        """Waits until ``tx_id`` is committed on this peer; its CommitStatusResponse."""
        req = envelope.message(
            self.identity, self.channel_id, gateway_pb2.CommitStatusRequest(tx_id=tx_id)
        )
        try:
            return self.stub.CommitStatus(req, timeout=timeout)
        except grpc.RpcError as e:
            raise GatewayError(
                f"CommitStatus({tx_id}): {e.code().name}: {e.details()}", e.code()
            ) from None

    def submit_transaction(
        self,
        chaincode,
        function,
        args=(),
        transient=None,
        endorsing_orgs=(),
        timeout=COMMIT_TIMEOUT_S,
    ):
        """Proposes, endorses, submits and waits for the commit: a Committed (whose code
        may be other than VALID, e.g. MVCC_READ_CONFLICT)."""
        p = self.proposal(chaincode, function, args, transient)
        endorsed = self.endorse(p, endorsing_orgs)
        orderer = self.submit(endorsed)
        status = self.commit_status(p.tx_id, timeout)
        return Committed(
            tx_id=p.tx_id,
            result=endorsed.result,
            code=status.code,
            code_name=status.code_name,
            block=status.block,
            orderer=orderer,
        )
