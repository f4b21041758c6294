//! Every delivered transaction was submitted: each tx id in a final chain after the
//! genesis block belongs to an envelope a client sent. Anything else was invented or
//! corrupted by the ordering service.
//!
//! Config blocks are the one exception to matching by tx id: the orderer wraps a client's
//! CONFIG_UPDATE in a CONFIG envelope it signs itself, with its own tx id. Such a block is
//! accounted for when the update's signer is one that an [`Event::ConfigSubmit`] recorded,
//! and there are no more distinct config txs per signer than updates it submitted (an
//! update the channel refused makes no block; one it applied twice would make two).

use std::collections::{HashMap, HashSet};

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
    // Config updates submitted, per signer.
    let mut updates: HashMap<&str, usize> = HashMap::new();
    for r in history {
        if let Event::ConfigSubmit { by, .. } = &r.event {
            *updates.entry(by.as_str()).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    let mut reported: HashSet<&str> = HashSet::new();
    // Config txs found, per signer of their update.
    let mut configs: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (node, chain) in final_chains(history) {
        for b in chain.iter().filter(|b| b.number > 0) {
            if let Some(by) = b.config_update_by.as_deref() {
                if updates.contains_key(by) {
                    configs
                        .entry(by)
                        .or_default()
                        .extend(b.txs.iter().map(String::as_str));
                    continue;
                }
            }
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
    for (by, txs) in configs {
        let sent = updates.get(by).copied().unwrap_or(0);
        if txs.len() > sent {
            out.push(Violation::new(
                PROPERTY,
                format!(
                    "{} config txs carry updates signed by {by}, which submitted {sent}",
                    txs.len()
                ),
            ));
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

    fn config_block(number: u64, tx: &str, by: &str) -> crate::history::BlockSummary {
        let mut b = block(number, "", &[tx]);
        b.config_update_by = Some(by.into());
        b
    }

    fn config_submit(by: &str) -> Record {
        at(
            0,
            Event::ConfigSubmit {
                by: by.into(),
                what: "update".into(),
            },
        )
    }

    #[test]
    fn config_blocks_need_an_update_the_operator_submitted() {
        let genesis = block(0, "", &["genesis"]);
        let chain = vec![genesis.clone(), config_block(1, "c1", "admin")];
        // Nobody submitted an update: the orderer invented one.
        let v = check(&final_blocks("o0", &chain));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("c1"), "{}", v[0]);
        // The operator submitted one.
        let mut h = vec![config_submit("admin")];
        h.extend(final_blocks("o0", &chain));
        assert!(check(&h).is_empty());
        // Someone else's update does not account for it.
        let mut h = vec![config_submit("other")];
        h.extend(final_blocks("o0", &chain));
        assert_eq!(check(&h).len(), 1);
        // Two config txs from one submitted update: one was applied twice.
        let chain = vec![
            genesis,
            config_block(1, "c1", "admin"),
            config_block(2, "c2", "admin"),
        ];
        let mut h = vec![config_submit("admin")];
        h.extend(final_blocks("o0", &chain));
        let v = check(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("submitted 1"), "{}", v[0]);
    }
}
