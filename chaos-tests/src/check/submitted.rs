//! Every delivered transaction was submitted: each tx id in a final chain after the
//! genesis block belongs to an envelope a client sent. Anything else was invented or
//! corrupted by the ordering service.

use std::collections::HashSet;

use crate::history::{Event, Record};

use super::{final_chains, Violation};

const PROPERTY: &str = "submitted";

/// Checks the property.
pub fn check(history: &[Record]) -> Vec<Violation> {
    let submitted: HashSet<&str> = history
        .iter()
        .filter_map(|r| match &r.event {
            Event::Submit { tx, .. } => Some(tx.as_str()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    let mut reported: HashSet<&str> = HashSet::new();
    for (node, chain) in final_chains(history) {
        for b in chain.iter().filter(|b| b.number > 0) {
            for tx in &b.txs {
                if !submitted.contains(tx.as_str()) && reported.insert(tx) {
                    out.push(Violation::new(
                        PROPERTY,
                        format!(
                            "{node}: block {} holds tx {tx:?}, which no client submitted",
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
    fn only_submitted_txs_may_appear_after_genesis() {
        let c = chain(&[&["genesis"], &["a"]]);
        let mut h = vec![submit(0, "a")];
        h.extend(final_blocks("o0", &c));
        assert!(check(&h).is_empty());
        let c = chain(&[&["genesis"], &["a", "ghost"]]);
        let mut h = vec![submit(0, "a")];
        h.extend(final_blocks("o0", &c));
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("ghost"), "{}", v[0]);
    }
}
