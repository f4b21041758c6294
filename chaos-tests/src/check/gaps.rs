//! No gaps: each node's final chain is blocks 0, 1, 2, … with each block linked to the
//! previous one by hash; and a reader following a node saw its blocks strictly in order,
//! each number once (its reconnections resume at the next number, so a skip or a repeat is
//! the node's doing).

use std::collections::BTreeMap;

use crate::history::{BlockSource, Event, Record};

use super::{final_chains, Violation};

const PROPERTY: &str = "gaps";

/// Checks the property.
pub fn check(history: &[Record]) -> Vec<Violation> {
    let mut out = Vec::new();
    // Where a node's chain starts when it holds none below (joined from a snapshot).
    let bases: BTreeMap<&str, u64> = history
        .iter()
        .filter_map(|r| match &r.event {
            Event::ChainBase { node, first } => Some((node.as_str(), *first)),
            _ => None,
        })
        .collect();
    for (node, chain) in final_chains(history) {
        let base = bases.get(node).copied().unwrap_or(0);
        for (i, b) in chain.iter().enumerate() {
            let number = base + i as u64;
            if b.number != number {
                out.push(Violation::new(
                    PROPERTY,
                    format!(
                        "{node}: final chain has block {} where block {number} belongs",
                        b.number
                    ),
                ));
                break;
            }
            if i > 0 && b.previous != chain[i - 1].hash {
                out.push(Violation::new(
                    PROPERTY,
                    format!(
                        "{node}: block {number} does not link to block {} (previous {} != {})",
                        number - 1,
                        b.previous,
                        chain[i - 1].hash
                    ),
                ));
            }
        }
    }
    let mut next: BTreeMap<&str, u64> = BTreeMap::new();
    for r in history {
        if let Event::Block {
            node,
            source: BlockSource::Stream,
            block,
        } = &r.event
        {
            let expected = next.entry(node.as_str()).or_insert(0);
            if block.number != *expected {
                out.push(Violation::new(
                    PROPERTY,
                    format!(
                        "{node}: a following reader got block {} when block {expected} was next (at {} ms)",
                        block.number, r.at_ms
                    ),
                ));
            }
            *expected = block.number + 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    fn stream(node: &str, b: &crate::history::BlockSummary) -> Record {
        at(
            1,
            Event::Block {
                node: node.into(),
                source: BlockSource::Stream,
                block: b.clone(),
            },
        )
    }

    #[test]
    fn a_contiguous_linked_chain_passes() {
        let c = chain(&[&["g"], &["a"], &["b"]]);
        let mut h = final_blocks("o0", &c);
        h.extend(c.iter().map(|b| stream("o0", b)));
        assert!(check(&h).is_empty());
    }

    #[test]
    fn a_missing_block_a_broken_link_and_a_skipping_stream_are_reported() {
        let c = chain(&[&["g"], &["a"], &["b"]]);
        let h = final_blocks("o0", &[c[0].clone(), c[2].clone()]);
        assert_eq!(check(&h).len(), 1);

        let mut unlinked = c.clone();
        unlinked[2].previous = "elsewhere".into();
        let v = check(&final_blocks("o0", &unlinked));
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("does not link"), "{}", v[0]);

        let h = vec![stream("o1", &c[0]), stream("o1", &c[2])];
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("block 1 was next"), "{}", v[0]);
    }

    #[test]
    fn a_chain_from_a_snapshot_starts_at_its_base_and_nowhere_else() {
        let c = chain(&[&["g"], &["a"], &["b"], &["c"]]);
        let base = |first| {
            at(
                1,
                Event::ChainBase {
                    node: "p1".into(),
                    first,
                },
            )
        };
        let mut joined = final_blocks("p1", &c[2..]);
        assert_eq!(check(&joined).len(), 1, "no base recorded: a gap from 0");
        joined.push(base(2));
        assert!(check(&joined).is_empty());

        let mut skipping = final_blocks("p1", &[c[1].clone(), c[3].clone()]);
        skipping.push(base(1));
        let v = check(&skipping);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("where block 2 belongs"), "{}", v[0]);
    }
}
