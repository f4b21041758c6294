//! Ed25519 as the nodes and clients use it: `ordo_proto::crypto::sign` and
//! `ordo_proto::crypto::verify` (one signature) on an envelope-sized (1,100-byte) message,
//! and `verify_each` over a batch of 512 such
//! messages, once with every signature from a different key and once from 4 keys (the
//! common case: a few busy client identities), so changes to the batch equation can be
//! measured on their own. Run with `cargo bench -p ordo-bench --bench signatures`.

use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{SigningKey, VerifyingKey};

use ordo_proto::crypto::{self, SignedMessage};

const BATCH: usize = 512;
const MSG_BYTES: usize = 1_100;

struct Corpus {
    keys: Vec<VerifyingKey>,
    msgs: Vec<Vec<u8>>,
    sigs: Vec<[u8; crypto::SIGNATURE_LEN]>,
}

fn corpus(distinct_keys: usize) -> Corpus {
    let signers: Vec<SigningKey> = (0..distinct_keys)
        .map(|_| crypto::generate_signing_key())
        .collect();
    let mut keys = Vec::with_capacity(BATCH);
    let mut msgs = Vec::with_capacity(BATCH);
    let mut sigs = Vec::with_capacity(BATCH);
    for i in 0..BATCH {
        let signer = &signers[i % distinct_keys];
        let msg: Vec<u8> = (0..MSG_BYTES).map(|j| (i * 31 + j) as u8).collect();
        sigs.push(crypto::sign(signer, &msg));
        keys.push(signer.verifying_key());
        msgs.push(msg);
    }
    Corpus { keys, msgs, sigs }
}

fn items(c: &Corpus) -> Vec<SignedMessage<'_>> {
    (0..BATCH)
        .map(|i| SignedMessage {
            key: &c.keys[i],
            msg: &c.msgs[i],
            sig: &c.sigs[i],
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ed25519");
    group.throughput(Throughput::Elements(1));
    let one = corpus(1);
    group.bench_function("verify_single", |b| {
        b.iter(|| crypto::verify(&one.keys[0], &one.msgs[0], &one.sigs[0]))
    });
    let signer = crypto::generate_signing_key();
    group.bench_function("sign", |b| b.iter(|| crypto::sign(&signer, &one.msgs[0])));
    group.throughput(Throughput::Elements(BATCH as u64));
    for distinct in [BATCH, 4] {
        let c = corpus(distinct);
        let batch = items(&c);
        group.bench_function(format!("verify_each_512_{distinct}keys"), |b| {
            b.iter_batched(
                || (),
                |()| {
                    let verdicts = crypto::verify_each(&batch);
                    assert!(verdicts.iter().all(|ok| *ok));
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

// The macro's `pub fn benches` has no doc comment of its own.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group! {
        name = benches;
        config = criterion::Criterion::default().sample_size(20);
        targets = super::bench
    }
}
criterion_main!(group::benches);
