//! Checks 7 and 8 with a tx validity window: expiry on the ledger's clock, and tx ids
//! that stop counting below the floor (validator docs, "Expiry").

use bytes::Bytes;
use ordo_sdk::tx::RwSetBuilder;

use super::fixture::*;
use crate::validator::{
    validate_block, BlockValidation, ExpiringTxIds, TxValidationCode as Code, ValidationContext,
};

/// The smallest window allowed, in ms.
const WINDOW_MS: u64 = 1_200_000;
/// Timestamps around the fixture's `NOW` (its certificates are valid then).
const T: u64 = NOW * 1000;

fn ctx(window_s: u64) -> ValidationContext {
    let mut cfg = net().config.clone();
    cfg.tx_validity_window_s = window_s;
    ValidationContext::new(cfg, NOW).expect("context")
}

fn write_tx(nonce: u64, at_ms: u64) -> Bytes {
    net()
        .tx(nonce)
        .rwset(
            RwSetBuilder::new()
                .write("bank", &format!("k{nonce}"), Bytes::from_static(b"1"))
                .build(),
        )
        .at(at_ms)
        .build()
}

fn tx_id(envelope: &Bytes) -> String {
    ordo_proto::envelope::tx_id_of(envelope).expect("tx id")
}

fn run(envelopes: Vec<Bytes>, window_s: u64, index: &ExpiringTxIds) -> BlockValidation {
    validate_block(
        &block_of(5, envelopes),
        &ctx(window_s),
        &State::new(),
        index,
    )
}

#[test]
fn a_transaction_signed_below_the_floor_is_expired_and_not_indexed() {
    let floor = T;
    let index = ExpiringTxIds {
        floor_ms: floor,
        ..Default::default()
    };
    let out = run(
        vec![write_tx(1, floor - 1), write_tx(2, floor)],
        1200,
        &index,
    );
    assert_eq!(out.codes, vec![Code::Expired, Code::Valid]);
    assert_eq!(out.tx_ids[0], None, "an expired id is not indexed");
    assert!(out.tx_ids[1].is_some());
    assert_eq!(
        out.updates.len(),
        1,
        "the expired transaction writes nothing"
    );
}

#[test]
fn the_floor_follows_the_latest_valid_timestamp_less_the_window_and_never_goes_down() {
    let index = ExpiringTxIds {
        floor_ms: T - WINDOW_MS,
        ..Default::default()
    };
    // The latest VALID timestamp is T + 5 s: the floor moves 5 s.
    let out = run(
        vec![write_tx(1, T + 5_000), write_tx(2, T + 1_000)],
        1200,
        &index,
    );
    assert_eq!(out.codes, vec![Code::Valid, Code::Valid]);
    assert_eq!(out.expiry_floor_ms, T + 5_000 - WINDOW_MS);

    // An invalid transaction's timestamp does not move the clock, however late.
    let unendorsed = net()
        .tx(3)
        .endorsers(vec![net().peer(0, 0)])
        .at(T + 60_000)
        .build();
    let out = run(vec![unendorsed, write_tx(4, T)], 1200, &index);
    assert_eq!(out.codes, vec![Code::EndorsementPolicyFailure, Code::Valid]);
    assert_eq!(out.expiry_floor_ms, T - WINDOW_MS);

    // Older VALID transactions than the clock leave the floor where it is.
    let out = run(vec![write_tx(5, T - 1_000)], 1200, &index);
    assert_eq!(out.expiry_floor_ms, T - WINDOW_MS);

    // Window 0 (never expire): the floor stays, and still refuses what is below it.
    let out = run(
        vec![write_tx(6, T + 3_600_000), write_tx(7, T - WINDOW_MS - 1)],
        0,
        &index,
    );
    assert_eq!(out.codes, vec![Code::Valid, Code::Expired]);
    assert_eq!(out.expiry_floor_ms, T - WINDOW_MS);

    // No window ever: nothing expires and the floor stays 0.
    let out = run(vec![write_tx(8, 1)], 0, &ExpiringTxIds::default());
    assert_eq!((out.codes[0], out.expiry_floor_ms), (Code::Valid, 0));
}

#[test]
fn a_committed_id_counts_as_a_duplicate_only_when_signed_at_or_above_the_floor() {
    let old = write_tx(1, T - 10);
    let recent = write_tx(2, T);
    let index = ExpiringTxIds {
        ids: [(tx_id(&old), T - 10), (tx_id(&recent), T)]
            .into_iter()
            .collect(),
        floor_ms: T,
    };
    // Re-signed by its creator with the same nonce at a fresh time: the old entry is
    // below the floor and no longer counts.
    let reused = write_tx(1, T + 1);
    let again = write_tx(2, T + 1);
    let out = run(vec![reused, again], 1200, &index);
    assert_eq!(out.codes, vec![Code::Valid, Code::DuplicateTxid]);
    // A replay of the old envelope itself is expired, not a duplicate.
    let out = run(vec![old], 1200, &index);
    assert_eq!(out.codes, vec![Code::Expired]);
    // An entry without a known time (indexed before times were kept) never expires.
    let legacy = write_tx(3, T + 1);
    let index = ExpiringTxIds {
        ids: [(tx_id(&legacy), u64::MAX)].into_iter().collect(),
        floor_ms: T,
    };
    assert_eq!(
        run(vec![legacy], 1200, &index).codes,
        vec![Code::DuplicateTxid]
    );
}

/// Dropping any entries below the floor — what a peer's background compaction does, at
/// its own pace — never changes a verdict: peers that dropped more or fewer agree.
#[test]
fn forgetting_ids_below_the_floor_changes_no_verdict() {
    let floor = T;
    let envelopes: Vec<Bytes> = (0..12u64)
        .map(|i| write_tx(100 + i, floor - 6 + i))
        .collect();
    // Everything committed before, at its own time.
    let full = ExpiringTxIds {
        ids: envelopes
            .iter()
            .zip(0u64..)
            .map(|(e, i)| (tx_id(e), floor - 6 + i))
            .collect(),
        floor_ms: floor,
    };
    // Re-signed copies, all fresh, plus the original envelopes again.
    let block: Vec<Bytes> = (0..12u64)
        .map(|i| write_tx(100 + i, floor + 10 + i))
        .chain(envelopes.iter().cloned())
        .collect();
    let reference = run(block.clone(), 1200, &full);
    for mask in [0u32, 0b1, 0b10_1010, 0b11_1111, 0xfff] {
        let mut partial = full.clone();
        partial.ids.retain(|_, at| {
            let i = (*at + 6 - floor) as u32;
            *at >= floor || mask & (1 << i) == 0
        });
        assert_eq!(
            run(block.clone(), 1200, &partial),
            reference,
            "mask {mask:#b}"
        );
    }
    // And the verdict did depend on the entries at or above the floor.
    assert!(reference.codes.contains(&Code::DuplicateTxid));
    assert!(reference.codes.contains(&Code::Expired));
    assert!(reference.codes.contains(&Code::Valid));
}
