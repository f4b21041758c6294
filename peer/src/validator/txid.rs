//! Expiry and tx id uniqueness, decided in block order between the two stages (checks 7
//! and 8; the validator's docs, "Expiry").
//!
//! Only authenticated tx ids take part: a transaction whose envelope signature did not
//! verify has an id anyone could have written, so it can neither be a duplicate nor make
//! a later transaction one (else a forged copy placed first could cancel a real one).

use std::collections::HashSet;

use ordo_proto::pb::peer::TxValidationCode;

use super::stage1::Checked;
use super::state::TxIndex;

/// Marks EXPIRED every authenticated transaction signed below `floor_ms`, then
/// DUPLICATE_TXID every other one whose id is committed (by a transaction signed at or
/// above the floor) or was seen earlier in the block; the first occurrence wins, whatever
/// its own code. Both lose their tx id (the committer must not index an expired id, nor a
/// duplicate over the original's entry).
pub(crate) fn judge<I: TxIndex + ?Sized>(checked: &mut [Checked], txindex: &I, floor_ms: u64) {
    let mut seen: HashSet<String> = HashSet::with_capacity(checked.len());
    for c in checked.iter_mut() {
        let Some(id) = &c.tx_id else { continue };
        let (code, reason) = if c.timestamp_ms < floor_ms {
            (
                TxValidationCode::Expired,
                format!(
                    "signed at {} ms, below the expiry floor {floor_ms} ms (older than the \
                     channel's tx validity window on the ledger's clock)",
                    c.timestamp_ms
                ),
            )
        } else if txindex.committed_at_ms(id).is_some_and(|at| at >= floor_ms) {
            (
                TxValidationCode::DuplicateTxid,
                "tx id already committed".to_string(),
            )
        } else if !seen.insert(id.clone()) {
            (
                TxValidationCode::DuplicateTxid,
                "tx id already used earlier in the block".to_string(),
            )
        } else {
            continue;
        };
        c.code = code;
        c.reason = Some(reason);
        c.tx_id = None;
        c.effects = None;
    }
}

/// The expiry floor after a block whose final verdicts are `checked`: `floor_ms` raised to
/// the latest VALID timestamp less `window_ms`; unchanged when the window is 0 (never
/// expire) or no transaction is VALID.
pub(crate) fn next_floor(checked: &[Checked], floor_ms: u64, window_ms: u64) -> u64 {
    if window_ms == 0 {
        return floor_ms;
    }
    checked
        .iter()
        .filter(|c| c.code == TxValidationCode::Valid)
        .map(|c| c.timestamp_ms.saturating_sub(window_ms))
        .fold(floor_ms, u64::max)
}
