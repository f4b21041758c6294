//! No node dies on its own: every process exit is one the nemesis caused (kill, stop) or a
//! node stopping on a full disk. A panic, an abort or an error exit under faults the system
//! is meant to survive is a crash bug, even when the node comes back and the chains agree.

use crate::history::{Event, Record};

use super::Violation;

const PROPERTY: &str = "exits";

/// Checks the property.
pub fn check(history: &[Record]) -> Vec<Violation> {
    history
        .iter()
        .filter_map(|r| match &r.event {
            Event::Exited {
                node,
                status,
                last_words,
            } => Some(Violation::new(
                PROPERTY,
                format!(
                    "{node} exited by itself at {} ms ({status}){}",
                    r.at_ms,
                    if last_words.is_empty() {
                        String::new()
                    } else {
                        format!(": {last_words}")
                    }
                ),
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn an_exit_the_nemesis_did_not_cause_is_reported() {
        let quiet = vec![at(
            5,
            Event::Fault {
                what: "observed: o1 stopped on a full disk (exit status: 1)".into(),
            },
        )];
        assert!(check(&quiet).is_empty());
        let crashed = vec![at(
            7,
            Event::Exited {
                node: "o1".into(),
                status: "exit status: 101".into(),
                last_words: "panicked at raft_log.rs:314:13: applied(40) is out of range".into(),
            },
        )];
        let v = check(&crashed);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("o1 exited by itself"), "{}", v[0]);
        assert!(v[0].detail.contains("applied(40)"), "{}", v[0]);
    }
}
