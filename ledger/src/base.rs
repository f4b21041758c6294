//! Where a ledger's chain begins when it does not begin at the genesis block.
//!
//! A peer that joined a channel from a snapshot holds no block below the snapshot's
//! height `h`: its ledger starts with state, tx index and commit hash as they were after
//! block `h - 1`, and its first stored block will be `h`. The **base** records what the
//! missing prefix leaves behind and what the rest of the ledger still needs from it:
//!
//! | `meta` key | value | why it is kept |
//! |---|---|---|
//! | `first_block` | lowest block number held, `u64` BE | reads below it answer [`LedgerError::Pruned`] |
//! | `base_hash` | hash of block `first_block - 1`, 32 bytes | the next block (or the first held) must link to it |
//! | `base_config` | the config block in force at `first_block`, when it is below `first_block` | validating and verifying the next blocks needs the configuration in force |
//!
//! A ledger without these keys starts at block 0 (every ledger before format 2). The
//! keys are written in the batch that creates the based ledger (snapshot import), so a
//! crash leaves either no ledger or a whole one.
//!
//! **Invariant** (checked at open, `open` module): blocks are stored exactly for
//! `first_block..height`; `height >= first_block`; when `height == first_block > 0`, the
//! tip's last hash is `base_hash`.

use bytes::Bytes;
use prost::Message;

use ordo_proto::hash::Hash;
use ordo_proto::pb::common::Block;

use crate::{cf, BlockStore, Db, LedgerError, CF_META};

/// `meta` key of the lowest block number held (`u64` BE); absent means 0.
pub(crate) const META_FIRST_BLOCK: &[u8] = b"first_block";
/// `meta` key of the hash of block `first_block - 1` (32 bytes).
pub(crate) const META_BASE_HASH: &[u8] = b"base_hash";
/// `meta` key of the encoded config block in force at `first_block`, when it is not held.
pub(crate) const META_BASE_CONFIG: &[u8] = b"base_config";

/// The start of a ledger that does not hold its chain from block 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    /// The lowest block number held (the next to commit, when none is held yet).
    pub first_block: u64,
    /// The hash of block `first_block - 1`, which block `first_block` links to.
    pub prev_hash: Hash,
    /// The config block in force at `first_block`, when it lies below `first_block`
    /// (held here because the chain that contains it is not).
    pub config_block: Option<Block>,
}

/// Reads the lowest block number held (0 when the ledger starts at genesis).
pub(crate) fn read_first_block(db: &Db) -> Result<u64, LedgerError> {
    let meta = cf(db, CF_META)?;
    match db.get_cf(meta, META_FIRST_BLOCK)? {
        None => Ok(0),
        Some(v) => Ok(u64::from_be_bytes(v.as_slice().try_into().map_err(
            |_| LedgerError::Corrupt(format!("meta first_block is {} bytes, expected 8", v.len())),
        )?)),
    }
}

/// Reads the hash of block `first_block - 1`, required when `first_block > 0`.
pub(crate) fn read_base_hash(db: &Db) -> Result<Option<Hash>, LedgerError> {
    let meta = cf(db, CF_META)?;
    db.get_cf(meta, META_BASE_HASH)?
        .map(|v| {
            Hash::try_from(v.as_slice()).map_err(|_| {
                LedgerError::Corrupt(format!("meta base_hash is {} bytes, expected 32", v.len()))
            })
        })
        .transpose()
}

impl BlockStore {
    /// The lowest block number this ledger holds: 0 for a ledger built from the genesis
    /// block, the snapshot's height for one joined from a snapshot. Reads below it
    /// answer [`LedgerError::Pruned`].
    pub fn first_block(&self) -> u64 {
        self.tip().first
    }

    /// Where the ledger's chain begins when it is not at block 0 (see the module docs);
    /// `None` for a ledger that holds its chain from the genesis block.
    pub fn base(&self) -> Result<Option<Base>, LedgerError> {
        // Read from `meta`, not the in-memory tip: a pruning step moves the tip's first
        // block just before it writes the new base, and the three keys must agree.
        let first_block = read_first_block(&self.inner.db)?;
        if first_block == 0 {
            return Ok(None);
        }
        let prev_hash = read_base_hash(&self.inner.db)?.ok_or_else(|| {
            LedgerError::Corrupt(format!(
                "the ledger starts at block {first_block} but records no base hash"
            ))
        })?;
        let config_block = self
            .inner
            .db
            .get_cf(self.cf(CF_META)?, META_BASE_CONFIG)?
            .map(|v| {
                Block::decode(Bytes::from(v))
                    .map_err(|e| LedgerError::Corrupt(format!("meta base_config: {e}")))
            })
            .transpose()?;
        Ok(Some(Base {
            first_block,
            prev_hash,
            config_block,
        }))
    }

    /// Where a walk over the held chain starts: the first block held and the hash it
    /// links to.
    pub fn chain_start(&self) -> Result<(u64, Hash), LedgerError> {
        Ok(match self.base()? {
            None => (0, ordo_proto::block::GENESIS_PREVIOUS_HASH),
            Some(b) => (b.first_block, b.prev_hash),
        })
    }

    /// A verifier for the held chain, expecting the first block held: from the genesis
    /// block, or resumed at a base with the configuration it recorded.
    pub fn chain_verifier(&self) -> Result<ordo_proto::verify::ChainVerifier, LedgerError> {
        let Some(base) = self.base()? else {
            return Ok(ordo_proto::verify::ChainVerifier::new());
        };
        let config_block = base.config_block.as_ref().ok_or_else(|| {
            LedgerError::Corrupt(format!(
                "the ledger starts at block {} but records no config block",
                base.first_block
            ))
        })?;
        let number = ordo_proto::block::number(config_block);
        let cfg = ordo_proto::config::config_from_block(config_block)
            .map_err(|e| LedgerError::Corrupt(format!("base config block {number}: {e}")))?;
        ordo_proto::verify::ChainVerifier::resume(base.first_block, base.prev_hash, cfg, number)
            .map_err(|e| LedgerError::Corrupt(format!("base config block {number}: {e}")))
    }

    /// The refusal of a read below the first block held, if `number` is below it.
    pub(crate) fn check_held(&self, number: u64) -> Result<(), LedgerError> {
        let first = self.first_block();
        if number < first {
            return Err(LedgerError::Pruned { number, first });
        }
        Ok(())
    }
}
