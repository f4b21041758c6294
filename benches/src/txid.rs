//! Reading the tx id out of an envelope without decoding more than needed.
//!
//! The Deliver side looks at every envelope of every block, so it decodes views that keep
//! only `Payload.header.tx_id` (prost skips the other fields), and decodes from `Bytes` so
//! that nothing is copied: the returned id is a slice of the block's own buffer.

use bytes::Bytes;
use ordo_proto::pb::common::Envelope;
use prost::Message;

/// `ordo.common.Payload` with only the header.
#[derive(Clone, PartialEq, prost::Message)]
struct PayloadView {
    #[prost(message, optional, tag = "1")]
    header: Option<HeaderView>,
}

/// `ordo.common.Header` with only the tx id (a string on the wire; bytes here, so that
/// decoding does not allocate).
#[derive(Clone, PartialEq, prost::Message)]
struct HeaderView {
    #[prost(bytes = "bytes", tag = "3")]
    tx_id: Bytes,
}

/// The tx id in encoded payload bytes, or `None` when they do not decode or carry none.
pub(crate) fn payload_tx_id(payload: &Bytes) -> Option<Bytes> {
    let view = PayloadView::decode(payload.clone()).ok()?;
    let id = view.header?.tx_id;
    (!id.is_empty()).then_some(id)
}

/// The tx id of encoded envelope bytes (as carried in a block's data).
pub(crate) fn envelope_tx_id(envelope: &Bytes) -> Option<Bytes> {
    let env = Envelope::decode(envelope.clone()).ok()?;
    payload_tx_id(&env.payload)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ordo_proto::envelope::create_signed_with_nonce;
    use ordo_proto::identity::{Enrollment, Identity};
    use ordo_proto::pb::common::{HeaderType, Role};

    /// A client identity issued by a throwaway CA.
    pub(crate) fn test_identity() -> Identity {
        let ca = ordo_proto::crypto::generate_signing_key();
        let key = ordo_proto::crypto::generate_signing_key();
        Identity::enroll(&ca, key, &Enrollment::new("BankA", Role::Client, "client"))
    }

    #[test]
    fn reads_the_tx_id_that_create_signed_wrote() {
        let id = test_identity();
        let (env, tx_id) = create_signed_with_nonce(
            &id,
            "ch",
            HeaderType::Message,
            Bytes::from_static(b"data"),
            7,
            b"nonce",
        );
        assert_eq!(
            payload_tx_id(&env.payload).as_deref(),
            Some(tx_id.as_bytes())
        );
        let encoded = Bytes::from(env.encode_to_vec());
        assert_eq!(envelope_tx_id(&encoded).as_deref(), Some(tx_id.as_bytes()));
    }

    #[test]
    fn garbage_and_headerless_payloads_have_no_tx_id() {
        assert_eq!(
            envelope_tx_id(&Bytes::from_static(&[0xff, 0xff, 0xff])),
            None
        );
        let no_header = Envelope {
            payload: Bytes::new(),
            signature: Bytes::new(),
        };
        assert_eq!(
            envelope_tx_id(&Bytes::from(no_header.encode_to_vec())),
            None
        );
    }
}
