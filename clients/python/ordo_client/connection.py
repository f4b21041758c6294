"""gRPC channels to Ordo nodes: mutual TLS with a member's TLS files, or plaintext for a
network made with ``ordo up --insecure``."""

import pathlib

import grpc

#: Ordo answers messages of up to this size (a whole block on Deliver can be large).
MAX_MESSAGE_BYTES = 128 * 1024 * 1024


def channel(address, tls=None):
    """A channel to ``address`` (host:port). ``tls`` is an ``identity.TlsFiles``: the
    client presents its certificate and trusts the node's only when it chains to one of
    ``tls.ca``."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.root_certificates(),
        private_key=pathlib.Path(tls.key).read_bytes(),
        certificate_chain=pathlib.Path(tls.cert).read_bytes(),
    )
    return grpc.secure_channel(address, credentials, options=options)
