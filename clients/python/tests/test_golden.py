"""The golden vectors of proto/testdata/golden.txt, recomputed by this client from the
inputs PROTOCOL.md gives for each: if the document and this code agree with Ordo's, every
line matches byte for byte (Ed25519 signatures are deterministic, and protobuf encodes
these messages in field order with defaults omitted, as prost does)."""

import os
import pathlib

import pytest

from ordo_client import crypto, envelope, identity, verify
from ordo_client.pb import common_pb2, discovery_pb2

GOLDEN = pathlib.Path(
    os.environ.get(
        "ORDO_GOLDEN",
        pathlib.Path(__file__).resolve().parents[3] / "proto" / "testdata" / "golden.txt",
    )
)
TS_MS = 1_750_000_000_000


@pytest.fixture(scope="module")
def golden():
    vectors = {}
    for line in GOLDEN.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, value = line.split(" = ", 1)
        vectors[name] = value
    return vectors


CA = crypto.signing_key(bytes([0x11]) * 32)
MEMBER_SEED = bytes([0x22]) * 32
PEER_SEED = bytes([0x33]) * 32


def member_cert():
    return identity.issue(
        CA,
        common_pb2.CertificateBody(
            org="BankA",
            role=common_pb2.CLIENT,
            subject="client@BankA",
            public_key=crypto.public_key_bytes(crypto.signing_key(MEMBER_SEED)),
            not_before=1_700_000_000,
            not_after=1_900_000_000,
            serial=7,
        ),
    )


def member():
    return identity.Identity(MEMBER_SEED, member_cert())


def golden_envelope():
    env, tx_id = envelope.signed(
        member(), "golden", common_pb2.MESSAGE, b"payload", TS_MS, b"fixed-nonce"
    )
    return env, tx_id


def test_certificate(golden):
    cert = member_cert()
    assert cert.hex() == golden["certificate"]
    decoded = identity.Certificate.decode(cert)
    assert crypto.verify(
        crypto.public_key_bytes(CA), decoded.body_bytes, decoded.issuer_signature
    )
    assert decoded.valid_at(1_700_000_000) and decoded.valid_at(1_900_000_000)
    assert not decoded.valid_at(1_699_999_999) and not decoded.valid_at(1_900_000_001)


def test_tx_id(golden):
    assert crypto.tx_id(b"nonce-0123456789", member_cert()) == golden["tx_id"]


def test_envelope_and_its_tx_id(golden):
    env, tx_id = golden_envelope()
    assert env.SerializeToString().hex() == golden["envelope"]
    assert tx_id == golden["envelope_tx_id"]
    # And read back: the signature is the creator's over the exact payload bytes.
    _, payload = envelope.decode_payload(bytes.fromhex(golden["envelope"]))
    assert payload.header.tx_id == crypto.tx_id(payload.header.nonce, payload.header.creator)
    assert crypto.verify(member().certificate.public_key, env.payload, env.signature)
    assert not crypto.verify(member().certificate.public_key, env.payload + b"x", env.signature)


def test_merkle_vectors(golden):
    leaves = [bytes([i]) * 3 for i in range(5)]
    assert crypto.merkle_root(leaves).hex() == golden["merkle_root_5"]
    assert crypto.merkle_root([]).hex() == golden["merkle_root_empty"]
    proof = crypto.merkle_inclusion_proof(leaves, 3)
    assert ":".join(p.hex() for p in proof) == golden["merkle_proof_5_3"]
    root = bytes.fromhex(golden["merkle_root_5"])
    assert crypto.merkle_verify_inclusion(leaves[3], 3, 5, proof, root)
    assert not crypto.merkle_verify_inclusion(leaves[2], 3, 5, proof, root)
    # Every leaf of every size up to 17 proves itself, and no other leaf.
    for n in range(1, 18):
        ls = [bytes([n, i]) for i in range(n)]
        r = crypto.merkle_root(ls)
        for i in range(n):
            p = crypto.merkle_inclusion_proof(ls, i)
            assert crypto.merkle_verify_inclusion(ls[i], i, n, p, r)
            assert not crypto.merkle_verify_inclusion(ls[(i + 1) % n] + b"!", i, n, p, r)


def test_block_header_hash(golden):
    h = crypto.block_header_hash(42, b"\xab" * 32, b"\xcd" * 32)
    assert h.hex() == golden["block_header_hash"]


def test_block_signing_bytes(golden):
    b = crypto.block_signing_bytes(b"\x5a" * 32, 3, b"consenter", TS_MS)
    assert b.hex() == golden["block_signing_bytes"]


def test_signed_block(golden):
    env, _ = golden_envelope()
    data = [env.SerializeToString()]
    header = common_pb2.BlockHeader(
        number=1, previous_hash=b"\x77" * 32, data_hash=crypto.merkle_root(data)
    )
    h = crypto.block_header_hash(header.number, header.previous_hash, header.data_hash)
    signature = member().sign(crypto.block_signing_bytes(h, 0, b"", TS_MS))
    block = common_pb2.Block(
        header=header,
        data=common_pb2.BlockData(data=data),
        metadata=common_pb2.BlockMetadata(
            signatures=[
                common_pb2.MetadataSignature(
                    signer=member().creator, signature=signature, timestamp_ms=TS_MS
                )
            ]
        ),
    )
    assert block.SerializeToString().hex() == golden["signed_block"]


def test_genesis_block(golden):
    raw = bytes.fromhex(golden["genesis_block"])
    block = common_pb2.Block.FromString(raw)
    assert verify.block_hash(block).hex() == golden["genesis_block_hash"]
    assert block.header.previous_hash == crypto.GENESIS_PREVIOUS_HASH
    v = verify.ChainVerifier()
    checked = v.check(block, TS_MS // 1000)
    assert checked.is_config and checked.signers == [] and checked.envelopes == 1
    cfg = v.config
    assert cfg.channel_id == "golden" and cfg.sequence == 0
    assert [bytes(k) for k in cfg.orgs[0].root_public_keys] == [crypto.public_key_bytes(CA)]
    # The genesis envelope: unsigned, no creator, nonce = H(config bytes).
    _, payload = envelope.decode_payload(block.data.data[0])
    cfg_bytes = common_pb2.ConfigEnvelope.FromString(payload.data).config
    assert payload.header.nonce == crypto.sha256(cfg_bytes)
    assert payload.header.creator == b""
    assert payload.header.tx_id == crypto.tx_id(payload.header.nonce, b"")
    if "channel_config" in golden:
        assert cfg_bytes.hex() == golden["channel_config"]


def test_genesis_block_rebuilt_from_its_configuration(golden):
    """PROTOCOL.md's description of the genesis block is enough to make it: from the
    configuration bytes and the time alone, the same block byte for byte."""
    original = common_pb2.Block.FromString(bytes.fromhex(golden["genesis_block"]))
    _, payload = envelope.decode_payload(original.data.data[0])
    cfg_bytes = common_pb2.ConfigEnvelope.FromString(payload.data).config
    nonce = crypto.sha256(cfg_bytes)
    header = common_pb2.Header(
        channel_id="golden",
        type=common_pb2.CONFIG,
        tx_id=crypto.tx_id(nonce, b""),
        timestamp_ms=TS_MS,
        nonce=nonce,
    )
    env = common_pb2.Envelope(
        payload=common_pb2.Payload(
            header=header, data=common_pb2.ConfigEnvelope(config=cfg_bytes).SerializeToString()
        ).SerializeToString()
    ).SerializeToString()
    block = common_pb2.Block(
        header=common_pb2.BlockHeader(
            number=0,
            previous_hash=crypto.GENESIS_PREVIOUS_HASH,
            data_hash=crypto.merkle_root([env]),
        ),
        data=common_pb2.BlockData(data=[env]),
        metadata=common_pb2.BlockMetadata(),
    )
    assert block.SerializeToString().hex() == golden["genesis_block"]


def test_signed_block_verifies_after_the_genesis_block(golden):
    """The golden signed block, re-linked after the golden genesis block and signed by an
    ORDERER of BankA (the genesis config's BlockValidation policy); then the verifier
    refuses each kind of fault."""
    genesis = common_pb2.Block.FromString(bytes.fromhex(golden["genesis_block"]))
    orderer_seed = bytes([0x44]) * 32
    orderer_cert = identity.issue(
        CA,
        common_pb2.CertificateBody(
            org="BankA",
            role=common_pb2.ORDERER,
            subject="orderer@BankA",
            public_key=crypto.public_key_bytes(crypto.signing_key(orderer_seed)),
            not_before=1_700_000_000,
            not_after=1_900_000_000,
            serial=9,
        ),
    )
    orderer = identity.Identity(orderer_seed, orderer_cert)

    def block_1(signer, ts=TS_MS, last_config=0, data=None):
        env, _ = golden_envelope()
        data = data or [env.SerializeToString()]
        header = common_pb2.BlockHeader(
            number=1,
            previous_hash=verify.block_hash(genesis),
            data_hash=crypto.merkle_root(data),
        )
        h = crypto.block_header_hash(1, header.previous_hash, header.data_hash)
        sig = signer.sign(crypto.block_signing_bytes(h, last_config, b"", ts))
        return common_pb2.Block(
            header=header,
            data=common_pb2.BlockData(data=data),
            metadata=common_pb2.BlockMetadata(
                signatures=[
                    common_pb2.MetadataSignature(
                        signer=signer.creator, signature=sig, timestamp_ms=ts
                    )
                ],
                last_config=last_config,
            ),
        )

    def check(block):
        v = verify.ChainVerifier()
        v.check(genesis, TS_MS // 1000)
        return v.check(block, TS_MS // 1000)

    assert [c.subject for c in (s.body for s in check(block_1(orderer)).signers)] == [
        "orderer@BankA"
    ]
    with pytest.raises(verify.VerifyError, match="orderer signatures"):
        check(block_1(member()))  # a CLIENT does not satisfy the policy
    with pytest.raises(verify.VerifyError, match="orderer signatures"):
        check(block_1(orderer, ts=2_000_000_000_000))  # the certificate has expired
    with pytest.raises(verify.VerifyError, match="last config"):
        check(block_1(orderer, last_config=1))
    tampered = block_1(orderer)
    tampered.data.data[0] = b"tampered"
    with pytest.raises(verify.VerifyError, match="data hash"):
        check(tampered)
    relinked = block_1(orderer)
    relinked.header.previous_hash = b"\x00" * 32
    with pytest.raises(verify.VerifyError, match="broken chain"):
        check(relinked)


def test_peer_info_and_its_signature(golden):
    peer_key = crypto.signing_key(PEER_SEED)
    peer_cert = identity.issue(
        CA,
        common_pb2.CertificateBody(
            org="BankA",
            role=common_pb2.PEER,
            subject="peer0@BankA",
            public_key=crypto.public_key_bytes(peer_key),
            not_before=1_700_000_000,
            not_after=1_900_000_000,
            serial=8,
        ),
    )
    info = discovery_pb2.PeerInfo(
        channel_id="golden",
        endpoint="peer0.banka.example:7051",
        certificate=peer_cert,
        chaincodes=["bank"],
        height=42,
        issued_ms=TS_MS,
    ).SerializeToString()
    assert info.hex() == golden["peer_info"]
    signature = crypto.sign(peer_key, crypto.peer_info_signing_bytes(info))
    assert signature.hex() == golden["peer_info_signature"]


def test_transient_data_is_cut_on_the_wire():
    """Field 4 entries are dropped wherever they are; the other bytes are untouched, even
    in an order a re-encoding would not keep."""
    from ordo_client.pb import transaction_pb2

    with_transient = transaction_pb2.ChaincodeProposal(
        chaincode="bank", function="open", args=[b"carol", b"5"], transient={"owner": b"C"}
    ).SerializeToString()
    without = transaction_pb2.ChaincodeProposal(
        chaincode="bank", function="open", args=[b"carol", b"5"]
    ).SerializeToString()
    assert crypto.strip_transient(with_transient) == without
    assert crypto.strip_transient(without) == without
    # Fields out of their usual order, after a transient entry: kept as is, in place.
    kept = b"\x12\x01f" + b"\x0a\x01c"  # function "f", then chaincode "c"
    odd = b"\x22\x05" + b"\x0a\x01k\x12\x00" + kept  # a transient entry first
    assert crypto.strip_transient(odd) == kept
    with pytest.raises(ValueError):
        crypto.strip_transient(b"\x0a\x05ab")


def test_small_order_keys_are_refused():
    identity_point = bytes([1]) + bytes(31)
    assert not crypto.verify(identity_point, b"m", bytes(64))
    assert len(crypto._SMALL_ORDER_KEYS) == 10
