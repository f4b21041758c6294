//! Tx id uniqueness, decided in block order between the two stages.
//!
//! Only authenticated tx ids take part: a transaction whose envelope signature did not
//! verify has an id anyone could have written, so it can neither be a duplicate nor make
//! a later transaction one (else a forged copy placed first could cancel a real one).

use std::collections::HashSet;

use ordo_proto::pb::peer::TxValidationCode;

use super::stage1::Checked;
use super::state::TxIndex;

/// Marks DUPLICATE_TXID every transaction whose authenticated id is already committed or
/// was seen earlier in the block; the first occurrence wins, whatever its own code.
/// A duplicate loses its tx id (the committer must not index it over the original).
pub(crate) fn mark_duplicates<I: TxIndex + ?Sized>(checked: &mut [Checked], txindex: &I) {
    let mut seen: HashSet<String> = HashSet::with_capacity(checked.len());
    for c in checked.iter_mut() {
        let Some(id) = &c.tx_id else { continue };
        let reason = if txindex.contains(id) {
            "tx id already committed"
        } else if !seen.insert(id.clone()) {
            "tx id already used earlier in the block"
        } else {
            continue;
        };
        c.code = TxValidationCode::DuplicateTxid;
        c.reason = Some(reason.into());
        c.tx_id = None;
        c.effects = None;
    }
}
