//! The checkers: one property per file, each a pure function of the finished history.
//!
//! | file | property |
//! |---|---|
//! | [`agreement`] | every node delivers the same sequence: one block per number, whoever served it, whenever |
//! | [`gaps`] | no gaps: each node's chain is 0, 1, 2, … hash-linked, and a following reader saw the blocks in that order |
//! | [`duplicates`] | no transaction appears twice in a chain |
//! | [`acked`] | in `committed` mode every acknowledged transaction is in every chain exactly once (in the block the ack named); a transaction refused as "not ordered" is in none |
//! | [`submitted`] | every transaction in a chain was submitted by a client |
//! | [`peers`] | peers that reached the same height report the same commit (state) hash |
//! | [`liveness`] | once the faults healed, transactions are acknowledged again within the bound |
//! | [`exits`] | no node process ends unless the nemesis ended it (or its disk was full) |
//!
//! A checker returns every violation it finds, each naming the property and the evidence;
//! an empty list is a pass. Each has unit tests that feed it a broken history.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::{BlockSource, BlockSummary, Event, Record};

pub mod acked;
pub mod agreement;
pub mod duplicates;
pub mod exits;
pub mod gaps;
pub mod liveness;
pub mod peers;
pub mod submitted;

/// A broken property, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The property (the checker's module name).
    pub property: &'static str,
    /// What was seen.
    pub detail: String,
}

impl Violation {
    pub(crate) fn new(property: &'static str, detail: impl Into<String>) -> Self {
        Self {
            property,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.property, self.detail)
    }
}

/// What the checkers need to know besides the history.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// The channel acknowledges once blocks are durable (`committed`): acked transactions
    /// must never be lost. In `enqueued` mode a crash may lose acknowledged envelopes
    /// (Fabric's semantics), so [`acked`] only checks refusals.
    pub committed_acks: bool,
    /// After [`Event::Healed`], the first successful acknowledgement must come within this
    /// many milliseconds.
    pub liveness_bound_ms: u64,
    /// Nodes whose final chain must hold every acknowledged transaction (the orderers).
    pub full_nodes: Vec<String>,
}

/// Runs every checker.
pub fn all(history: &[Record], expect: &Expectations) -> Vec<Violation> {
    let mut v = Vec::new();
    v.extend(agreement::check(history));
    v.extend(gaps::check(history));
    v.extend(duplicates::check(history));
    v.extend(acked::check(history, expect));
    v.extend(submitted::check(history));
    v.extend(peers::check(history));
    v.extend(liveness::check(history, expect));
    v.extend(exits::check(history));
    v
}

/// Each node's final chain (blocks read after healing), by node, in record order.
pub(crate) fn final_chains(history: &[Record]) -> BTreeMap<&str, Vec<&BlockSummary>> {
    let mut chains: BTreeMap<&str, Vec<&BlockSummary>> = BTreeMap::new();
    for r in history {
        if let Event::Block {
            node,
            source: BlockSource::Final,
            block,
        } = &r.event
        {
            chains.entry(node.as_str()).or_default().push(block);
        }
    }
    chains
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::history::AckOutcome;

    /// A block whose hash is derived from its number and content, linked to `prev`.
    pub fn block(number: u64, previous: &str, txs: &[&str]) -> BlockSummary {
        BlockSummary {
            number,
            hash: format!("h{number}-{}", txs.join("+")),
            previous: previous.to_string(),
            txs: txs.iter().map(|t| t.to_string()).collect(),
            data_digest: format!("d{number}-{}", txs.join("+")),
            config_update_by: None,
        }
    }

    /// A linked chain with one block per entry of `blocks` (block 0 first).
    pub fn chain(blocks: &[&[&str]]) -> Vec<BlockSummary> {
        let mut out: Vec<BlockSummary> = Vec::new();
        for (i, txs) in blocks.iter().enumerate() {
            let prev = out.last().map(|b| b.hash.clone()).unwrap_or_default();
            out.push(block(i as u64, &prev, txs));
        }
        out
    }

    pub fn at(at_ms: u64, event: Event) -> Record {
        Record { at_ms, event }
    }

    pub fn final_blocks(node: &str, chain: &[BlockSummary]) -> Vec<Record> {
        chain
            .iter()
            .map(|b| {
                at(
                    1_000,
                    Event::Block {
                        node: node.into(),
                        source: BlockSource::Final,
                        block: b.clone(),
                    },
                )
            })
            .collect()
    }

    pub fn submit(at_ms: u64, tx: &str) -> Record {
        at(
            at_ms,
            Event::Submit {
                tx: tx.into(),
                node: "o0".into(),
            },
        )
    }

    pub fn ack(at_ms: u64, tx: &str, outcome: AckOutcome) -> Record {
        at(
            at_ms,
            Event::Ack {
                tx: tx.into(),
                node: "o0".into(),
                outcome,
            },
        )
    }

    pub fn expect() -> Expectations {
        Expectations {
            committed_acks: true,
            liveness_bound_ms: 100,
            full_nodes: vec!["o0".into(), "o1".into()],
        }
    }
}
