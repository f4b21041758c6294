//! Liveness: once every fault is undone ([`Event::Healed`]), the service acknowledges
//! transactions again within the bound, and every orderer ends at the same height. A run
//! that never healed (no `Healed` event) is itself a violation: the runner must always
//! heal before it checks.

use std::collections::BTreeMap;

use crate::history::{AckOutcome, Event, Record};

use super::{final_chains, Expectations, Violation};

const PROPERTY: &str = "liveness";

/// Checks the property.
pub fn check(history: &[Record], expect: &Expectations) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(healed_at) = history.iter().find_map(|r| match r.event {
        Event::Healed => Some(r.at_ms),
        _ => None,
    }) else {
        return vec![Violation::new(
            PROPERTY,
            "the run never recorded that the faults healed",
        )];
    };
    let first_ack = history.iter().find_map(|r| match &r.event {
        Event::Ack {
            outcome: AckOutcome::Success { .. },
            ..
        } if r.at_ms >= healed_at => Some(r.at_ms),
        _ => None,
    });
    match first_ack {
        None => out.push(Violation::new(
            PROPERTY,
            format!("no transaction was acknowledged after the faults healed at {healed_at} ms"),
        )),
        Some(t) if t - healed_at > expect.liveness_bound_ms => out.push(Violation::new(
            PROPERTY,
            format!(
                "the first acknowledgement after healing came {} ms later (bound {} ms)",
                t - healed_at,
                expect.liveness_bound_ms
            ),
        )),
        Some(_) => {}
    }
    let heights: BTreeMap<&str, usize> = final_chains(history)
        .into_iter()
        .map(|(n, c)| (n, c.len()))
        .collect();
    let full: Vec<(&str, usize)> = expect
        .full_nodes
        .iter()
        .filter_map(|n| heights.get_key_value(n.as_str()).map(|(k, v)| (*k, *v)))
        .collect();
    if let (Some(lo), Some(hi)) = (
        full.iter().map(|(_, h)| *h).min(),
        full.iter().map(|(_, h)| *h).max(),
    ) {
        if lo != hi {
            out.push(Violation::new(
                PROPERTY,
                format!("orderers did not converge after healing: final heights {full:?}"),
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
    fn progress_within_the_bound_after_healing() {
        let ok = AckOutcome::Success { block: None };
        let h = vec![at(10, Event::Healed), ack(50, "a", ok.clone())];
        assert!(check(&h, &expect()).is_empty());

        let late = vec![at(10, Event::Healed), ack(500, "a", ok.clone())];
        assert_eq!(check(&late, &expect()).len(), 1);
        let never = vec![ack(5, "a", ok), at(10, Event::Healed)];
        assert_eq!(check(&never, &expect()).len(), 1);
        assert_eq!(check(&[], &expect()).len(), 1, "no Healed event");
    }

    #[test]
    fn orderers_must_end_at_one_height() {
        let ok = AckOutcome::Success { block: None };
        let c = chain(&[&["g"], &["a"]]);
        let mut h = vec![at(10, Event::Healed), ack(20, "a", ok)];
        h.extend(final_blocks("o0", &c));
        h.extend(final_blocks("o1", &c[..1]));
        let v = check(&h, &expect());
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("did not converge"), "{}", v[0]);
    }
}
