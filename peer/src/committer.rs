//! The committer: a verified block in, a durable commit out.
//!
//! For each block, in order: validate it ([`crate::validator`]) against the committed
//! state, write the validation codes into the block's metadata, compute the commit hash,
//! and hand block, codes, state changes, tx index and commit hash to
//! [`BlockStore::commit`], which writes them in one synced batch. A crash anywhere leaves
//! the block fully committed or not at all; a restart resumes from the ledger's height
//! with the configuration in force and the commit hash the ledger holds.
//!
//! **Commit hash.** `H(previous commit hash ‖ block number ‖ codes ‖ state updates
//! [‖ expiry floor])`, SHA-256 over a fixed encoding ([`next_commit_hash`]). Two peers agree on the state exactly when their commit
//! hashes agree at the same height, without comparing the state itself.
//!
//! The caller must have verified the block (hash chain, data hash, orderer signatures —
//! [`ordo_proto::verify::ChainVerifier`]); the committer judges transactions.
//!
//! **Pipelining.** Most of a block's validation reads no committed state (signatures,
//! certificates, policies: [`crate::validator::precheck`]). A [`Prechecker`] taken from
//! the committer makes those checks for block n+1 on another thread while
//! [`Committer::commit_prechecked`] finishes and writes block n; the result is the same
//! as [`Committer::commit`]'s. When block n changed the configuration, checks made with
//! the old one are made again.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use thiserror::Error;

use ordo_ledger::{BlockStore, LedgerError, StateCommit, StateWrite};
use ordo_proto::config;
use ordo_proto::hash::Hash;
use ordo_proto::pb::common::{Block, BlockMetadata, ChannelConfig};

use crate::validator::{
    finish, precheck, BlockValidation, ContextError, Prechecked, StateUpdate, StateView, TxIndex,
    ValidationContext, Version,
};

/// The commit hash before the genesis block.
pub const GENESIS_COMMIT_HASH: Hash = [0u8; 32];

/// Why a block could not be committed. Nothing was written.
#[derive(Debug, Error)]
pub enum CommitError {
    /// The ledger failed or refused the block.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Reading the committed state failed while validating; the validation is discarded.
    #[error("block {number}: reading committed state: {reason}")]
    StateRead {
        /// The block.
        number: u64,
        /// The storage error.
        reason: String,
    },
    /// The block is not the next one.
    #[error("block {got} is not the next block (height {expected})")]
    NotNext {
        /// The height.
        expected: u64,
        /// The block's number.
        got: u64,
    },
    /// The channel configuration is unusable.
    #[error("channel configuration: {0}")]
    Config(String),
}

impl From<ContextError> for CommitError {
    fn from(e: ContextError) -> Self {
        CommitError::Config(e.to_string())
    }
}

/// What one commit did.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The block's number.
    pub number: u64,
    /// The validator's verdict (codes, updates, events, a new config).
    pub validation: BlockValidation,
    /// The commit hash after this block.
    pub commit_hash: Hash,
    /// Time spent validating the block's transactions (its precheck included, wherever
    /// it ran).
    pub validate_time: Duration,
    /// Time spent writing block, state and index (fsync included).
    pub write_time: Duration,
}

/// The committed state seen by the validator, over the ledger. Storage errors are kept
/// (the validator's traits cannot return them) and turn the whole block's validation
/// into a [`CommitError::StateRead`].
struct LedgerView<'a> {
    ledger: &'a BlockStore,
    error: RefCell<Option<String>>,
}

impl StateView for LedgerView<'_> {
    fn version(&self, namespace: &str, key: &str) -> Option<Version> {
        match self.ledger.state(namespace, key) {
            Ok(v) => v.map(|v| Version {
                block: v.version.block,
                tx: v.version.tx,
            }),
            Err(e) => {
                self.remember(e);
                None
            }
        }
    }

    fn range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Vec<(String, Version)> {
        match self.ledger.state_range(namespace, start, end, limit) {
            Ok(keys) => keys
                .into_iter()
                .map(|(key, v)| {
                    (
                        key,
                        Version {
                            block: v.version.block,
                            tx: v.version.tx,
                        },
                    )
                })
                .collect(),
            Err(e) => {
                self.remember(e);
                Vec::new()
            }
        }
    }
}

impl LedgerView<'_> {
    fn remember(&self, e: impl std::fmt::Display) {
        self.error.borrow_mut().get_or_insert(e.to_string());
    }
}

impl TxIndex for LedgerView<'_> {
    fn committed_at_ms(&self, tx_id: &str) -> Option<u64> {
        match self.ledger.tx_location(tx_id) {
            // An entry without a timestamp (indexed before they were kept) never expires.
            Ok(l) => l.map(|l| l.timestamp_ms.unwrap_or(u64::MAX)),
            Err(e) => {
                self.remember(e);
                // Discarded with the whole validation (the caller sees the error).
                None
            }
        }
    }

    fn expiry_floor_ms(&self) -> u64 {
        self.ledger.expiry_floor_ms()
    }
}

/// Commits one channel's blocks to its ledger.
pub struct Committer {
    ledger: BlockStore,
    ctx: Arc<ValidationContext>,
    /// Bumped whenever `ctx` is replaced, so checks made with an older one are redone.
    generation: u64,
    config_block: u64,
    commit_hash: Hash,
}

/// Makes the state-free checks of coming blocks with the configuration in force when it
/// was taken ([`Committer::prechecker`]); `Send`, so it can run on another thread.
#[derive(Debug, Clone)]
pub struct Prechecker {
    ctx: Arc<ValidationContext>,
    generation: u64,
}

impl Prechecker {
    /// The state-free checks of `block`.
    pub fn precheck(&self, block: &Block) -> PrecheckedBlock {
        let started = Instant::now();
        let checks = precheck(block, &self.ctx);
        PrecheckedBlock {
            checks,
            generation: self.generation,
            took: started.elapsed(),
        }
    }
}

/// A block's state-free checks, for [`Committer::commit_prechecked`].
#[derive(Debug)]
pub struct PrecheckedBlock {
    checks: Prechecked,
    generation: u64,
    took: Duration,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("channel", &self.ctx.channel_id())
            .field("height", &self.ledger.height())
            .finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts a channel on an empty ledger from its genesis block (checked: block 0, a
    /// config block, a valid configuration) and commits it.
    pub fn join(ledger: BlockStore, genesis: Block) -> Result<Self, CommitError> {
        if ledger.height() != 0 {
            return Err(CommitError::NotNext {
                expected: ledger.height(),
                got: 0,
            });
        }
        ordo_proto::block::check_structure(
            &genesis,
            Some((0, &ordo_proto::block::GENESIS_PREVIOUS_HASH)),
        )
        .map_err(|e| CommitError::Config(e.to_string()))?;
        let cfg =
            config::config_from_block(&genesis).map_err(|e| CommitError::Config(e.to_string()))?;
        let mut c = Self {
            ctx: Arc::new(ValidationContext::new(cfg, 0)?),
            generation: 0,
            ledger,
            config_block: 0,
            commit_hash: GENESIS_COMMIT_HASH,
        };
        c.commit(genesis)?;
        Ok(c)
    }

    /// Resumes a channel whose ledger holds at least the genesis block (or starts from a
    /// snapshot): the configuration in force is that of the last config block this peer
    /// validated as VALID ([`BlockStore::config_in_force`]).
    pub fn open(ledger: BlockStore) -> Result<Self, CommitError> {
        if ledger.height() == 0 {
            return Err(CommitError::Config(
                "the ledger is empty; join the channel first".into(),
            ));
        }
        let (block, config_block) = ledger.config_in_force()?;
        let cfg =
            config::config_from_block(&block).map_err(|e| CommitError::Config(e.to_string()))?;
        let commit_hash = ledger.commit_hash()?.unwrap_or(GENESIS_COMMIT_HASH);
        Ok(Self {
            ctx: Arc::new(ValidationContext::new(cfg, 0)?),
            generation: 0,
            ledger,
            config_block,
            commit_hash,
        })
    }

    /// The ledger.
    pub fn ledger(&self) -> &BlockStore {
        &self.ledger
    }

    /// The number of committed blocks.
    pub fn height(&self) -> u64 {
        self.ledger.height()
    }

    /// The commit hash after the last committed block.
    pub fn commit_hash(&self) -> Hash {
        self.commit_hash
    }

    /// The configuration in force and the block that holds it.
    pub fn config(&self) -> (&ChannelConfig, u64) {
        (self.ctx.config(), self.config_block)
    }

    /// Makes state-free checks of coming blocks elsewhere (module docs: pipelining).
    pub fn prechecker(&self) -> Prechecker {
        Prechecker {
            ctx: self.ctx.clone(),
            generation: self.generation,
        }
    }

    /// Validates and commits the next block (already verified by the caller).
    pub fn commit(&mut self, block: Block) -> Result<Committed, CommitError> {
        Arc::make_mut(&mut self.ctx).set_now_secs(ordo_proto::now_ms() / 1000);
        let pre = self.prechecker().precheck(&block);
        self.commit_prechecked(block, pre)
    }

    /// Validates and commits the next block with its checks made ahead by a
    /// [`Prechecker`]. Checks of another block, or made with a configuration no longer
    /// in force, are made again here; the outcome is always [`Committer::commit`]'s.
    pub fn commit_prechecked(
        &mut self,
        mut block: Block,
        pre: PrecheckedBlock,
    ) -> Result<Committed, CommitError> {
        let number = ordo_proto::block::number(&block);
        if number != self.ledger.height() {
            return Err(CommitError::NotNext {
                expected: self.ledger.height(),
                got: number,
            });
        }
        let pre = if pre.generation == self.generation && pre.checks.is_of(&block) {
            pre
        } else {
            self.prechecker().precheck(&block)
        };
        let started = Instant::now();
        let view = LedgerView {
            ledger: &self.ledger,
            error: RefCell::new(None),
        };
        let validation = finish(pre.checks, &view, &view);
        let validate_time = pre.took + started.elapsed();
        if let Some(reason) = view.error.into_inner() {
            return Err(CommitError::StateRead { number, reason });
        }
        let codes = validation.codes_bytes();
        let commit_hash = next_commit_hash(
            &self.commit_hash,
            number,
            &codes,
            &validation.updates,
            validation.expiry_floor_ms,
        );
        block
            .metadata
            .get_or_insert_with(BlockMetadata::default)
            .transaction_validation_codes = codes.clone().into();
        let commit = StateCommit {
            codes,
            writes: validation
                .updates
                .iter()
                .map(|u| StateWrite {
                    namespace: u.namespace.clone(),
                    key: u.key.clone(),
                    value: u.value.clone(),
                    version: ordo_ledger::Version {
                        block: u.version.block,
                        tx: u.version.tx,
                    },
                })
                .collect(),
            commit_hash,
            tx_ids: validation.tx_ids.clone(),
            expiry_floor_ms: validation.expiry_floor_ms,
            record_tx_times: validation.record_tx_times,
        };
        let writing = Instant::now();
        self.ledger.commit(&block, &commit)?;
        let write_time = writing.elapsed();
        self.commit_hash = commit_hash;
        if let Some(cfg) = &validation.config {
            if number > 0 {
                self.ctx = Arc::new(ValidationContext::new(cfg.clone(), 0)?);
                self.generation += 1;
                self.config_block = number;
            }
        }
        Ok(Committed {
            number,
            validation,
            commit_hash,
            validate_time,
            write_time,
        })
    }
}

/// The commit hash after a block: SHA-256 over the previous hash, the block number, the
/// codes, then every update as `len(ns) ns len(key) key version kind [len(value) value]`
/// with u32/u64 big-endian lengths and numbers, then — once transactions expire on the
/// channel (`expiry_floor_ms` above 0) — `expiry` and the floor (u64 BE), so that peers
/// whose floors differ disagree at once. A channel that never expired a transaction
/// keeps the hashes it always had.
pub fn next_commit_hash(
    prev: &Hash,
    number: u64,
    codes: &[u8],
    updates: &[StateUpdate],
    expiry_floor_ms: u64,
) -> Hash {
    let mut h = Sha256::new();
    h.update(b"ordo/commit/v1");
    h.update(prev);
    h.update(number.to_be_bytes());
    h.update((codes.len() as u64).to_be_bytes());
    h.update(codes);
    h.update((updates.len() as u64).to_be_bytes());
    for u in updates {
        h.update((u.namespace.len() as u32).to_be_bytes());
        h.update(u.namespace.as_bytes());
        h.update((u.key.len() as u32).to_be_bytes());
        h.update(u.key.as_bytes());
        h.update(u.version.block.to_be_bytes());
        h.update(u.version.tx.to_be_bytes());
        match &u.value {
            Some(v) => {
                h.update([1u8]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
            }
            None => h.update([0u8]),
        }
    }
    if expiry_floor_ms > 0 {
        h.update(b"expiry");
        h.update(expiry_floor_ms.to_be_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validator::tests::fixture::{net, NOW};
    use crate::validator::TxValidationCode;
    use bytes::Bytes;
    use ordo_proto::block;
    use ordo_sdk::tx::RwSetBuilder;

    struct Peer {
        _dir: tempfile::TempDir,
        committer: Committer,
    }

    fn peer() -> Peer {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = BlockStore::open(dir.path()).expect("ledger");
        let genesis = config::genesis_block(&net().config, NOW * 1000).expect("genesis");
        let committer = Committer::join(ledger, genesis).expect("join");
        Peer {
            _dir: dir,
            committer,
        }
    }

    fn next_block(c: &Committer, envelopes: Vec<Bytes>) -> Block {
        let prev = c.ledger().last_hash().expect("has blocks");
        let mut b = block::build(c.height(), prev, envelopes);
        // Orderer signatures are the deliver client's concern; the committer judges txs.
        b.metadata = Some(BlockMetadata::default());
        b
    }

    fn put(nonce: u64, key: &str, value: &str, read: Option<Option<Version>>) -> Bytes {
        let n = net();
        let mut rw = RwSetBuilder::new();
        if let Some(v) = read {
            rw.read("bank", key, v);
        }
        rw.write("bank", key, Bytes::copy_from_slice(value.as_bytes()));
        n.tx(nonce).rwset(rw.build()).build()
    }

    /// Blocks 1 and 2 of a small history: a write, then a good and a stale read.
    fn history() -> Vec<Vec<Bytes>> {
        vec![
            vec![put(1, "alice", "10", Some(None)), put(2, "bob", "5", None)],
            vec![
                put(3, "alice", "11", Some(Some(Version { block: 1, tx: 0 }))),
                put(4, "alice", "12", Some(None)),
                put(1, "carol", "1", None),
            ],
        ]
    }

    #[test]
    fn commits_state_codes_index_and_a_commit_hash_that_peers_agree_on() {
        let mut a = peer();
        let mut b = peer();
        for envelopes in history() {
            let block_a = next_block(&a.committer, envelopes.clone());
            let block_b = next_block(&b.committer, envelopes);
            let ca = a.committer.commit(block_a).expect("commit a");
            let cb = b.committer.commit(block_b).expect("commit b");
            assert_eq!(
                ca.commit_hash, cb.commit_hash,
                "same blocks, same commit hash"
            );
        }
        let c = &a.committer;
        assert_eq!(c.height(), 3);
        let alice = c
            .ledger()
            .state("bank", "alice")
            .expect("read")
            .expect("present");
        assert_eq!(alice.value, Bytes::from_static(b"11"));
        assert_eq!(alice.version, ordo_ledger::Version { block: 2, tx: 0 });
        let stored = c.ledger().block(2).expect("read").expect("block 2");
        let codes = stored
            .metadata
            .expect("metadata")
            .transaction_validation_codes;
        assert_eq!(
            codes.as_ref(),
            &[
                TxValidationCode::Valid as u8,
                TxValidationCode::MvccReadConflict as u8,
                TxValidationCode::DuplicateTxid as u8
            ]
        );
        let second = c.ledger().state("bank", "carol").expect("read");
        assert_eq!(second, None, "the duplicate's writes are not applied");
        let dup_tx = net().tx(1).build();
        let tx_id =
            ordo_proto::envelope::unpack(&ordo_proto::envelope::decode(&dup_tx).expect("env"))
                .expect("unpack")
                .header
                .tx_id;
        let loc = c
            .ledger()
            .tx_location(&tx_id)
            .expect("read")
            .expect("indexed");
        assert_eq!(
            (loc.block, loc.index, loc.code),
            (1, 0, Some(0)),
            "the original keeps its entry"
        );
        assert_eq!(
            c.ledger().commit_hash().expect("read"),
            Some(c.commit_hash())
        );
    }

    #[test]
    fn a_different_outcome_gives_a_different_commit_hash() {
        let mut a = peer();
        let mut b = peer();
        let blocks = history();
        a.committer
            .commit(next_block(&a.committer, blocks[0].clone()))
            .expect("a");
        // Peer b sees block 1 without bob's write.
        b.committer
            .commit(next_block(&b.committer, blocks[0][..1].to_vec()))
            .expect("b");
        assert_ne!(a.committer.commit_hash(), b.committer.commit_hash());
    }

    #[test]
    fn restart_resumes_height_hash_and_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let genesis = config::genesis_block(&net().config, NOW * 1000).expect("genesis");
        let mut c =
            Committer::join(BlockStore::open(dir.path()).expect("ledger"), genesis).expect("join");
        let blocks = history();
        c.commit(next_block(&c, blocks[0].clone()))
            .expect("block 1");
        let hash = c.commit_hash();
        drop(c);
        let mut c = Committer::open(BlockStore::open(dir.path()).expect("reopen")).expect("open");
        assert_eq!((c.height(), c.commit_hash()), (2, hash));
        assert_eq!(c.config().1, 0);
        assert_eq!(c.config().0.channel_id, net().config.channel_id);
        let done = c
            .commit(next_block(&c, blocks[1].clone()))
            .expect("block 2 after restart");
        assert_eq!(done.validation.valid_count(), 1);
        let err = c.commit(next_block(&c, vec![])).map(|_| ()).err();
        assert!(err.is_none(), "an empty block commits");
        let mut stale = next_block(&c, vec![]);
        if let Some(h) = stale.header.as_mut() {
            h.number = 1;
        }
        assert!(matches!(
            c.commit(stale),
            Err(CommitError::NotNext {
                expected: 4,
                got: 1
            })
        ));
    }

    #[test]
    fn checks_made_ahead_give_the_same_commits() {
        let mut sequential = peer();
        let mut pipelined = peer();
        let blocks = history();
        // Block n+1's checks are made before block n is written.
        let mut ahead = None;
        for (i, envelopes) in blocks.iter().enumerate() {
            let block = next_block(&pipelined.committer, envelopes.clone());
            let pre = ahead
                .take()
                .unwrap_or_else(|| pipelined.committer.prechecker().precheck(&block));
            if let Some(next) = blocks.get(i + 1) {
                let mut coming =
                    block::build(pipelined.committer.height() + 1, [0u8; 32], next.clone());
                coming.metadata = Some(BlockMetadata::default());
                ahead = Some(pipelined.committer.prechecker().precheck(&coming));
            }
            let p = pipelined
                .committer
                .commit_prechecked(block, pre)
                .expect("pipelined");
            let s = sequential
                .committer
                .commit(next_block(&sequential.committer, envelopes.clone()))
                .expect("sequential");
            assert_eq!(p.validation, s.validation, "block {}", p.number);
            assert_eq!(p.commit_hash, s.commit_hash);
        }
    }

    #[test]
    fn checks_made_with_a_configuration_no_longer_in_force_are_made_again() {
        use crate::validator::tests::config::{config_block, next_config};
        let n = net();
        let mut p = peer();
        let cfg = next_config();
        let update = config_block(1, &cfg, &cfg, &[&n.orgs[0].admin, &n.orgs[2].admin]);
        let update = next_block(
            &p.committer,
            update.data.clone().map(|d| d.data).unwrap_or_default(),
        );
        // A `kv` transaction, checked before the config block that defines `kv` commits.
        let mut t = n.tx(7);
        t.chaincode = "kv".into();
        t.endorsers = vec![n.peer(1, 0)];
        let mut kv = block::build(2, [0u8; 32], vec![t.build()]);
        kv.metadata = Some(BlockMetadata::default());
        let stale = p.committer.prechecker().precheck(&kv);
        let done = p.committer.commit(update).expect("config block");
        assert!(done.validation.config.is_some(), "the update is valid");

        let kv = next_block(
            &p.committer,
            kv.data.clone().map(|d| d.data).unwrap_or_default(),
        );
        let done = p.committer.commit_prechecked(kv, stale).expect("kv block");
        assert_eq!(
            done.validation.codes,
            vec![TxValidationCode::Valid],
            "checked again under the configuration that defines kv"
        );
    }

    #[test]
    fn checks_of_another_block_are_made_again() {
        let mut p = peer();
        let blocks = history();
        let first = next_block(&p.committer, blocks[0].clone());
        let other = next_block(&p.committer, blocks[0][..1].to_vec());
        let wrong = p.committer.prechecker().precheck(&other);
        let done = p.committer.commit_prechecked(first, wrong).expect("commit");
        assert_eq!(done.validation.codes.len(), 2, "judged on its own two txs");
        assert_eq!(done.validation.valid_count(), 2);
    }

    #[test]
    fn an_expiring_channel_records_its_floor_refuses_old_transactions_and_forgets_their_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = net().config.clone();
        cfg.tx_validity_window_s = 1500;
        let genesis = config::genesis_block(&cfg, NOW * 1000).expect("genesis");
        let mut c =
            Committer::join(BlockStore::open(dir.path()).expect("ledger"), genesis).expect("join");
        let t = NOW * 1000;
        let first = net().tx(1).at(t).build();
        let done = c
            .commit(next_block(&c, vec![first.clone()]))
            .expect("block 1");
        assert_eq!(done.validation.codes, vec![TxValidationCode::Valid]);
        assert_eq!(c.ledger().expiry_floor_ms(), t - 1_500_000);

        // Half an hour later on the ledger's clock: the first transaction is 5 minutes
        // past the window.
        let later = net().tx(2).at(t + 1_800_000).build();
        c.commit(next_block(&c, vec![later])).expect("block 2");
        assert_eq!(c.ledger().expiry_floor_ms(), t + 300_000);
        drop(c);

        let mut c = Committer::open(BlockStore::open(dir.path()).expect("reopen")).expect("open");
        assert_eq!(c.ledger().expiry_floor_ms(), t + 300_000, "durable");
        let replay = c.commit(next_block(&c, vec![first])).expect("block 3");
        assert_eq!(replay.validation.codes, vec![TxValidationCode::Expired]);
        let ledger = c.ledger().clone();
        drop(c);
        let at = ledger
            .tx_location(&ordo_proto::envelope::tx_id_of(&net().tx(1).at(t).build()).expect("id"))
            .expect("read")
            .expect("the original's entry, until compacted")
            .timestamp_ms;
        assert_eq!(at, Some(t));
        assert!(ledger.compact_expired().expect("compact").txids);
        let id = ordo_proto::envelope::tx_id_of(&net().tx(1).at(t).build()).expect("id");
        assert_eq!(ledger.tx_location(&id).expect("read"), None, "forgotten");
    }
}
