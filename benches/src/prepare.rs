//! Building and signing every envelope before the clock starts, on all cores.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ordo_proto::envelope::create_signed;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Envelope, HeaderType};
use rand::RngCore;

/// Envelopes ready to send, and what the Deliver side needs to recognise them.
pub(crate) struct Prepared {
    /// The signed envelopes, in index order.
    pub envelopes: Vec<Envelope>,
    /// Tx id → index into `envelopes`.
    pub index: HashMap<String, usize>,
    /// Threads used for signing.
    pub threads: usize,
    /// Wall time spent signing and indexing.
    pub elapsed: Duration,
}

/// The `part`-th of `parts` nearly equal contiguous ranges covering `0..total`.
pub(crate) fn split_range(total: usize, parts: usize, part: usize) -> Range<usize> {
    assert!(parts > 0 && part < parts, "part {part} of {parts}");
    // u128: `total * parts` must not overflow whatever the sizes.
    let at = |k: usize| (total as u128 * k as u128 / parts as u128) as usize;
    at(part)..at(part + 1)
}

/// Signs `txs` MESSAGE envelopes for `channel`, each with `payload_bytes` random bytes of
/// data, on `threads` threads (blocking; call it from `spawn_blocking`).
pub(crate) fn prepare(
    identity: &Identity,
    channel: &str,
    txs: usize,
    payload_bytes: usize,
    threads: usize,
) -> Prepared {
    let built = build_in_parallel(txs, threads, |_| {
        let mut data = vec![0u8; payload_bytes];
        rand::thread_rng().fill_bytes(&mut data);
        Ok::<_, Infallible>(create_signed(
            identity,
            channel,
            HeaderType::Message,
            Bytes::from(data),
            ordo_proto::now_ms(),
        ))
    });
    match built {
        Ok(prepared) => prepared,
        Err(never) => match never {},
    }
}

/// Builds envelopes `0..txs` with `build(i)` → (envelope, tx id) on `threads` threads,
/// each thread taking one contiguous range, and indexes them by tx id (blocking; call it
/// from `spawn_blocking`). The first error of any thread is returned. Panics if two
/// envelopes share a tx id: every builder makes unique ids, so that is a bug.
pub(crate) fn build_in_parallel<F, E>(txs: usize, threads: usize, build: F) -> Result<Prepared, E>
where
    F: Fn(usize) -> Result<(Envelope, String), E> + Sync,
    E: Send,
{
    let start = Instant::now();
    let threads = threads.clamp(1, txs.max(1));
    let build = &build;
    let chunks: Vec<Result<Vec<(Envelope, String)>, E>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let range = split_range(txs, threads, t);
                s.spawn(move || range.map(build).collect())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut envelopes = Vec::with_capacity(txs);
    let mut index = HashMap::with_capacity(txs);
    for chunk in chunks {
        for (env, id) in chunk? {
            let previous = index.insert(id, envelopes.len());
            assert!(previous.is_none(), "two envelopes with one tx id");
            envelopes.push(env);
        }
    }
    assert_eq!(envelopes.len(), txs);
    assert_eq!(index.len(), txs);
    Ok(Prepared {
        envelopes,
        index,
        threads,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txid::{payload_tx_id, tests::test_identity};
    use ordo_proto::envelope::unpack;

    #[test]
    fn split_range_covers_everything_once_in_order() {
        assert_eq!(split_range(10, 3, 0), 0..3);
        assert_eq!(split_range(10, 3, 1), 3..6);
        assert_eq!(split_range(10, 3, 2), 6..10);
        assert_eq!(split_range(2, 4, 0), 0..0);
        assert_eq!(split_range(2, 4, 1), 0..1);
        assert_eq!(split_range(2, 4, 3), 1..2);
        assert_eq!(split_range(0, 1, 0), 0..0);
        let big = usize::MAX / 2;
        assert_eq!(split_range(big, 2, 1).end, big);
    }

    #[test]
    fn prepares_signed_indexed_envelopes() {
        let id = test_identity();
        let p = prepare(&id, "ch1", 7, 100, 3);
        assert_eq!(p.threads, 3);
        assert_eq!(p.envelopes.len(), 7);
        assert_eq!(p.index.len(), 7);
        for (i, env) in p.envelopes.iter().enumerate() {
            let u = match unpack(env) {
                Ok(u) => u,
                Err(e) => panic!("envelope {i}: {e}"),
            };
            assert_eq!(u.header.channel_id, "ch1");
            assert_eq!(u.header_type, HeaderType::Message);
            assert_eq!(u.data.len(), 100);
            assert_eq!(p.index.get(&u.header.tx_id), Some(&i));
            assert_eq!(
                payload_tx_id(&env.payload).as_deref(),
                Some(u.header.tx_id.as_bytes())
            );
        }
    }

    #[test]
    fn more_threads_than_envelopes() {
        let p = prepare(&test_identity(), "ch", 2, 0, 8);
        assert_eq!(p.threads, 2);
        assert_eq!(p.envelopes.len(), 2);
        let empty = prepare(&test_identity(), "ch", 0, 0, 8);
        assert!(empty.envelopes.is_empty());
    }
}
