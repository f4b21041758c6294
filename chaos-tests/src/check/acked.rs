//! Acknowledged means ordered, refused means not:
//!
//! - In `committed` mode, every transaction Broadcast answered SUCCESS is in the final
//!   chain of every orderer exactly once — in the block the answer named, when it named
//!   one. (In `enqueued` mode a crash may lose acknowledged envelopes, as in Fabric, so
//!   this half is checked only in `committed` mode.)
//! - In any mode, a transaction refused with a definitive status is in no chain. The
//!   definitive ones: BAD_REQUEST, FORBIDDEN, NOT_FOUND, REQUEST_ENTITY_TOO_LARGE, and
//!   SERVICE_UNAVAILABLE whose reason begins "not ordered" (a committed-mode waiter told
//!   that its envelope lost). A plain SERVICE_UNAVAILABLE ("not ready", a failed Kafka
//!   delivery that the broker may still hold) promises nothing and counts as unknown.

use std::collections::HashMap;

use crate::history::{AckOutcome, Event, Record};

use super::{final_chains, Expectations, Violation};

const PROPERTY: &str = "acked";

/// Whether a refusal promises that the envelope was not ordered.
pub fn is_definitive_refusal(status: &str, info: &str) -> bool {
    match status {
        "BAD_REQUEST" | "FORBIDDEN" | "NOT_FOUND" | "REQUEST_ENTITY_TOO_LARGE" => true,
        "SERVICE_UNAVAILABLE" => info.starts_with("not ordered"),
        _ => false,
    }
}

/// Checks the property.
pub fn check(history: &[Record], expect: &Expectations) -> Vec<Violation> {
    let chains = final_chains(history);
    // Where each tx is in each node's chain: tx -> node -> block numbers.
    let mut places: HashMap<&str, HashMap<&str, Vec<u64>>> = HashMap::new();
    for (node, chain) in &chains {
        for b in chain {
            for tx in &b.txs {
                places
                    .entry(tx.as_str())
                    .or_default()
                    .entry(node)
                    .or_default()
                    .push(b.number);
            }
        }
    }
    let mut out = Vec::new();
    if expect.committed_acks {
        for node in &expect.full_nodes {
            if !chains.contains_key(node.as_str()) {
                out.push(Violation::new(
                    PROPERTY,
                    format!(
                        "{node}: no final chain was read, so no acknowledged tx can be found on it"
                    ),
                ));
            }
        }
    }
    for r in history {
        let Event::Ack {
            tx,
            node: acker,
            outcome,
        } = &r.event
        else {
            continue;
        };
        match outcome {
            AckOutcome::Success { block } if expect.committed_acks => {
                for node in expect
                    .full_nodes
                    .iter()
                    .filter(|n| chains.contains_key(n.as_str()))
                {
                    let found = places
                        .get(tx.as_str())
                        .and_then(|p| p.get(node.as_str()))
                        .cloned()
                        .unwrap_or_default();
                    if found.len() != 1 {
                        out.push(Violation::new(
                            PROPERTY,
                            format!(
                                "tx {tx} acknowledged by {acker} at {} ms is {} times in {node}'s chain (blocks {found:?})",
                                r.at_ms,
                                found.len()
                            ),
                        ));
                    } else if let Some(b) = block {
                        if found[0] != *b {
                            out.push(Violation::new(
                                PROPERTY,
                                format!(
                                    "tx {tx} acknowledged in block {b} by {acker} is in block {} on {node}",
                                    found[0]
                                ),
                            ));
                        }
                    }
                }
            }
            AckOutcome::Refused { status, info } if is_definitive_refusal(status, info) => {
                if let Some(p) = places.get(tx.as_str()) {
                    let nodes: Vec<&&str> = p.keys().collect();
                    out.push(Violation::new(
                        PROPERTY,
                        format!(
                            "tx {tx} refused by {acker} with {status} ({info}) is in the chain of {nodes:?}"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    fn success(block: Option<u64>) -> AckOutcome {
        AckOutcome::Success { block }
    }

    #[test]
    fn acked_txs_present_once_everywhere_pass() {
        let c = chain(&[&["g"], &["a", "b"]]);
        let mut h = vec![ack(1, "a", success(Some(1))), ack(2, "b", success(None))];
        h.extend(final_blocks("o0", &c));
        h.extend(final_blocks("o1", &c));
        assert!(check(&h, &expect()).is_empty());
    }

    #[test]
    fn a_lost_ack_a_wrong_block_and_a_missing_node_are_reported() {
        let c = chain(&[&["g"], &["a"]]);
        let mut h = vec![ack(1, "a", success(Some(2))), ack(2, "lost", success(None))];
        h.extend(final_blocks("o0", &c));
        let v = check(&h, &expect());
        let text: Vec<String> = v.iter().map(|v| v.to_string()).collect();
        assert_eq!(v.len(), 3, "{text:#?}");
        assert!(text.iter().any(|t| t.contains("o1: no final chain")));
        assert!(text
            .iter()
            .any(|t| t.contains("tx a acknowledged in block 2")));
        assert!(text
            .iter()
            .any(|t| t.contains("tx lost acknowledged") && t.contains("0 times")));
    }

    #[test]
    fn enqueued_mode_tolerates_lost_acks_but_never_an_ordered_refusal() {
        let mut e = expect();
        e.committed_acks = false;
        let c = chain(&[&["g"], &["r"]]);
        let mut h = vec![
            ack(1, "lost", success(None)),
            ack(
                2,
                "r",
                AckOutcome::Refused {
                    status: "SERVICE_UNAVAILABLE".into(),
                    info: "not ordered: leader changed".into(),
                },
            ),
        ];
        h.extend(final_blocks("o0", &c));
        let v = check(&h, &e);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("tx r refused"), "{}", v[0]);

        // A plain SERVICE_UNAVAILABLE promises nothing.
        h[1] = ack(
            2,
            "r",
            AckOutcome::Refused {
                status: "SERVICE_UNAVAILABLE".into(),
                info: "kafka delivery failed".into(),
            },
        );
        assert!(check(&h, &e).is_empty());
    }
}
