//! What a fake orderer does to the blocks it delivers.

use bytes::Bytes;

use ordo_proto::pb::common::Block;

/// Which delivered blocks a [`Tamper`] changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Block `n` only.
    At(u64),
    /// Every block whose number is a positive multiple of `n`.
    Every(u64),
}

impl Which {
    /// Whether block `number` is one of them.
    pub fn includes(self, number: u64) -> bool {
        match self {
            Which::At(n) => number == n,
            Which::Every(n) => n != 0 && number > 0 && number % n == 0,
        }
    }
}

/// How a block is changed so that no honest orderer could have produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// The first envelope replaced under the original header: the data hash no longer
    /// matches.
    Data,
    /// The last envelope's last byte flipped and the header's data hash recomputed: the
    /// header is consistent, only the orderers' signatures betray it.
    DataRehashed,
    /// [`Tamper::Data`] (one byte flipped) on odd block numbers, [`Tamper::DataRehashed`]
    /// on even ones: both kinds in one run.
    Alternating,
    /// The first orderer signature corrupted.
    Signature,
    /// The previous-block hash replaced (the chain breaks; nothing is re-signed).
    PreviousHash,
}

/// Changes `block` as `how` says.
pub fn tamper(block: &mut Block, how: Tamper) {
    let number = block.header.as_ref().map_or(0, |h| h.number);
    match how {
        Tamper::Data => {
            if let Some(first) = block.data.as_mut().and_then(|d| d.data.first_mut()) {
                *first = Bytes::from_static(b"forged envelope");
            }
        }
        Tamper::DataRehashed => flip_last_byte(block, true),
        Tamper::Alternating => flip_last_byte(block, number % 2 == 0),
        Tamper::Signature => {
            if let Some(sig) = block
                .metadata
                .as_mut()
                .and_then(|m| m.signatures.first_mut())
            {
                let mut bytes = sig.signature.to_vec();
                if let Some(b) = bytes.first_mut() {
                    *b ^= 0xff;
                }
                sig.signature = bytes.into();
            }
        }
        Tamper::PreviousHash => {
            if let Some(h) = block.header.as_mut() {
                h.previous_hash = Bytes::from(vec![7u8; 32]);
            }
        }
    }
}

/// Flips the last byte of the last envelope; with `rehash`, makes the header's data hash
/// match the changed data.
fn flip_last_byte(block: &mut Block, rehash: bool) {
    let Some(data) = block.data.as_mut() else {
        return;
    };
    let Some(last) = data.data.last_mut() else {
        return;
    };
    let mut bytes = last.to_vec();
    if let Some(b) = bytes.last_mut() {
        *b ^= 0x01;
    }
    *last = Bytes::from(bytes);
    if rehash {
        let root = ordo_proto::merkle::root(&data.data);
        if let Some(h) = block.header.as_mut() {
            h.data_hash = root.to_vec().into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_blocks() {
        assert!(Which::At(3).includes(3));
        assert!(!Which::At(3).includes(6));
        assert!(Which::Every(3).includes(6));
        assert!(!Which::Every(3).includes(0));
        assert!(!Which::Every(3).includes(4));
        assert!(!Which::Every(0).includes(0));
    }
}
