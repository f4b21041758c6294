//! The peer bench's load: endorser transactions built and signed before the clock
//! starts, a chosen number of them conflicting on purpose.
//!
//! Every transaction reads one key as absent (version `None`) and writes it, so it is
//! VALID exactly when no transaction before it in block order wrote that key. The keys are
//! `bench-<run id>-<n>`, new in every run. A *conflict* is a transaction that shares its
//! key with the transaction just before it (by index): of a group of transactions on one
//! key, whichever comes first in block order is VALID and every other one gets
//! MVCC_READ_CONFLICT — in the same block (a write earlier in the block) or a later one (a
//! committed version). So a run of `txs` transactions on `txs - conflicts` distinct keys
//! has exactly `conflicts` MVCC_READ_CONFLICTs, whatever order the orderer picks.

use bytes::Bytes;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::Envelope;
use ordo_sdk::tx::{self, Proposal, RwSetBuilder, TxError};

use crate::prepare::{build_in_parallel, Prepared};

/// What to build.
pub(crate) struct TxPlan<'a> {
    /// The proposals' creator, who also signs the envelopes.
    pub creator: &'a Identity,
    /// The peers that endorse every transaction (one per org, enough orgs for the
    /// chaincode's endorsement policy).
    pub endorsers: &'a [Identity],
    /// Channel id.
    pub channel: &'a str,
    /// The chaincode invoked; also the namespace of the read/write sets.
    pub chaincode: &'a str,
    /// The chaincode's version as defined on the channel.
    pub chaincode_version: &'a str,
    /// Makes this run's keys and tx ids differ from every other run's.
    pub run_id: u64,
    /// Transactions to build.
    pub txs: usize,
    /// How many of them conflict (at most `txs - 1`).
    pub conflicts: usize,
}

/// Deliberate conflicts for `percent`% of `txs` transactions, rounded down; at most
/// `txs - 1`, since one transaction per key is always VALID.
pub(crate) fn conflicts_for(txs: usize, percent: u32) -> usize {
    let wanted = (txs as u128 * u128::from(percent.min(100)) / 100) as usize;
    wanted.min(txs.saturating_sub(1))
}

/// The key number of each transaction: `conflicts` of them (spread evenly, never the
/// first) take the key of the transaction before them, every other one a key of its own.
/// Exactly `txs - conflicts` distinct keys.
pub(crate) fn key_numbers(txs: usize, conflicts: usize) -> Vec<usize> {
    assert!(
        conflicts < txs.max(1),
        "{conflicts} conflicts among {txs} transactions"
    );
    let mut conflicting = vec![false; txs];
    for j in 0..conflicts {
        // Strictly increasing in j, in 1..txs, since conflicts + 1 <= txs.
        let at = (j as u128 + 1) * txs as u128 / (conflicts as u128 + 1);
        conflicting[at as usize] = true;
    }
    let mut keys = Vec::with_capacity(txs);
    for (i, c) in conflicting.into_iter().enumerate() {
        let key = match (c, keys.last()) {
            (true, Some(&previous)) => previous,
            _ => i,
        };
        keys.push(key);
    }
    keys
}

/// The world-state key with number `n` in run `run_id`.
pub(crate) fn key_name(run_id: u64, n: usize) -> String {
    format!("bench-{run_id:016x}-{n}")
}

/// Builds and signs every transaction of `plan` on `threads` threads (blocking; call it
/// from `spawn_blocking`).
pub(crate) fn prepare_endorsed(plan: &TxPlan<'_>, threads: usize) -> Result<Prepared, TxError> {
    let keys = key_numbers(plan.txs, plan.conflicts);
    build_in_parallel(plan.txs, threads, |i| build_one(plan, i, keys[i]))
}

/// Transaction `i` on key number `key`: read as absent, write `i`.
fn build_one(plan: &TxPlan<'_>, i: usize, key: usize) -> Result<(Envelope, String), TxError> {
    let key = key_name(plan.run_id, key);
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&plan.run_id.to_be_bytes());
    nonce[8..].copy_from_slice(&(i as u64).to_be_bytes());
    let proposal = Proposal::with_nonce(
        plan.creator.cert_bytes().clone(),
        plan.channel,
        tx::invocation(
            plan.chaincode,
            "put",
            vec![Bytes::copy_from_slice(key.as_bytes())],
        ),
        &nonce,
    )?;
    let mut rw = RwSetBuilder::new();
    rw.read(plan.chaincode, &key, None).write(
        plan.chaincode,
        &key,
        Bytes::from(i.to_string().into_bytes()),
    );
    let env = tx::endorse_known(
        plan.creator,
        &proposal,
        plan.chaincode_version,
        rw.build(),
        plan.endorsers,
    )?;
    Ok((env, proposal.tx_id().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txid::tests::test_identity;
    use ordo_proto::envelope::unpack;
    use ordo_proto::pb::common::HeaderType;
    use ordo_proto::pb::peer::{EndorserTransaction, ProposalResponsePayload};
    use prost::Message;
    use std::collections::HashSet;

    fn distinct(keys: &[usize]) -> usize {
        keys.iter().collect::<HashSet<_>>().len()
    }

    #[test]
    fn conflicts_round_down_and_leave_one_valid() {
        assert_eq!(conflicts_for(2000, 10), 200);
        assert_eq!(conflicts_for(20_000, 10), 2000);
        assert_eq!(conflicts_for(999, 10), 99);
        assert_eq!(conflicts_for(10, 0), 0);
        assert_eq!(conflicts_for(10, 100), 9);
        assert_eq!(conflicts_for(10, 250), 9);
        assert_eq!(conflicts_for(1, 50), 0);
        assert_eq!(conflicts_for(0, 50), 0);
    }

    #[test]
    fn key_numbers_have_exactly_txs_minus_conflicts_keys() {
        assert_eq!(key_numbers(5, 0), vec![0, 1, 2, 3, 4]);
        assert_eq!(key_numbers(10, 1), vec![0, 1, 2, 3, 4, 4, 6, 7, 8, 9]);
        assert_eq!(key_numbers(4, 3), vec![0, 0, 0, 0]);
        assert_eq!(key_numbers(6, 2), vec![0, 1, 1, 3, 3, 5]);
        assert_eq!(key_numbers(0, 0), Vec::<usize>::new());
        for txs in [1usize, 2, 3, 7, 100, 2000, 2001] {
            for percent in [0u32, 1, 10, 33, 50, 51, 90, 100] {
                let c = conflicts_for(txs, percent);
                let keys = key_numbers(txs, c);
                assert_eq!(keys.len(), txs);
                assert_eq!(distinct(&keys), txs - c, "{txs} txs, {percent}%");
                assert_eq!(keys[0], 0);
                // A shared key is always the previous transaction's.
                for i in 1..txs {
                    assert!(keys[i] == i || keys[i] == keys[i - 1]);
                }
            }
        }
    }

    #[test]
    fn builds_endorsed_transactions_reading_absent_keys() {
        let creator = test_identity();
        let endorsers = [test_identity(), test_identity()];
        let plan = TxPlan {
            creator: &creator,
            endorsers: &endorsers,
            channel: "ch",
            chaincode: "bank",
            chaincode_version: "1",
            run_id: 0xabc,
            txs: 6,
            conflicts: 2,
        };
        let p = match prepare_endorsed(&plan, 2) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(p.envelopes.len(), 6);
        let mut keys = Vec::new();
        for (i, env) in p.envelopes.iter().enumerate() {
            let u = unpack(env).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(u.header_type, HeaderType::EndorserTransaction);
            assert_eq!(u.header.creator, *creator.cert_bytes());
            assert_eq!(p.index.get(&u.header.tx_id), Some(&i));
            let tx = EndorserTransaction::decode(u.data).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(tx.endorsements.len(), 2);
            let prp = ProposalResponsePayload::decode(tx.response_payload)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(prp.chaincode, "bank");
            assert_eq!(prp.chaincode_version, "1");
            assert_eq!(prp.response.map(|r| r.status), Some(200));
            let rw = prp.results.unwrap_or_default();
            let ns = &rw.ns_rwsets[0];
            assert_eq!(ns.namespace, "bank");
            assert_eq!(ns.reads.len(), 1);
            assert_eq!(ns.reads[0].version, None);
            assert_eq!(ns.writes[0].key, ns.reads[0].key);
            keys.push(ns.reads[0].key.clone());
        }
        let expected: Vec<String> = [0, 1, 1, 3, 3, 5]
            .iter()
            .map(|n| key_name(0xabc, *n))
            .collect();
        assert_eq!(keys, expected);
        assert_eq!(keys[0], "bench-0000000000000abc-0");
    }
}
