"""The hashes and signatures of docs/PROTOCOL.md ("Conventions", "Envelope, header and
tx id", "Endorser transactions", "Blocks"), computed from bytes alone.

Everything here is a pure function of its arguments: no clock, no randomness, no
network. That is what the golden vectors of ``proto/testdata/golden.txt`` check.
"""

import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

HASH_LEN = 32
SIGNATURE_LEN = 64
PUBLIC_KEY_LEN = 32
#: The previous hash of block 0.
GENESIS_PREVIOUS_HASH = bytes(HASH_LEN)
#: Domain tag of the bytes an orderer signs for a block.
BLOCK_SIGNATURE_DOMAIN = b"ordo/block-signature/v1"
#: Domain tag of a peer's discovery announcement (followed by a zero byte).
PEER_INFO_DOMAIN = b"ordo-peer-info/1"


def sha256(data):
    """H(x) of the protocol."""
    return hashlib.sha256(data).digest()


def signing_key(seed):
    """The Ed25519 key of a 32-byte seed (the content of a key file)."""
    if len(seed) != 32:
        raise ValueError(f"an Ed25519 seed is 32 bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(bytes(seed))


def public_key_bytes(key):
    """The 32 raw bytes of a private key's public half."""
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def sign(key, message):
    """Ordo's signature: Ed25519 over H(message), never over the message itself."""
    return key.sign(sha256(message))


def verify(public_key, message, signature):
    """Whether ``signature`` is ``public_key``'s signature over H(message).

    OpenSSL's Ed25519 (behind ``cryptography``) checks the cofactorless equation, which
    accepts a subset of what Ordo's ZIP-215 rules accept; the two differ only on
    signatures crafted against the rules (no honest signer makes them), where this
    verifier is the stricter one. Small-order public keys are refused, as Ordo does.
    """
    if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    if bytes(public_key) in _SMALL_ORDER_KEYS:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(
            bytes(signature), sha256(message)
        )
        return True
    except (InvalidSignature, ValueError):
        return False


def _small_order_keys():
    """The encodings of the eight points of small order (the torsion subgroup) in their
    canonical form: the keys every signature would verify under, whatever it says."""
    p = 2**255 - 19
    # The y coordinates of the points of order 1, 2, 4 and 8 (RFC 8032 curve).
    ys = [
        1,
        p - 1,
        0,
        0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
        0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
    ]
    keys = set()
    for y in ys:
        for sign_bit in (0, 1):
            encoded = bytearray(y.to_bytes(32, "little"))
            encoded[31] |= sign_bit << 7
            keys.add(bytes(encoded))
    return frozenset(keys)


_SMALL_ORDER_KEYS = _small_order_keys()


def tx_id(nonce, creator):
    """tx id = lowercase hex(H(nonce ‖ creator)), with creator the certificate bytes."""
    return sha256(bytes(nonce) + bytes(creator)).hex()


def proposal_hash(tx_id_hex, channel_id, proposal_bytes):
    """H(tx_id ‖ 0x00 ‖ channel_id ‖ 0x00 ‖ proposal_bytes), tx id as 64 ASCII chars."""
    return sha256(
        tx_id_hex.encode("ascii")
        + b"\x00"
        + channel_id.encode("utf-8")
        + b"\x00"
        + bytes(proposal_bytes)
    )


def merkle_leaf(data):
    return sha256(b"\x00" + bytes(data))


def merkle_node(left, right):
    return sha256(b"\x01" + left + right)


def _split(n):
    """The size of the left subtree of n > 1 leaves: the largest power of two < n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves):
    """The RFC 6962 / RFC 9162 Merkle root over ``leaves`` (H("") when there are none)."""
    leaves = list(leaves)
    if not leaves:
        return sha256(b"")
    return _root([merkle_leaf(x) for x in leaves])


def _root(hashes):
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return merkle_node(_root(hashes[:k]), _root(hashes[k:]))


def merkle_inclusion_proof(leaves, index):
    """The audit path of leaf ``index`` (RFC 6962 section 2.1.1), nearest sibling first."""
    hashes = [merkle_leaf(x) for x in leaves]
    if not 0 <= index < len(hashes):
        raise IndexError(f"leaf {index} of {len(hashes)}")
    return _path(hashes, index)


def _path(hashes, index):
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return _path(hashes[:k], index) + [_root(hashes[k:])]
    return _path(hashes[k:], index - k) + [_root(hashes[:k])]


def merkle_verify_inclusion(leaf, index, size, proof, root):
    """Whether ``proof`` shows ``leaf`` at ``index`` of ``size`` leaves under ``root``
    (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = merkle_leaf(leaf)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = merkle_node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = merkle_node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def block_header_hash(number, previous_hash, data_hash):
    """H(number as u64 ‖ previous_hash ‖ data_hash): a fixed encoding, not protobuf."""
    return sha256(struct.pack(">Q", number) + bytes(previous_hash) + bytes(data_hash))


def block_signing_bytes(block_hash, last_config, consenter_metadata, timestamp_ms):
    """What each orderer signs for a block (PROTOCOL.md, "Blocks")."""
    consenter_metadata = bytes(consenter_metadata)
    return (
        BLOCK_SIGNATURE_DOMAIN
        + bytes(block_hash)
        + struct.pack(">Q", last_config)
        + struct.pack(">I", len(consenter_metadata))
        + consenter_metadata
        + struct.pack(">Q", timestamp_ms)
    )


def peer_info_signing_bytes(info):
    """What a peer signs for a discovery announcement: "ordo-peer-info/1" ‖ 0x00 ‖ info."""
    return PEER_INFO_DOMAIN + b"\x00" + bytes(info)


# Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
TRANSIENT_FIELD = 4


def _read_varint(data, i):
    shift = value = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift >= 64:
            raise ValueError("varint longer than 10 bytes")


def strip_field(data, field):
    """``data`` (an encoded message) with every top-level entry of ``field`` cut out on
    the wire; every other byte is kept exactly as it is. Raises ValueError on bytes that
    are not a well-formed message."""
    data = bytes(data)
    out = bytearray()
    i = 0
    while i < len(data):
        start = i
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, i = _read_varint(data, i)
        elif wire == _I64:
            i += 8
        elif wire == _I32:
            i += 4
        elif wire == _LEN:
            n, i = _read_varint(data, i)
            i += n
        else:
            raise ValueError(f"wire type {wire} (groups are not used by Ordo)")
        if i > len(data):
            raise ValueError("truncated field")
        if number != field:
            out += data[start:i]
    return bytes(out)


def strip_transient(proposal_bytes):
    """The transaction's proposal bytes: the signed ChaincodeProposal without transient
    data (field 4), cut on the wire (PROTOCOL.md, "Endorser transactions", step 2)."""
    return strip_field(proposal_bytes, TRANSIENT_FIELD)
