//! The catch-up loop against scripted sources: exact blocks written, which source is
//! asked when, and how each policy treats an unreachable, slow, lying or forked source.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;

use ordo_proto::block;
use ordo_proto::pb::common::Role;
use ordo_testkit::{blocks, ChannelBuilder, TestOrg};

use super::*;

/// A channel of `len` blocks: genesis, then blocks signed by an orderer of its org.
fn chain(len: u64) -> Vec<Block> {
    let org = TestOrg::new("A");
    let orderer = org.member(Role::Orderer, "o");
    let genesis = ChannelBuilder::new("c").org(&org).genesis(0);
    blocks::signed_chain(genesis, &orderer, len)
}

/// What a scripted source does on each pull, in order (the last one repeats).
#[derive(Clone)]
enum Act {
    /// Serves the asked range from this chain, at most this many blocks.
    Serve(Vec<Block>, u64),
    /// Fails.
    Fail(&'static str),
    /// Never answers.
    Hang,
}

struct Scripted {
    name: &'static str,
    acts: Mutex<VecDeque<Act>>,
    asked: Mutex<Vec<(u64, u64)>>,
}

impl Scripted {
    fn new(name: &'static str, acts: Vec<Act>) -> Self {
        Self {
            name,
            acts: Mutex::new(acts.into()),
            asked: Mutex::new(Vec::new()),
        }
    }

    fn asked(&self) -> Vec<(u64, u64)> {
        self.asked.lock().expect("lock").clone()
    }
}

impl BlockSource for Scripted {
    fn name(&self) -> String {
        self.name.into()
    }

    fn pull(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Vec<Block>, String>> {
        self.asked.lock().expect("lock").push((start, end));
        let act = {
            let mut acts = self.acts.lock().expect("lock");
            if acts.len() > 1 {
                acts.pop_front()
            } else {
                acts.front().cloned()
            }
        };
        Box::pin(async move {
            match act {
                Some(Act::Serve(chain, cap)) => Ok(chain
                    .iter()
                    .skip(start as usize)
                    .take(((end + 1 - start).min(cap)) as usize)
                    .cloned()
                    .collect()),
                Some(Act::Fail(why)) => Err(why.to_string()),
                Some(Act::Hang) | None => std::future::pending().await,
            }
        })
    }
}

fn policy(max_rounds: Option<u32>, fatal: bool) -> RetryPolicy {
    RetryPolicy {
        pull_timeout: Duration::from_secs(5),
        pause: Duration::from_millis(500),
        max_rounds,
        bad_block_is_fatal: fatal,
    }
}

/// Runs a catch-up from an empty ledger to `chain`'s last block; returns the numbers
/// written and the outcome.
async fn run(
    chain: &[Block],
    sources: &[&dyn BlockSource],
    policy: RetryPolicy,
    halt: &CancellationToken,
) -> (Vec<u64>, Result<(), CatchUpError>) {
    let last = chain.last().expect("a chain");
    let target = Target {
        number: block::number(last),
        hash: block::hash(last),
    };
    let written = Mutex::new(Vec::new());
    let mut verifier = ChainVerifier::new();
    let outcome = fill_to(
        sources,
        target,
        || written.lock().expect("lock").len() as u64,
        &mut verifier,
        |b| {
            written.lock().expect("lock").push(block::number(&b));
            Ok(())
        },
        policy,
        halt,
    )
    .await;
    let numbers = written.into_inner().expect("lock");
    (numbers, outcome)
}

#[tokio::test(start_paused = true)]
async fn blocks_come_in_capped_pulls_and_a_failing_source_is_skipped() {
    let c = chain(7);
    let down = Scripted::new("down", vec![Act::Fail("connection refused")]);
    let up = Scripted::new("up", vec![Act::Serve(c.clone(), 3)]);
    let (written, outcome) = run(
        &c,
        &[&down, &up],
        policy(None, false),
        &CancellationToken::new(),
    )
    .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(written, (0..7).collect::<Vec<_>>());
    assert_eq!(up.asked(), vec![(0, 6), (3, 6), (6, 6)]);
    assert_eq!(
        down.asked(),
        vec![(0, 6), (3, 6), (6, 6)],
        "tried first every round"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_source_times_out_and_the_next_serves() {
    let c = chain(3);
    let slow = Scripted::new("slow", vec![Act::Hang]);
    let up = Scripted::new("up", vec![Act::Serve(c.clone(), 100)]);
    let (written, outcome) = run(
        &c,
        &[&slow, &up],
        policy(Some(1), true),
        &CancellationToken::new(),
    )
    .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(written, vec![0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_fork_at_the_target_is_fatal_for_a_join_and_skipped_by_raft() {
    let c = chain(4);
    let other = chain(4); // another channel: its blocks do not link to ours
    let mut forked = c.clone();
    forked[3] = {
        let mut b = block::build(3, block::hash(&c[2]), vec![Bytes::from_static(b"fork")]);
        b.metadata = c[3].metadata.clone();
        b
    };
    let liar = Scripted::new("liar", vec![Act::Serve(forked.clone(), 100)]);
    let (written, outcome) = run(
        &c,
        &[&liar],
        policy(Some(3), true),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(
        written,
        vec![0, 1, 2],
        "everything before the fork is written"
    );
    assert!(
        matches!(&outcome, Err(CatchUpError::Pull(PullError::BadBlock { number: 3, source_name, .. })) if source_name == "liar"),
        "{outcome:?}"
    );

    // Raft's policy: the liar's turn ends, an honest source serves the target.
    let liar = Scripted::new("liar", vec![Act::Serve(forked, 100)]);
    let stranger = Scripted::new("stranger", vec![Act::Serve(other, 100)]);
    let honest = Scripted::new("honest", vec![Act::Serve(c.clone(), 100)]);
    let (written, outcome) = run(
        &c,
        &[&liar, &stranger, &honest],
        policy(None, false),
        &CancellationToken::new(),
    )
    .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(written, vec![0, 1, 2, 3]);
    assert_eq!(
        liar.asked(),
        vec![(0, 3)],
        "0..=2 taken, its block 3 refused"
    );
    assert_eq!(
        stranger.asked(),
        vec![(3, 3)],
        "another chain's block 3 refused"
    );
    assert_eq!(honest.asked(), vec![(3, 3)]);
}

#[tokio::test(start_paused = true)]
async fn rounds_without_progress_give_up_with_every_sources_reason() {
    let c = chain(3);
    let a = Scripted::new("a", vec![Act::Fail("refused")]);
    let b = Scripted::new("b", vec![Act::Serve(Vec::new(), 100)]);
    let (written, outcome) = run(
        &c,
        &[&a, &b],
        policy(Some(2), true),
        &CancellationToken::new(),
    )
    .await;
    assert!(written.is_empty());
    assert!(
        matches!(
            &outcome,
            Err(CatchUpError::Pull(PullError::Unavailable { height: 0, rounds: 2, failures }))
                if failures == "a: refused; b: served no block"
        ),
        "{outcome:?}"
    );
    assert_eq!(a.asked().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_halt_ends_the_retries() {
    let c = chain(3);
    let down = Scripted::new("down", vec![Act::Fail("refused")]);
    let halt = CancellationToken::new();
    let stopper = halt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        stopper.cancel();
    });
    let (written, outcome) = run(&c, &[&down], policy(None, false), &halt).await;
    assert!(written.is_empty());
    assert!(matches!(outcome, Err(CatchUpError::Halted)), "{outcome:?}");
    assert_eq!(
        down.asked().len(),
        21,
        "one pull per 500 ms pause until the halt at 10 s"
    );
}
