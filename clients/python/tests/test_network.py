"""The client against a running `ordo up` network (ORDO_NETWORK), over mutual TLS:

- a bank transfer submitted through one Gateway commits VALID, and every peer says so
  (its own Gateway's commit status, its Query service, its world state);
- chaincode events followed from a checkpoint file resume right after the last event
  handled: nothing repeated, nothing skipped;
- every block the orderers deliver verifies independently (hash chain, Merkle data
  hashes, last-config metadata, orderer signatures by the channel's consenters), and the
  verdicts and hashes agree with `ordo block verify` and `ordo block fetch`, also on a
  tampered block, which both refuse at the same block.
"""

import json
import os
import subprocess
import time
import uuid

import grpc
import pytest

from ordo_client import connection, crypto, deliver, envelope, events, verify
from ordo_client.gateway import ChaincodeRefused, Gateway
from ordo_client.identity import Network
from ordo_client.pb import admin_pb2, admin_pb2_grpc, common_pb2, transaction_pb2
from ordo_client.query import Query, QueryError

#: Bounds each stream the tests read, so a node that stops answering fails the test.
STREAM_TIMEOUT_S = 60.0
#: Bounds the wait for a committed block to reach every peer.
PEERS_AGREE_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def net(network_path):
    return Network.load(network_path)


@pytest.fixture(scope="module")
def channel_id(net):
    return net.channel().name


def client_of(net, org):
    """An org's client identity and TLS files (the network must use TLS)."""
    m = net.member(org, "client")
    assert m.tls is not None, (
        f"{net.path}: {org}'s client has no TLS files (an --insecure network?)"
    )
    return m


def grpc_to(net, node):
    """A mutual-TLS channel to ``node`` as a client of the node's own org, whose TLS CA
    signed the node's certificate."""
    return connection.channel(node.grpc_addr, client_of(net, node.org).tls)


@pytest.fixture(scope="module")
def accounts():
    """Fresh account names, so the test can run against a network used before."""
    tag = uuid.uuid4().hex[:10]
    return f"alice-{tag}", f"bob-{tag}"


@pytest.fixture(scope="module")
def transfer(net, channel_id, accounts, tmp_path_factory):
    """Opens two accounts and transfers 30 between them through BankA's Gateway;
    returns what the later tests check."""
    org = net.orgs[0]
    member = client_of(net, org)
    ident = member.identity()
    peer = net.peer_of(org)
    ch = grpc_to(net, peer)
    gw = Gateway(ch, ident, channel_id)
    start_height = Query(ch, ident, channel_id).height()
    alice, bob = accounts
    opened = [gw.submit_transaction("bank", "open", [alice, "100"]), None]
    opened[1] = gw.submit_transaction("bank", "open", [bob, "20"])
    for c in opened:
        assert c.code_name == "VALID", c
    sent = gw.submit_transaction("bank", "transfer", [alice, bob, "30"])
    report = os.environ.get("ORDO_PY_REPORT")
    if report:
        # For whoever ran the suite to check the same transaction with other tools.
        with open(report, "w") as f:
            json.dump({"tx_id": sent.tx_id, "block": sent.block, "code": sent.code_name,
                       "from": alice, "to": bob}, f)
    return {
        "gateway": gw,
        "start_height": start_height,
        "opened": opened,
        "transfer": sent,
        "checkpoint": tmp_path_factory.mktemp("events") / "checkpoint.json",
    }


def test_plaintext_is_refused(net, channel_id):
    """The nodes speak TLS only: the same request over plaintext never reaches them."""
    node = net.peers()[0]
    ident = client_of(net, node.org).identity()
    with connection.channel(node.grpc_addr) as ch:
        with pytest.raises(grpc.RpcError) as e:
            Query(ch, ident, channel_id).stub.Query(
                envelope.message(ident, channel_id, common_pb2.Envelope()), timeout=10
            )
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value


def test_refusals_are_grpc_codes(net, channel_id):
    """Every refusal is the call's gRPC status (PROTOCOL.md, "Statuses"): Query, Deliver
    and Admin alike, with the node's reason as the details."""
    peer, orderer = net.peers()[0], net.orderers()[0]
    ident = client_of(net, peer.org).identity()
    with grpc_to(net, peer) as ch:
        q = Query(ch, ident, "no-such-channel")
        with pytest.raises(QueryError) as e:
            q.height()
        assert e.value.code == grpc.StatusCode.NOT_FOUND and "no-such-channel" in e.value.details
        with pytest.raises(QueryError) as e:
            Query(ch, ident, channel_id).block(10**9)
        assert e.value.code == grpc.StatusCode.NOT_FOUND, e.value
        # A client is no admin: the Admin service refuses it. (The header's channel is
        # not read, but must not be empty: "-", PROTOCOL.md, "Admin requests".)
        admin_cmd = admin_pb2.AdminCommand(list=admin_pb2.ListChannels())
        env, _ = envelope.signed(
            ident, "-", common_pb2.ADMIN_COMMAND, admin_cmd.SerializeToString()
        )
        with pytest.raises(grpc.RpcError) as e:
            admin_pb2_grpc.AdminStub(ch).Execute(env, timeout=10)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value
    with grpc_to(net, orderer) as ch:
        with pytest.raises(deliver.DeliverError) as e:
            list(deliver.blocks(ch, ident, channel_id, 10**9, 10**9))
        assert "NOT_FOUND" in str(e.value), e.value


def test_transfer_commits_valid(transfer, accounts):
    t = transfer["transfer"]
    assert t.code == transaction_pb2.VALID and t.code_name == "VALID", t
    assert t.result.status == 200 and t.result.payload == b"70", t.result
    assert t.block > transfer["opened"][1].block > transfer["opened"][0].block
    assert len(t.tx_id) == 64 and t.orderer


def test_evaluate_and_a_refusal(transfer, accounts):
    gw = transfer["gateway"]
    alice, bob = accounts
    r = gw.evaluate("bank", "balance", [bob])
    assert (r.status, r.payload) == (200, b"50")
    # Evaluate answers the chaincode's refusal as a response...
    r = gw.evaluate("bank", "transfer", [alice, bob, "1000"])
    assert r.status == 400, r
    # ...Endorse as ABORTED with the refusal in the status details.
    with pytest.raises(ChaincodeRefused) as e:
        gw.endorse(gw.proposal("bank", "transfer", [alice, bob, "1000"]))
    assert e.value.refusal.status == 400 and "insufficient" in e.value.refusal.message


def test_committed_on_every_peer(net, channel_id, transfer, accounts):
    t = transfer["transfer"]
    alice, bob = accounts
    peers = net.peers()
    assert len(peers) >= 3, peers
    for peer in peers:
        ident = client_of(net, peer.org).identity()
        with grpc_to(net, peer) as ch:
            status = Gateway(ch, ident, channel_id).commit_status(t.tx_id, PEERS_AGREE_TIMEOUT_S)
            assert (status.code_name, status.block) == ("VALID", t.block), (peer, status)
            q = Query(ch, ident, channel_id)
            tx = q.transaction(t.tx_id)
            assert (tx.tx_id, tx.block, tx.code, tx.code_name) == (t.tx_id, t.block, 0, "VALID")
            assert q.state("bank", f"account/{alice}").value == b"70", peer
            assert q.state("bank", f"account/{bob}").value == b"50", peer
            # The peer's copy of the block carries the transaction, marked VALID.
            block = q.block(t.block)
            ids = [envelope.decode_payload(d)[1].header.tx_id for d in block.data.data]
            assert t.tx_id in ids, peer
            codes = block.metadata.transaction_validation_codes
            assert codes[ids.index(t.tx_id)] == transaction_pb2.VALID


def test_events_resume_from_a_checkpoint(net, channel_id, transfer, accounts):
    gw = transfer["gateway"]
    alice, bob = accounts
    ch = grpc_to(net, net.peer_of(net.orgs[1]))  # another org's peer serves events too
    ident = client_of(net, net.orgs[1]).identity()
    ev = events.ChaincodeEvents(ch, ident, channel_id)
    checkpoint = events.FileCheckpoint(transfer["checkpoint"])
    mine = {transfer["opened"][0].tx_id, transfer["opened"][1].tx_id, transfer["transfer"].tx_id}

    # First run: handle events up to bob's opening, then stop before acknowledging it
    # (the checkpoint records an event once the next one is asked for).
    seen = []
    for e in ev.follow("bank", checkpoint, start_block=transfer["start_height"],
                       timeout=STREAM_TIMEOUT_S):
        if e.tx_id in mine:
            seen.append(e)
        if e.tx_id == transfer["opened"][1].tx_id:
            break
    assert [(e.name, json.loads(e.payload)) for e in seen] == [
        ("open", {"account": alice, "amount": 100}),
        ("open", {"account": bob, "amount": 20}),
    ]
    saved = checkpoint.load()
    assert saved == (transfer["opened"][0].block, transfer["opened"][0].tx_id)

    # Second run, from the file: bob's opening again (never acknowledged), then the
    # transfer; alice's opening is not repeated.
    resumed = []
    for e in ev.follow("bank", checkpoint, timeout=STREAM_TIMEOUT_S):
        resumed.append(e)
        if e.tx_id == transfer["transfer"].tx_id:
            break
    resumed = [e for e in resumed if e.tx_id in mine]
    assert [e.tx_id for e in resumed] == [transfer["opened"][1].tx_id, transfer["transfer"].tx_id]
    t = resumed[-1]
    assert t.block == transfer["transfer"].block and t.chaincode == "bank"
    assert (t.name, json.loads(t.payload)) == ("transfer", {"from": alice, "to": bob, "amount": 30})
    # Resuming right after the transfer's own transaction skips it.
    after = ev.stream("bank", t.block, t.tx_id, timeout=3)
    with pytest.raises(grpc.RpcError) as deadline:
        for e in after:
            assert e.tx_id != t.tx_id and e.block >= t.block
    assert events.is_deadline(deadline.value)
    ch.close()


def fetch_all(net, node, channel_id, stop):
    m = client_of(net, node.org)
    with grpc_to(net, node) as ch:
        return list(deliver.blocks(ch, m.identity(), channel_id, 0, stop))


def test_blocks_verify_and_agree_with_ordo(
    net, network_path, channel_id, transfer, ordo_bin, tmp_path
):
    last = transfer["transfer"].block
    now_secs = int(time.time())
    orderer_blocks = {}
    for orderer in net.orderers():
        blocks = fetch_all(net, orderer, channel_id, last)
        assert [b.header.number for b in blocks] == list(range(last + 1)), orderer
        orderer_blocks[orderer.name] = blocks
    blocks = orderer_blocks[net.orderers()[0].name]
    # Every orderer delivers the same chain.
    for other in orderer_blocks.values():
        assert [verify.block_hash(b) for b in other] == [verify.block_hash(b) for b in blocks]

    v = verify.ChainVerifier()
    checked = [v.check(b, now_secs) for b in blocks]
    envelopes = sum(c.envelopes for c in checked)
    assert checked[0].is_config
    consenters = v.consenter_certificates()
    for c in checked[1:]:
        assert c.signers, c
        if consenters:
            # Whoever signed is a consenter of the channel, by its exact certificate.
            assert {s.raw for s in c.signers} <= consenters, c.number
    ids = [envelope.decode_payload(d)[1].header.tx_id for d in blocks[last].data.data]
    assert transfer["transfer"].tx_id in ids

    # `ordo block verify` reaches the same verdict over the same range...
    env = dict(os.environ, ORDO_NETWORK=str(network_path))
    out = subprocess.run(
        [ordo_bin, "block", "verify", "--network", str(net.path), "--channel", channel_id,
         "--to", str(last)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(
        f"OK: blocks 0..={last} of channel {channel_id} ({envelopes} envelopes)"
    ), out.stdout

    # ...and `ordo block fetch` computes the same hashes, links and tx ids.
    fetched_dir = tmp_path / "blocks"
    out = subprocess.run(
        [ordo_bin, "block", "fetch", "--network", str(net.path), "--channel", channel_id,
         "--to", str(last), "--json", "--out", str(fetched_dir)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    theirs = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(theirs) == last + 1
    for b, c, j in zip(blocks, checked, theirs):
        assert j["number"] == c.number
        assert j["hash"] == c.hash.hex()
        assert j["previous_hash"] == b.header.previous_hash.hex()
        assert j["data_hash"] == crypto.merkle_root(b.data.data).hex()
        assert j["tx_ids"] == [envelope.decode_payload(d)[1].header.tx_id for d in b.data.data]
        assert j["signatures"] == len(b.metadata.signatures)
        assert j["is_config"] == c.is_config

    # Both refuse the same tampered copies, at the same block.
    target = transfer["transfer"].block
    tampered = {
        # The last byte flipped (not set: it may already hold any value).
        "data": lambda b: b.data.data.__setitem__(
            0, b.data.data[0][:-1] + bytes([b.data.data[0][-1] ^ 0x01])
        ),
        "signature": lambda b: [s.__setattr__("signature", bytes(64))
                                for s in b.metadata.signatures],
        "link": lambda b: b.header.__setattr__("previous_hash", bytes(32)),
    }
    for kind, damage in tampered.items():
        copy = tmp_path / f"tampered-{kind}"
        copy.mkdir()
        for n in range(last + 1):
            raw = (fetched_dir / f"{n}.block").read_bytes()
            if n == target:
                b = common_pb2.Block.FromString(raw)
                damage(b)
                assert b.SerializeToString() != raw, kind
                raw = b.SerializeToString()
            (copy / f"{n}.block").write_bytes(raw)
        v = verify.ChainVerifier()
        with pytest.raises(verify.VerifyError) as refused:
            for n in range(last + 1):
                v.check(common_pb2.Block.FromString((copy / f"{n}.block").read_bytes()), now_secs)
        assert refused.value.number == target, (kind, refused.value)
        out = subprocess.run(
            [ordo_bin, "block", "verify", "--blocks-dir", str(copy)],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode != 0, (kind, out.stdout)
        assert f"block {target}" in out.stderr, (kind, out.stderr)
