//! Where a ledger's chain begins when it does not begin at the genesis block.
//!
//! Three things start a ledger above block 0. A peer that joined a channel from a
//! snapshot holds no block below the snapshot's height `h`: its ledger starts with state,
//! tx index and commit hash as they were after block `h - 1`, and its first stored block
//! will be `h`. An orderer that joined a running channel after config block `n` starts at
//! `n + 1`, with that block as its base config ([`BlockStore::start_after_config_block`]).
//! And pruning moves the start of any ledger up (`prune` module). The **base** records
//! what the missing prefix leaves behind and what the rest of the ledger still needs from
//! it:
//!
//! | `meta` key | value | why it is kept |
//! |---|---|---|
//! | `first_block` | lowest block number held, `u64` BE | reads below it answer [`LedgerError::Pruned`] |
//! | `base_hash` | hash of block `first_block - 1`, 32 bytes | the next block (or the first held) must link to it |
//! | `base_config` | the config block in force at `first_block`, when it is below `first_block` | validating and verifying the next blocks needs the configuration in force |
//!
//! A ledger without these keys starts at block 0 (every ledger before format 2). The
//! keys are written in the batch that creates the based ledger (snapshot import, an
//! orderer's join) or moves its start (a pruning step), so a crash leaves either the old
//! ledger or the new one.
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

    /// Makes this new, empty orderer ledger start right after `config_block` (number
    /// `n > 0`): the first block held and the height become `n + 1`, the base hash is the
    /// config block's hash and the base config the config block itself. No block is held
    /// until block `n + 1` is appended; [`BlockStore::tip_block`] answers with the config
    /// block meanwhile.
    ///
    /// This is how an orderer joins a running channel without its history: the caller has
    /// checked `config_block` against what the channel's other orderers hold at `n` (its
    /// hash, and the consensus position in its metadata) before trusting it. One synced
    /// batch writes the base and the tip, so a crash leaves an empty ledger or a whole one.
    ///
    /// Refused with [`LedgerError::InvalidBlock`], nothing written: a ledger that is not
    /// empty or keeps a tx index (a peer's, which joins from a snapshot instead), block 0
    /// (join from the genesis block by appending it), a malformed block, or a block that
    /// carries no channel config.
    pub fn start_after_config_block(&self, config_block: &Block) -> Result<(), LedgerError> {
        use prost::Message as _;
        let _writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refuse = |why: String| Err(LedgerError::InvalidBlock(why));
        if self.height() != 0 {
            return refuse(format!(
                "a ledger starts after a config block only when empty; this one is at height {}",
                self.height()
            ));
        }
        if self.inner.tx_index != crate::TxIndex::Off {
            return refuse("a ledger with a tx index (a peer's) joins from a snapshot".into());
        }
        let number = ordo_proto::block::number(config_block);
        if number == 0 {
            return refuse("block 0 starts a ledger by being appended, not as a base".into());
        }
        ordo_proto::block::check_structure(config_block, None)
            .map_err(|e| LedgerError::InvalidBlock(format!("block {number}: {e}")))?;
        ordo_proto::config::config_from_block(config_block).map_err(|e| {
            LedgerError::InvalidBlock(format!("block {number} is not a config block: {e}"))
        })?;
        let hash = ordo_proto::block::hash(config_block);
        let next = number + 1;
        let meta = self.cf(CF_META)?;
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(meta, META_FIRST_BLOCK, next.to_be_bytes());
        batch.put_cf(meta, META_BASE_HASH, hash);
        batch.put_cf(meta, META_BASE_CONFIG, config_block.encode_to_vec());
        batch.put_cf(meta, crate::META_HEIGHT, next.to_be_bytes());
        batch.put_cf(meta, crate::META_LAST_HASH, hash);
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.inner.db.write_opt(batch, &opts)?;
        *self
            .inner
            .tip
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = crate::Tip {
            first: next,
            height: next,
            last_hash: Some(hash),
        };
        self.inner
            .history_floor
            .store(next, std::sync::atomic::Ordering::Relaxed);
        self.inner.height_tx.send_replace(next);
        tracing::info!(
            dir = %self.dir().display(),
            config_block = number,
            "ledger starts after a config block"
        );
        Ok(())
    }

    /// The block at `height - 1`: the last block held, or — in a ledger that starts after
    /// a config block and holds nothing yet — that config block, kept in the base. A
    /// consensus backend resumes from it (the raft position or the kafka offset in its
    /// metadata). `None` for an empty ledger, and for a base without that block (a peer's
    /// snapshot, whose base is not the block below it).
    pub fn tip_block(&self) -> Result<Option<Block>, LedgerError> {
        let height = self.height();
        let Some(last) = height.checked_sub(1) else {
            return Ok(None);
        };
        if last >= self.first_block() {
            return self.block(last);
        }
        Ok(self
            .base()?
            .and_then(|b| b.config_block)
            .filter(|c| ordo_proto::block::number(c) == last))
    }

    /// Block `number` when it is not held but kept as the base's config block (the config
    /// in force when the ledger's start was pruned or joined above it), encoded. A node
    /// keeps serving the config block in force — clients read it to build config updates
    /// — whatever it pruned. `None` for any other block.
    pub fn base_config_block_bytes(&self, number: u64) -> Result<Option<Bytes>, LedgerError> {
        use prost::Message as _;
        if number >= self.first_block() {
            return Ok(None);
        }
        Ok(self
            .base()?
            .and_then(|b| b.config_block)
            .filter(|c| ordo_proto::block::number(c) == number)
            .map(|c| Bytes::from(c.encode_to_vec())))
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ordo_proto::block;
    use ordo_proto::pb::common::{Block, Role};
    use ordo_testkit::{ChannelBuilder, TestOrg};

    use crate::{BlockStore, LedgerError, TxIndex};

    /// Block `n` of a channel: a config block carrying the fixture channel's config,
    /// linked to `previous`, signed by the channel's orderer; and block `n + 1` after it.
    fn config_block_and_next(n: u64) -> (Block, Block) {
        let org = TestOrg::new("A");
        let orderer = org.member(Role::Orderer, "o");
        let genesis = ChannelBuilder::new("bank").org(&org).genesis(0);
        let data = genesis.data.as_ref().expect("data").data.clone();
        let mut config = block::build(n, [7u8; 32], data);
        block::sign(&mut config, &orderer, n, Bytes::from_static(b"position"));
        let mut next = block::build(n + 1, block::hash(&config), vec![Bytes::from("tx")]);
        block::sign(&mut next, &orderer, n, Bytes::new());
        (config, next)
    }

    #[test]
    fn an_orderer_ledger_starts_after_a_config_block_and_goes_on_from_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, next) = config_block_and_next(41);
        let store = BlockStore::open_with(dir.path(), TxIndex::Off).expect("open");
        assert_eq!(store.tip_block().expect("tip"), None);
        store.start_after_config_block(&config).expect("based");
        assert_eq!((store.first_block(), store.height()), (42, 42));
        assert_eq!(store.last_hash(), Some(block::hash(&config)));
        // Nothing is held yet: the block below the height is the base's config block.
        assert_eq!(store.tip_block().expect("tip"), Some(config.clone()));
        assert!(matches!(
            store.block(41),
            Err(LedgerError::Pruned {
                number: 41,
                first: 42
            })
        ));
        assert_eq!(store.config_in_force().expect("in force").1, 41);

        // The same after a reopen; the next block appends and verifies from the base.
        drop(store);
        let store = BlockStore::open_with(dir.path(), TxIndex::Off).expect("reopen");
        assert_eq!((store.first_block(), store.height()), (42, 42));
        assert_eq!(store.tip_block().expect("tip"), Some(config.clone()));
        store
            .append(&next)
            .expect("block 42 links to the config block");
        assert_eq!(store.tip_block().expect("tip"), Some(next.clone()));
        let mut verifier = store.chain_verifier().expect("verifier");
        verifier
            .check(&next, ordo_proto::now_ms() / 1000)
            .expect("block 42 verifies under the base's config");
    }

    #[test]
    fn only_an_empty_orderer_ledger_starts_after_a_config_block() {
        let (config, next) = config_block_and_next(5);
        let refused = |store: &BlockStore, block: &Block, why: &str| {
            match store.start_after_config_block(block) {
                Err(LedgerError::InvalidBlock(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("expected a refusal ({why}), got {other:?}"),
            }
            assert_eq!(store.base().expect("base"), None, "nothing written");
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let peer = BlockStore::open(dir.path()).expect("open");
        refused(&peer, &config, "joins from a snapshot");

        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open_with(dir.path(), TxIndex::Off).expect("open");
        refused(&store, &next, "is not a config block");
        let genesis = {
            let org = TestOrg::new("A");
            ChannelBuilder::new("bank").org(&org).genesis(0)
        };
        refused(&store, &genesis, "block 0");
        let mut broken = config.clone();
        if let Some(h) = broken.header.as_mut() {
            h.data_hash = Bytes::from_static(&[0; 32]);
        }
        refused(&store, &broken, "block 5");
        assert_eq!(store.height(), 0);

        store.append(&genesis).expect("genesis");
        refused(&store, &config, "only when empty");
    }
}
