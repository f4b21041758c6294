"""An independent chain verifier: a reader that trusts only the genesis block checks
every block after it (PROTOCOL.md, "Blocks"):

- the hash chain: block ``n`` has number ``n`` and the previous block's hash;
- the data hash: the Merkle root over the block's envelope bytes;
- the last-config metadata: a config block names itself, any other block the last
  config block;
- the orderer signatures: they satisfy the BlockValidation policy of the configuration
  in force *before* the block (a config block is signed under the old configuration),
  each signer's certificate valid on the channel at the signature's own time;
- a config block's configuration has the next sequence, and is in force from then on.

Block 0 is the genesis block: one unsigned CONFIG envelope whose configuration the
reader takes as given (it came out of band, like ``network.json``'s genesis file).
"""

from dataclasses import dataclass, field

from . import crypto, policy
from .identity import Certificate, IdentityError
from .pb import common_pb2

#: A block signature stamped further than this in the future (by the verifier's
#: clock) is ignored.
MAX_SIGNATURE_CLOCK_SKEW_SECS = 600


class VerifyError(Exception):
    """Why a block was refused; ``number`` is the block."""

    def __init__(self, number, reason):
        super().__init__(f"block {number}: {reason}")
        self.number = number
        self.reason = reason


class Msp:
    """The channel's member orgs and their CA keys: who can hold a valid certificate."""

    def __init__(self, config):
        self.org_names = [o.name for o in config.orgs]
        self.roots = {o.name: {bytes(k) for k in o.root_public_keys} for o in config.orgs}

    def verify(self, cert_bytes, at_secs):
        """The decoded certificate when it is valid on the channel at ``at_secs``;
        raises IdentityError otherwise."""
        cert = Certificate.decode(cert_bytes)
        if cert.role not in (
            common_pb2.ADMIN,
            common_pb2.CLIENT,
            common_pb2.PEER,
            common_pb2.ORDERER,
        ):
            raise IdentityError(f"unknown role {cert.role}")
        roots = self.roots.get(cert.org)
        if roots is None:
            raise IdentityError(f"unknown org {cert.org!r}")
        issuer = bytes(cert.body.issuer_public_key)
        if issuer not in roots:
            raise IdentityError(f"issuer is not a root of {cert.org!r}")
        if not crypto.verify(issuer, cert.body_bytes, cert.issuer_signature):
            raise IdentityError("issuer signature does not verify")
        if not cert.valid_at(at_secs):
            raise IdentityError(
                f"not valid at {at_secs} "
                f"([{cert.body.not_before}, {cert.body.not_after}])"
            )
        return cert


def block_hash(block):
    h = block.header
    return crypto.block_header_hash(h.number, h.previous_hash, h.data_hash)


def config_from_block(block):
    """The ChannelConfig of a config block (exactly one CONFIG envelope), else None."""
    data = list(block.data.data)
    if len(data) != 1:
        return None
    try:
        env = common_pb2.Envelope.FromString(data[0])
        payload = common_pb2.Payload.FromString(env.payload)
        if payload.header.type != common_pb2.CONFIG:
            return None
        cfg_env = common_pb2.ConfigEnvelope.FromString(payload.data)
        config = common_pb2.ChannelConfig.FromString(cfg_env.config)
    except Exception:  # noqa: BLE001 - anything that does not decode is not a config
        return None
    if config.channel_id != payload.header.channel_id:
        return None
    return config


@dataclass
class Checked:
    """What the verifier found in one block."""

    number: int
    hash: bytes
    envelopes: int
    is_config: bool
    #: The certificates whose signature counted (empty for the genesis block).
    signers: list = field(default_factory=list)


class ChainVerifier:
    """Verifies a channel's blocks one at a time, from block 0; see the module docs."""

    def __init__(self):
        self.next = 0
        self.prev = crypto.GENESIS_PREVIOUS_HASH
        self.config = None
        self.config_block = None
        self.msp = None

    def check(self, block, now_secs):
        """Checks the next block (certificate times against ``now_secs`` for the skew
        bound only) and advances; raises VerifyError and changes nothing on a fault."""
        number = self.next
        if not block.HasField("header"):
            raise VerifyError(number, "no header")
        h = block.header
        if len(h.previous_hash) != crypto.HASH_LEN or len(h.data_hash) != crypto.HASH_LEN:
            raise VerifyError(h.number, "hashes must be 32 bytes")
        if not block.HasField("data"):
            raise VerifyError(h.number, "no data")
        if h.number != number:
            raise VerifyError(h.number, f"wrong number (expected {number})")
        if h.previous_hash != self.prev:
            raise VerifyError(
                number,
                f"broken chain: previous hash {h.previous_hash.hex()}, "
                f"expected {self.prev.hex()}",
            )
        root = crypto.merkle_root(block.data.data)
        if root != h.data_hash:
            raise VerifyError(
                number, f"data hash is not the Merkle root of its {len(block.data.data)} envelopes"
            )
        new_config = config_from_block(block)
        this_hash = block_hash(block)
        signers = []
        if number == 0:
            if new_config is None:
                raise VerifyError(0, "block 0 is not a config (genesis) block")
        else:
            if self.config is None:
                raise VerifyError(number, "no configuration in force")
            md = block.metadata
            expected = number if new_config is not None else self.config_block
            if md.last_config != expected:
                raise VerifyError(
                    number,
                    f"last config {md.last_config} but the last config block is {expected}",
                )
            signers = self._signatures(block, this_hash, now_secs)
            if new_config is not None and new_config.sequence != self.config.sequence + 1:
                raise VerifyError(
                    number,
                    f"config sequence {new_config.sequence} "
                    f"(expected {self.config.sequence + 1})",
                )
        if new_config is not None:
            if not new_config.HasField("block_validation"):
                raise VerifyError(number, "the configuration has no BlockValidation policy")
            self.config = new_config
            self.config_block = number
            self.msp = Msp(new_config)
        self.prev = this_hash
        self.next += 1
        return Checked(
            number=number,
            hash=this_hash,
            envelopes=len(block.data.data),
            is_config=new_config is not None,
            signers=signers,
        )

    def _signatures(self, block, this_hash, now_secs):
        md = block.metadata
        signers = []
        for s in md.signatures:
            at_secs = s.timestamp_ms // 1000
            if at_secs > now_secs + MAX_SIGNATURE_CLOCK_SKEW_SECS:
                continue
            try:
                cert = self.msp.verify(s.signer, at_secs)
            except IdentityError:
                continue
            msg = crypto.block_signing_bytes(
                this_hash, md.last_config, md.consenter_metadata, s.timestamp_ms
            )
            if crypto.verify(cert.public_key, msg, s.signature):
                signers.append(cert)
        try:
            policy.evaluate(self.config.block_validation, signers, self.msp.org_names)
        except policy.PolicyError as e:
            raise VerifyError(block.header.number, f"orderer signatures: {e}") from None
        return signers

    def consenter_certificates(self):
        """The encoded certificates of the consenters of the configuration in force."""
        return {bytes(c.certificate) for c in self.config.orderer.consenters}
