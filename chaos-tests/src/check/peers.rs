//! Peers agree on the state: every (height, commit hash) any peer reported — while
//! polled during the run or at the end — is the same for one height. The commit hash
//! chains every block's validation codes and state changes, so equal hashes at a height
//! mean equal world states there.

use std::collections::BTreeMap;

use crate::history::{Event, Record};

use super::Violation;

const PROPERTY: &str = "peers";

/// Checks the property.
pub fn check(history: &[Record]) -> Vec<Violation> {
    let mut first: BTreeMap<u64, (&str, &str)> = BTreeMap::new();
    let mut out = Vec::new();
    for r in history {
        let Event::PeerState {
            peer,
            height,
            commit_hash,
        } = &r.event
        else {
            continue;
        };
        match first.get(height) {
            None => {
                first.insert(*height, (peer, commit_hash));
            }
            Some((p, h)) if *h != commit_hash.as_str() => out.push(Violation::new(
                PROPERTY,
                format!("at height {height}: {p} has commit hash {h}, {peer} has {commit_hash}"),
            )),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    fn state(peer: &str, height: u64, hash: &str) -> Record {
        at(
            1,
            Event::PeerState {
                peer: peer.into(),
                height,
                commit_hash: hash.into(),
            },
        )
    }

    #[test]
    fn same_height_same_hash() {
        let ok = vec![
            state("pa", 3, "x"),
            state("pb", 3, "x"),
            state("pb", 4, "y"),
        ];
        assert!(check(&ok).is_empty());
        let bad = vec![state("pa", 3, "x"), state("pb", 3, "z")];
        let v = check(&bad);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("at height 3"), "{}", v[0]);
    }
}
