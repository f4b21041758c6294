//! The validator: one [`TxValidationCode`] per transaction of a block, and the world-state
//! updates of the valid ones, as a pure function of its inputs ([`validate_block`]).
//!
//! # Checks, in order
//!
//! A transaction's code is the first check it fails, in this order (so every peer picks
//! the same code for a transaction with several faults):
//!
//! | # | check | code |
//! |---|---|---|
//! | 1 | the envelope, payload and header decode; the header is sane (channel id, creator, nonce, tx id = hex(SHA-256(nonce ‖ creator))) | BAD_PAYLOAD |
//! | 2 | not a CONFIG envelope (those must be alone in their block) | INVALID_CONFIG |
//! | 3 | the header's channel is this channel | WRONG_CHANNEL |
//! | 4 | the header type is ENDORSER_TRANSACTION | UNKNOWN_TX_TYPE |
//! | 5 | the creator certificate is valid on the channel at the transaction's own time (its signed header's timestamp) | BAD_CREATOR |
//! | 6 | the envelope signature verifies | BAD_SIGNATURE |
//! | 7 | the transaction is not expired: its signed timestamp is at or above the ledger's expiry floor ([`TxIndex::expiry_floor_ms`]; see "Expiry" below) | EXPIRED |
//! | 8 | the tx id is not committed (an entry signed below the expiry floor no longer counts) and not used earlier in the block | DUPLICATE_TXID |
//! | 9 | the transaction, proposal and response payload decode; the proposal carries no transient data; the chaincode names agree; a response is present; at most [`MAX_ENDORSEMENTS`] endorsements | BAD_PAYLOAD |
//! | 10 | the proposal hash is `ordo_proto::hash::proposal_hash(tx_id, channel, proposal)` | BAD_PROPOSAL_HASH |
//! | 11 | the chaincode is defined on the channel and not retired | UNKNOWN_CHAINCODE |
//! | 12 | the endorsers ran under the definition in force: the response payload's `definition_sequence` (0 counts as 1) is the definition's | DEFINITION_SUPERSEDED |
//! | 13 | the endorsed chaincode version is the defined one | CHAINCODE_VERSION_MISMATCH |
//! | 14 | the read/write set is well formed (see [`MAX_KEY_BYTES`]; a range read's bounds in order and its keys existing, inside it, ascending) | BAD_RWSET |
//! | 15 | every namespace of the read/write set is a defined, not retired chaincode | UNKNOWN_CHAINCODE |
//! | 16 | the response status is a success ([`SUCCESS_STATUSES`]) | BAD_RESPONSE |
//! | 17 | the endorsements whose certificate is valid and whose signature over the exact response payload bytes verifies satisfy the endorsement policy of the chaincode and of every other namespace written | ENDORSEMENT_POLICY_FAILURE |
//! | 18 | MVCC (stage 2): every point read's version is the committed one, and no earlier valid transaction of the block wrote the key | MVCC_READ_CONFLICT |
//! | 19 | ranges (stage 2): every range read holds exactly the committed keys and versions it held at simulation, and no earlier valid transaction of the block wrote a key inside it | PHANTOM_READ_CONFLICT |
//!
//! Checks 1–6 and 9–17 are stage 1 (parallel); 7 and 8 run between the stages in block
//! order, and count only tx ids authenticated by check 6; 18 and 19 are stage 2. An envelope
//! that fails check 3 or 4 keeps that code, but checks 5 and 6 still run on it to
//! authenticate its tx id: a committed MESSAGE envelope is indexed (Query and
//! CommitStatus find it as UNKNOWN_TX_TYPE) and its id is taken. Bad endorsements are
//! dropped, not fatal: they can only make check 17 fail.
//!
//! A block that holds exactly one CONFIG envelope is a config block: it is VALID with no
//! state updates when the new configuration follows from the one in force (see
//! `config_block`), else INVALID_CONFIG.
//!
//! # Expiry
//!
//! A channel with a tx validity window `W` (`ChannelConfig.tx_validity_window_s`, not 0)
//! refuses transactions older than `W` on the **ledger's clock** — the latest signed
//! timestamp of a VALID transaction so far — so that peers need to remember tx ids for
//! `W` only, not forever. The clock is read off the chain itself, never off a peer's
//! wall clock, so every peer judges every transaction alike. It is kept as the **expiry
//! floor**: after block n, `floor(n) = max(floor(n-1), t(n) - W)`, where `t(n)` is the
//! latest timestamp of a VALID transaction of block n (a block with none, and a config
//! block, leave it as it was). The floor never goes down, whatever later configurations
//! say: raising `W` or turning it off (0) stops it until the clock catches up, never
//! brings back ids that were allowed to go.
//!
//! In block n, a transaction signed below `floor(n-1)` is EXPIRED (check 7): its id may
//! have been forgotten, so it cannot be judged for duplicates. A committed id signed
//! below the floor no longer makes a transaction a duplicate (check 8) — whether a peer
//! still holds its entry or already dropped it, so dropping entries (lazily, in the
//! background) can never make two peers disagree.
//!
//! Why honest transactions are not refused: the orderers admit an envelope only when its
//! timestamp is within 600 s of their clock (and re-check it on re-validation), so a
//! VALID timestamp is at most 600 s ahead of the ordering clock and an honest one at most
//! 600 s behind; the smallest window allowed, `ordo_proto::config::MIN_TX_VALIDITY_WINDOW_S`
//! (1,500 s), covers both with 300 s to spare.
//!
//! **What the rule trusts.** The envelope's timestamp is the creator's choice, signed by
//! the creator but not by the endorsers, so the bound on how far a client can move the
//! ledger's clock is the orderers' admission check alone: clients can move it at most
//! 600 s ahead of an orderer's clock, which the window absorbs. An orderer whose clock is
//! far ahead would admit envelopes that move the floor past every honest transaction until
//! real time catches up (orderers' clocks must be kept synchronised, as their certificate
//! checks already need). A byzantine-tolerant backend must bound proposal timestamps
//! itself. For the same reason an endorsement does not expire with its transaction: after
//! the window its creator could submit it again under a fresh timestamp, which MVCC
//! refuses whenever the transaction read what it writes.
//!
//! # The caller's duties
//!
//! - Verify the block first (hash chain, data hash, orderer signatures): the validator
//!   judges transactions, not the block.
//! - Store [`BlockValidation::codes_bytes`] in the block's
//!   `metadata.transaction_validation_codes`, apply [`BlockValidation::updates`] in order,
//!   index the tx ids of [`BlockValidation::tx_ids`] (with their timestamps when
//!   [`BlockValidation::record_tx_times`]) and record [`BlockValidation::expiry_floor_ms`]
//!   — all in one write batch.
//! - When [`BlockValidation::config`] is set, validate the following blocks with a new
//!   [`ValidationContext`] built from it.

mod config_block;
mod context;
mod mvcc;
mod prepare;
pub(crate) mod rwset;
mod stage1;
mod state;
mod txid;

#[cfg(test)]
pub(crate) mod tests;

use bytes::Bytes;
use ordo_proto::block;
use ordo_proto::config;
use ordo_proto::pb::common::{Block, ChannelConfig};

pub use context::{ContextError, ValidationContext, ValidatorOptions, DEFAULT_CHUNK_SIZE};
pub use ordo_proto::pb::peer::{ChaincodeEvent, TxValidationCode, Version};
pub use prepare::{MAX_ENDORSEMENTS, SUCCESS_STATUSES};
pub use rwset::MAX_KEY_BYTES;
pub use state::{ExpiringTxIds, StateView, TxIndex};

use mvcc::Mvcc;

/// One world-state change made by a valid transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUpdate {
    /// The chaincode whose state it is.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The new value; `None` deletes the key.
    pub value: Option<Bytes>,
    /// (block number, index of the transaction in the block): the key's new version.
    pub version: Version,
}

/// The chaincode event of a valid transaction, for event listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxEvent {
    /// Index of the transaction in the block.
    pub tx_index: u32,
    /// Its tx id.
    pub tx_id: String,
    /// The event the chaincode set.
    pub event: ChaincodeEvent,
}

/// The validator's verdict on a block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockValidation {
    /// The block's number.
    pub block_number: u64,
    /// One code per transaction, in block order.
    pub codes: Vec<TxValidationCode>,
    /// Per transaction, the tx id the committer adds to its tx index: `Some` when the
    /// envelope signature authenticated it and it is not a duplicate (whatever the code),
    /// `None` otherwise — an unauthenticated id could be anyone's, and a duplicate must
    /// not overwrite the original's entry.
    pub tx_ids: Vec<Option<String>>,
    /// The writes and deletes of valid transactions, in block order (and, within a
    /// transaction, in read/write-set order). Apply them in this order: a later update of
    /// a key replaces an earlier one.
    pub updates: Vec<StateUpdate>,
    /// The events set by valid transactions, in block order.
    pub events: Vec<TxEvent>,
    /// For a valid config block: the configuration in force from the next block on.
    pub config: Option<ChannelConfig>,
    /// The expiry floor after this block (module docs, "Expiry"): what
    /// [`TxIndex::expiry_floor_ms`] must answer when the next block is validated.
    pub expiry_floor_ms: u64,
    /// Whether the committer indexes each id with its signed timestamp: expiry is on for
    /// this block (the window in force is not 0, or the floor is above 0). Read off the
    /// chain, so every peer — upgraded in place or replaying from genesis — writes the
    /// same entries: one kept before expiry existed never expires.
    pub record_tx_times: bool,
}

impl BlockValidation {
    /// The codes as stored in `BlockMetadata.transaction_validation_codes`: one byte per
    /// transaction (every code fits in a byte).
    pub fn codes_bytes(&self) -> Vec<u8> {
        self.codes
            .iter()
            .map(|c| u8::try_from(*c as i32).unwrap_or(u8::MAX))
            .collect()
    }

    /// How many transactions are VALID.
    pub fn valid_count(&self) -> usize {
        self.codes
            .iter()
            .filter(|c| **c == TxValidationCode::Valid)
            .count()
    }
}

/// The reason a transaction got its code, kept for the logs.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub code: TxValidationCode,
    pub reason: String,
}

impl Verdict {
    pub(crate) fn new(code: TxValidationCode, reason: String) -> Self {
        Self { code, reason }
    }
}

/// Validates every transaction of `block` against the channel configuration of `ctx`,
/// the committed versions of `state` and the committed tx ids of `txindex`.
///
/// Pure and deterministic: the same inputs give the same result on every machine,
/// whatever its number of cores. Never panics on any block content. The same as
/// [`precheck`] then [`finish`].
pub fn validate_block<S, I>(
    block: &Block,
    ctx: &ValidationContext,
    state: &S,
    txindex: &I,
) -> BlockValidation
where
    S: StateView + ?Sized,
    I: TxIndex + ?Sized,
{
    finish(precheck(block, ctx), state, txindex)
}

/// A block's checks that read no committed state (stage 1, and the whole verdict on a
/// config block), made ahead of [`finish`].
///
/// They depend on the block and the configuration in force only, so a committer can run
/// them for block n+1 while block n is still being written — as long as block n does not
/// change the configuration (a config block): then they must be made again with the new
/// [`ValidationContext`].
#[derive(Debug)]
pub struct Prechecked {
    block_number: u64,
    txs: usize,
    /// The channel's tx validity window in ms (0: never expire), from the configuration
    /// the checks were made with.
    window_ms: u64,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    /// A config block's whole verdict (boxed: far larger than the other variant).
    Config(Box<BlockValidation>),
    /// Stage 1 of every transaction.
    Txs(Vec<stage1::Checked>),
}

impl Prechecked {
    /// The number of the block these checks were made on.
    pub fn block_number(&self) -> u64 {
        self.block_number
    }

    /// Whether these are the checks of `block` (its number and transaction count), so a
    /// caller can refuse to finish another block with them.
    pub fn is_of(&self, block: &Block) -> bool {
        self.block_number == block::number(block) && self.txs == envelopes(block).len()
    }
}

fn envelopes(block: &Block) -> &[Bytes] {
    block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default()
}

/// The checks of `block` that read no committed state (see [`Prechecked`]). Pure; uses
/// up to `ctx.options().max_threads` threads.
pub fn precheck(block: &Block, ctx: &ValidationContext) -> Prechecked {
    let number = block::number(block);
    let envelopes = envelopes(block);
    let stage = match envelopes {
        [only] if config::is_config_envelope(only) => {
            Stage::Config(Box::new(validate_config_block(block, number, ctx)))
        }
        _ => Stage::Txs(stage1::run(envelopes, ctx)),
    };
    Prechecked {
        block_number: number,
        txs: envelopes.len(),
        window_ms: ctx.tx_validity_window_ms(),
        stage,
    }
}

/// The rest of a block's validation, against the committed state: expiry and duplicate tx
/// ids (checks 7 and 8), MVCC and ranges (checks 18 and 19), in block order. `pre` must be the [`precheck`] of the
/// block, made with the configuration in force for it.
pub fn finish<S, I>(pre: Prechecked, state: &S, txindex: &I) -> BlockValidation
where
    S: StateView + ?Sized,
    I: TxIndex + ?Sized,
{
    let number = pre.block_number;
    let floor_before = txindex.expiry_floor_ms();
    let mut checked = match pre.stage {
        Stage::Config(mut verdict) => {
            verdict.expiry_floor_ms = floor_before;
            verdict.record_tx_times = pre.window_ms > 0 || floor_before > 0;
            return *verdict;
        }
        Stage::Txs(checked) => checked,
    };
    txid::judge(&mut checked, txindex, floor_before);

    let mut mvcc = Mvcc::new(number, state);
    let mut updates = Vec::new();
    let mut events = Vec::new();
    for (i, c) in checked.iter_mut().enumerate() {
        let Some(effects) = c.effects.take() else {
            continue;
        };
        let tx_index = u32::try_from(i).unwrap_or(u32::MAX);
        match mvcc.apply(tx_index, &effects.rwset, &mut updates) {
            Ok(()) => {
                if let (Some(event), Some(tx_id)) = (effects.event, &c.tx_id) {
                    events.push(TxEvent {
                        tx_index,
                        tx_id: tx_id.clone(),
                        event,
                    });
                }
            }
            Err(conflict) => {
                c.code = conflict.code;
                c.reason = Some(conflict.reason);
            }
        }
    }

    for (i, c) in checked.iter().enumerate() {
        if let Some(reason) = &c.reason {
            tracing::debug!(
                block = number,
                tx = i,
                code = c.code.as_str_name(),
                reason = reason.as_str(),
                "invalid transaction"
            );
        }
    }
    let expiry_floor_ms = txid::next_floor(&checked, floor_before, pre.window_ms);
    BlockValidation {
        block_number: number,
        codes: checked.iter().map(|c| c.code).collect(),
        tx_ids: checked.into_iter().map(|c| c.tx_id).collect(),
        updates,
        events,
        config: None,
        expiry_floor_ms,
        record_tx_times: pre.window_ms > 0 || floor_before > 0,
    }
}

fn validate_config_block(block: &Block, number: u64, ctx: &ValidationContext) -> BlockValidation {
    let (code, tx_id, config) = match config_block::check(block, number, ctx) {
        Ok(accepted) => (
            TxValidationCode::Valid,
            Some(accepted.tx_id),
            Some(accepted.config),
        ),
        Err(reason) => {
            tracing::warn!(
                block = number,
                reason = reason.as_str(),
                "invalid config block"
            );
            (TxValidationCode::InvalidConfig, None, None)
        }
    };
    BlockValidation {
        block_number: number,
        codes: vec![code],
        tx_ids: vec![tx_id],
        updates: Vec::new(),
        events: Vec::new(),
        config,
        // Set by `finish` from the ledger: a config block leaves the floor as it was.
        expiry_floor_ms: 0,
        record_tx_times: false,
    }
}
