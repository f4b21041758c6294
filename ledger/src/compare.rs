//! Comparing two ledgers column by column: how `ordo ledger verify` checks a peer's tx
//! index, world state and history against a replay of its own blocks.

use rocksdb::IteratorMode;

use crate::{BlockStore, LedgerError, TxLocation, CF_HISTORY, CF_STATE, CF_TXIDS};

/// The column families a replay of the same blocks must reproduce byte for byte on a
/// peer: the tx index (locations and codes), the world state and the key history. Tx-index
/// entries signed below a ledger's expiry floor are left out on each side: whether they
/// are still held depends on when compaction ran, not on the blocks (`expiry` module).
pub const REPLAYED_COLUMNS: [&str; 3] = [CF_TXIDS, CF_STATE, CF_HISTORY];

/// What a RocksDB iterator yields: a key and its value, or a read error.
type IteratedEntry = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>;

/// Where two ledgers' column families first differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The column family.
    pub column: &'static str,
    /// The first key (in RocksDB's order) whose presence or value differs.
    pub key: Vec<u8>,
    /// The value in this ledger (`None`: the key is missing here).
    pub here: Option<Vec<u8>>,
    /// The value in the other ledger (`None`: the key is missing there).
    pub there: Option<Vec<u8>>,
}

impl BlockStore {
    /// The first entry of column family `column` that differs between this ledger and
    /// `other`, or `None` when they hold exactly the same entries. Reads both in key
    /// order, one entry of each at a time: memory stays flat however large the column.
    pub fn first_difference(
        &self,
        other: &BlockStore,
        column: &'static str,
    ) -> Result<Option<Difference>, LedgerError> {
        let live = |store: &BlockStore| {
            let floor = if column == CF_TXIDS {
                store.expiry_floor_ms()
            } else {
                0
            };
            move |item: &IteratedEntry| match item {
                Ok((_, value)) => TxLocation::timestamp_of(value).is_none_or(|at| at >= floor),
                Err(_) => true,
            }
        };
        let mut mine = self
            .inner
            .db
            .iterator_cf(self.cf(column)?, IteratorMode::Start)
            .filter(live(self));
        let mut theirs = other
            .inner
            .db
            .iterator_cf(other.cf(column)?, IteratorMode::Start)
            .filter(live(other));
        let mut a = mine.next().transpose()?;
        let mut b = theirs.next().transpose()?;
        loop {
            let differ = |key: &[u8], here: Option<&[u8]>, there: Option<&[u8]>| {
                Some(Difference {
                    column,
                    key: key.to_vec(),
                    here: here.map(<[u8]>::to_vec),
                    there: there.map(<[u8]>::to_vec),
                })
            };
            match (&a, &b) {
                (None, None) => return Ok(None),
                (Some((k, v)), None) => return Ok(differ(k, Some(&v[..]), None)),
                (None, Some((k, v))) => return Ok(differ(k, None, Some(&v[..]))),
                (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                    std::cmp::Ordering::Less => return Ok(differ(ka, Some(&va[..]), None)),
                    std::cmp::Ordering::Greater => return Ok(differ(kb, None, Some(&vb[..]))),
                    std::cmp::Ordering::Equal if va != vb => {
                        return Ok(differ(ka, Some(&va[..]), Some(&vb[..])))
                    }
                    std::cmp::Ordering::Equal => {
                        a = mine.next().transpose()?;
                        b = theirs.next().transpose()?;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CF_META;

    #[test]
    fn equal_columns_have_no_difference_and_each_kind_of_difference_is_found() {
        let a_dir = tempfile::tempdir().expect("tempdir");
        let b_dir = tempfile::tempdir().expect("tempdir");
        let a = BlockStore::open(a_dir.path()).expect("open");
        let b = BlockStore::open(b_dir.path()).expect("open");
        let put = |s: &BlockStore, k: &[u8], v: &[u8]| {
            let db = &s.inner.db;
            db.put_cf(s.cf(CF_STATE).expect("cf"), k, v).expect("put");
        };
        for s in [&a, &b] {
            put(s, b"k1", b"v1");
            put(s, b"k3", b"v3");
        }
        assert_eq!(a.first_difference(&b, CF_STATE).expect("compare"), None);
        assert_eq!(a.first_difference(&b, CF_META).expect("compare"), None);

        put(&b, b"k3", b"changed");
        let d = a
            .first_difference(&b, CF_STATE)
            .expect("compare")
            .expect("differs");
        assert_eq!(
            (d.key.as_slice(), d.here.as_deref(), d.there.as_deref()),
            (&b"k3"[..], Some(&b"v3"[..]), Some(&b"changed"[..]))
        );

        put(&a, b"k2", b"only here");
        let d = a
            .first_difference(&b, CF_STATE)
            .expect("compare")
            .expect("differs");
        assert_eq!((d.key.as_slice(), d.there.as_deref()), (&b"k2"[..], None));
        let d = b
            .first_difference(&a, CF_STATE)
            .expect("compare")
            .expect("differs");
        assert_eq!((d.key.as_slice(), d.here.as_deref()), (&b"k2"[..], None));
    }
}
