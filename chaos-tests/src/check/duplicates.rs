//! No duplicates: within a node's final chain, no tx id appears twice. Clients here never
//! resubmit an envelope (a retry is a new transaction), so a second copy can only come
//! from the ordering service (a re-proposal after a leader change, a producer retry, a
//! replay after a restart).

use std::collections::HashMap;

use crate::history::Record;

use super::{final_chains, Violation};

const PROPERTY: &str = "duplicates";

/// Checks the property.
pub fn check(history: &[Record]) -> Vec<Violation> {
    let mut out = Vec::new();
    for (node, chain) in final_chains(history) {
        let mut seen: HashMap<&str, u64> = HashMap::new();
        for b in chain {
            for tx in b.txs.iter().filter(|t| !t.is_empty()) {
                if let Some(first) = seen.insert(tx, b.number) {
                    out.push(Violation::new(
                        PROPERTY,
                        format!(
                            "{node}: tx {tx} is in block {first} and again in block {}",
                            b.number
                        ),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn a_repeated_tx_is_reported_once_per_extra_copy() {
        assert!(check(&final_blocks("o0", &chain(&[&["g"], &["a", "b"]]))).is_empty());
        let v = check(&final_blocks("o0", &chain(&[&["g"], &["a", "b"], &["a"]])));
        assert_eq!(v.len(), 1);
        assert!(
            v[0].detail
                .contains("tx a is in block 1 and again in block 2"),
            "{}",
            v[0]
        );
    }
}
