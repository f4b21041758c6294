//! Every node delivers the same sequence: for each block number, every block any node
//! served — while following it during the run or in its final chain — is the same block
//! (same header hash, same transactions). Two different blocks at one height is a fork,
//! even if one of them was later "taken back" by a restart.

use std::collections::BTreeMap;

use crate::history::{BlockSummary, Event, Record};

use super::Violation;

const PROPERTY: &str = "agreement";

/// Checks the property.
pub fn check(history: &[Record]) -> Vec<Violation> {
    // The first block seen at each height, and who served it.
    let mut first: BTreeMap<u64, (&str, &BlockSummary)> = BTreeMap::new();
    let mut out = Vec::new();
    for r in history {
        let Event::Block { node, block, .. } = &r.event else {
            continue;
        };
        match first.get(&block.number) {
            None => {
                first.insert(block.number, (node, block));
            }
            Some((seen_node, seen)) => {
                if seen.hash != block.hash
                    || seen.txs != block.txs
                    || seen.data_digest != block.data_digest
                {
                    out.push(Violation::new(
                        PROPERTY,
                        format!(
                            "fork at block {}: {seen_node} served {} ({} txs), {node} served {} ({} txs) at {} ms",
                            block.number,
                            seen.hash,
                            seen.txs.len(),
                            block.hash,
                            block.txs.len(),
                            r.at_ms
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
    use crate::history::BlockSource;

    #[test]
    fn identical_chains_agree_and_a_different_block_is_a_fork() {
        let a = chain(&[&["g"], &["t1", "t2"], &["t3"]]);
        let mut h = final_blocks("o0", &a);
        h.extend(final_blocks("o1", &a[..2]));
        assert!(check(&h).is_empty());

        let mut forked = a.clone();
        forked[2] = block(2, &a[1].hash, &["t4"]);
        h.push(at(
            5,
            Event::Block {
                node: "o2".into(),
                source: BlockSource::Stream,
                block: forked[2].clone(),
            },
        ));
        let v = check(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("fork at block 2"), "{}", v[0]);

        // The same header and tx ids over other bytes (a tampered envelope) is a fork too.
        let mut tampered = a[1].clone();
        tampered.data_digest.push('!');
        let h = vec![
            at(
                1,
                Event::Block {
                    node: "o0".into(),
                    source: BlockSource::Final,
                    block: a[1].clone(),
                },
            ),
            at(
                2,
                Event::Block {
                    node: "p0".into(),
                    source: BlockSource::Final,
                    block: tampered,
                },
            ),
        ];
        assert_eq!(check(&h).len(), 1);
    }
}
