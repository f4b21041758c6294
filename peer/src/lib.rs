//! # ordo-peer: the peer node
//!
//! A peer follows its channels on the ordering service, verifies every block, validates
//! every transaction as Fabric does, and commits blocks and world state. This crate holds
//! the pieces in the order a block flows through them; today:
//!
//! - [`validator`]: the pure, deterministic heart — given a block, the channel
//!   configuration in force, a time, the committed state versions and the committed tx
//!   ids, it decides one [`validator::TxValidationCode`] per transaction and the state
//!   updates of the valid ones. No network, no disk, no clock.
//! - [`committer`]: validates each verified block against the committed state and commits
//!   block, codes, state, history, tx index and commit hash in one synced write batch.
//! - [`chaincode`]: runs a chaincode invocation as a simulation over the committed state
//!   and returns what endorsers sign (response, read/write set, event).
//!
//! ## Validation in two stages
//!
//! **Stage 1** looks at each transaction alone, so it runs in parallel: the block's
//! transactions are cut into chunks of a fixed size and checked on scoped threads. Per
//! transaction: the envelope decodes and is for this channel; its creator certificate is
//! valid on the channel; the envelope signature; the endorser transaction, proposal and
//! response payload decode and agree; the proposal hash binds the endorsements to this
//! transaction; the chaincode is defined in the channel configuration; every endorsement
//! signature (bad ones are dropped); the endorsement policy over the good endorsers; and
//! the chaincode response is a success. All Ed25519 signatures of a chunk are checked in
//! one batch.
//!
//! Between the stages, in block order, tx ids are made unique: an id already committed,
//! or seen earlier in the block, is a duplicate; the first occurrence wins.
//!
//! **Stage 2** is sequential, in block order: MVCC. Each read of a valid transaction must
//! see the committed version, and a key written (or deleted) by an earlier valid
//! transaction of the same block makes any later read of it a conflict (Fabric's rule).
//! The writes of valid transactions become state updates with version (block, tx index).
//!
//! ## Determinism
//!
//! Every peer must reach the same codes and updates for the same block, or their world
//! states fork. So the validator reads no clock (time is an input), no randomness, and no
//! machine property that changes a result: chunks have a fixed size (never derived from
//! the number of cores), batch verification settles a failed batch with single checks so
//! a signature's verdict never depends on its neighbours, and every order is block order.
//! The number of threads only changes how fast the answer comes, never the answer; the
//! tests check that by validating the same blocks with different chunk sizes.

pub mod chaincode;
pub mod committer;
pub mod deliver;
pub mod node;
pub mod replay_check;
pub mod snapshot;
pub mod validator;
