//! The core against generated partitions: deterministic, nothing lost or duplicated,
//! limits kept, and a restart from any block rebuilds exactly the same chain.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn limits(max_count: u32, preferred: u32) -> BatchLimits {
    BatchLimits {
        max_message_count: max_count,
        absolute_max_bytes: 4_000,
        preferred_max_bytes: preferred,
    }
}

/// Stale envelopes whose first byte is odd fail re-validation (deterministic).
fn revalidate(envelope: &[u8], _is_config: bool) -> Result<(), String> {
    match envelope.first() {
        Some(b) if b % 2 == 1 => Err("no longer allowed".into()),
        _ => Ok(()),
    }
}

fn env(tag: u32, size: usize) -> Bytes {
    let mut v = vec![(tag % 256) as u8; size.max(4)];
    v[..4].copy_from_slice(&tag.to_be_bytes());
    // Keep the parity marker in the first byte: tags decide it.
    v[0] = (tag % 256) as u8;
    Bytes::from(v)
}

/// What a generated step asks for; turned into a concrete message by [`partition`],
/// which needs to know the block being built.
#[derive(Debug, Clone)]
enum Step {
    Normal { size: usize, stale: bool },
    Config,
    TimeToCut { back: u64 },
    Connect,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (1usize..600, prop::bool::weighted(0.1)).prop_map(|(size, stale)| Step::Normal { size, stale }),
        1 => Just(Step::Config),
        3 => (0u64..3).prop_map(|back| Step::TimeToCut { back }),
        1 => Just(Step::Connect),
    ]
}

/// Everything one core did over a partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Run {
    /// (envelopes, last offset, config, config seq after it, last original offset after it)
    blocks: Vec<(Vec<Bytes>, i64, bool, u64, i64)>,
    refused: Vec<Bytes>,
}

/// Feeds `log` (from `start`) to `core`, keeping the config sequence as a driver would
/// (one more per config block).
fn feed(
    core: &mut KafkaCore,
    log: &[KafkaMessage],
    start: usize,
    mut seq: u64,
    mut last_orig: i64,
) -> Result<Run, KafkaCoreError> {
    let mut run = Run::default();
    let mut i = start;
    while i < log.len() {
        let actions = core.on_message(i as i64, log[i].clone(), seq, &revalidate)?;
        for a in actions {
            match a {
                Action::Block {
                    envelopes,
                    last_offset,
                    last_original_offset,
                    config,
                } => {
                    if config {
                        seq += 1;
                        if let KafkaMessage::Regular {
                            original_offset, ..
                        } = &log[last_offset as usize]
                        {
                            if *original_offset != 0 {
                                last_orig = *original_offset;
                            }
                        }
                    }
                    assert_eq!(
                        last_original_offset, last_orig,
                        "the block records the re-submissions applied so far"
                    );
                    run.blocks
                        .push((envelopes, last_offset, config, seq, last_orig));
                }
                Action::Refused { envelope, .. } => run.refused.push(envelope),
                Action::StartTimer { .. } | Action::StopTimer => {}
            }
        }
        i += 1;
    }
    Ok(run)
}

/// Builds the partition from `steps` with a live core, as the orderers' producers would:
/// time-to-cut messages name the block being built (or an earlier one, `back`).
fn partition(steps: &[Step], lim: BatchLimits) -> (Vec<KafkaMessage>, Run) {
    let mut log = Vec::new();
    let mut core = KafkaCore::resume(
        lim,
        ResumePoint {
            next_block: 1,
            last_offset: -1,
            last_original_offset: 0,
        },
    );
    let mut run = Run::default();
    let mut seq: u64 = 0;
    let mut last_orig: i64 = 0;
    // In the end some orderer's batch timer fires for whatever is pending.
    let flush = [Step::TimeToCut { back: 0 }];
    for (tag, s) in steps.iter().chain(flush.iter()).enumerate() {
        let tag = tag as u32 * 2 + 2; // even: valid on re-validation
        let msg = match s {
            Step::Normal { size, stale } => KafkaMessage::Regular {
                envelope: env(if *stale && tag % 4 == 0 { tag + 1 } else { tag }, *size),
                config_seq: if *stale { seq.saturating_sub(1) } else { seq },
                original_offset: 0,
                is_config: false,
            },
            Step::Config => KafkaMessage::Regular {
                envelope: env(tag, 50),
                config_seq: seq,
                original_offset: 0,
                is_config: true,
            },
            Step::TimeToCut { back } => KafkaMessage::TimeToCut {
                block_number: core.building().saturating_sub(*back),
            },
            Step::Connect => KafkaMessage::Connect,
        };
        log.push(msg);
        let start = log.len() - 1;
        let part = feed(&mut core, &log, start, seq, last_orig).expect("a well-formed partition");
        if let Some(b) = part.blocks.last() {
            seq = b.3;
            last_orig = b.4;
        }
        run.blocks.extend(part.blocks);
        run.refused.extend(part.refused);
    }
    (log, run)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_orderer_cuts_the_same_blocks_and_nothing_is_lost(
        steps in prop::collection::vec(step(), 1..120),
        max_count in 1u32..8,
        preferred in 200u32..2_000,
    ) {
        let lim = limits(max_count, preferred);
        let (log, live) = partition(&steps, lim);
        // Another orderer consuming the same partition from the start.
        let mut other = KafkaCore::resume(lim, ResumePoint { next_block: 1, last_offset: -1, last_original_offset: 0 });
        let replay = feed(&mut other, &log, 0, 0, 0).expect("replay");
        prop_assert_eq!(&replay.blocks, &live.blocks);
        prop_assert_eq!(&replay.refused, &live.refused);

        // Every regular envelope ends up exactly once: in a block or refused.
        let in_blocks: Vec<&Bytes> = live.blocks.iter().flat_map(|b| b.0.iter()).collect();
        let mut seen = std::collections::HashSet::new();
        for e in &in_blocks {
            prop_assert!(seen.insert(e.to_vec()), "an envelope is in two blocks");
        }
        for (i, m) in log.iter().enumerate() {
            if let KafkaMessage::Regular { envelope, original_offset, .. } = m {
                let placed = seen.contains(&envelope.to_vec());
                let refused = live.refused.contains(envelope);
                prop_assert!(placed || refused || *original_offset != 0,
                    "envelope at offset {} vanished", i);
            }
        }
        // Blocks keep the limits; config envelopes are alone; offsets increase.
        let mut last = -1;
        for (envs, last_offset, config, _, _) in &live.blocks {
            prop_assert!(!envs.is_empty());
            prop_assert!(*last_offset > last);
            last = *last_offset;
            if *config {
                prop_assert_eq!(envs.len(), 1);
            } else {
                prop_assert!(envs.len() <= max_count as usize);
                let bytes: usize = envs.iter().map(|e| e.len()).sum();
                prop_assert!(envs.len() == 1 || bytes <= preferred as usize);
            }
        }
    }

    #[test]
    fn a_restart_after_any_block_rebuilds_the_same_chain(
        steps in prop::collection::vec(step(), 1..100),
        max_count in 1u32..6,
        cut_at in any::<prop::sample::Index>(),
    ) {
        let lim = limits(max_count, 1_000);
        let (log, live) = partition(&steps, lim);
        prop_assume!(!live.blocks.is_empty());
        let k = cut_at.index(live.blocks.len());
        let (_, last_offset, _, seq, last_orig) = live.blocks[k].clone();
        // The orderer stopped after writing block k+1 (block 0 is the genesis block).
        let mut restarted = KafkaCore::resume(lim, ResumePoint {
            next_block: k as u64 + 2,
            last_offset,
            last_original_offset: last_orig,
        });
        let start = restarted.start_offset() as usize;
        let rest = feed(&mut restarted, &log, start, seq, last_orig).expect("resume");
        prop_assert_eq!(&rest.blocks[..], &live.blocks[k + 1..]);
    }
}

#[test]
fn time_to_cut_cuts_the_block_being_built_and_ignores_stale_ones() {
    let mut core = KafkaCore::resume(
        limits(10, 10_000),
        ResumePoint {
            next_block: 5,
            last_offset: 99,
            last_original_offset: 0,
        },
    );
    assert_eq!(core.start_offset(), 100);
    let regular = |tag| KafkaMessage::Regular {
        envelope: env(tag, 10),
        config_seq: 0,
        original_offset: 0,
        is_config: false,
    };
    let a = core
        .on_message(100, regular(2), 0, &revalidate)
        .expect("ok");
    assert_eq!(a, vec![Action::StartTimer { block: 5 }]);
    // Another orderer's timer for block 4 fired late: nothing happens.
    assert_eq!(
        core.on_message(
            101,
            KafkaMessage::TimeToCut { block_number: 4 },
            0,
            &revalidate
        )
        .expect("ok"),
        vec![]
    );
    let a = core
        .on_message(
            102,
            KafkaMessage::TimeToCut { block_number: 5 },
            0,
            &revalidate,
        )
        .expect("ok");
    assert_eq!(
        a,
        vec![
            Action::Block {
                envelopes: vec![env(2, 10)],
                last_offset: 100,
                last_original_offset: 0,
                config: false
            },
            Action::StopTimer
        ]
    );
    // A second time-to-cut for block 5 (two timers fired) is stale now.
    assert_eq!(
        core.on_message(
            103,
            KafkaMessage::TimeToCut { block_number: 5 },
            0,
            &revalidate
        )
        .expect("ok"),
        vec![]
    );
    // One from the future means this orderer missed something.
    assert_eq!(
        core.on_message(
            104,
            KafkaMessage::TimeToCut { block_number: 9 },
            0,
            &revalidate
        ),
        Err(KafkaCoreError::FutureTimeToCut {
            got: 9,
            building: 6
        })
    );
    // Offsets only go forward.
    assert!(matches!(
        core.on_message(104, KafkaMessage::Connect, 0, &revalidate),
        Err(KafkaCoreError::OffsetOrder { .. })
    ));
}

#[test]
fn stale_envelopes_are_revalidated_and_stale_configs_refused() {
    let mut core = KafkaCore::resume(
        limits(10, 10_000),
        ResumePoint {
            next_block: 1,
            last_offset: -1,
            last_original_offset: 0,
        },
    );
    let stale = |tag, is_config| KafkaMessage::Regular {
        envelope: env(tag, 10),
        config_seq: 0,
        original_offset: 0,
        is_config,
    };
    // Config sequence is 1 now: odd first bytes fail re-validation.
    let a = core
        .on_message(0, stale(3, false), 1, &revalidate)
        .expect("ok");
    assert!(matches!(&a[..], [Action::Refused { .. }]));
    // A stale config is refused even when it would pass re-validation: it was computed
    // from a config no longer in force.
    let a = core
        .on_message(1, stale(4, true), 1, &revalidate)
        .expect("ok");
    assert!(
        matches!(&a[..], [Action::Refused { envelope, reason }] if *envelope == env(4, 10) && reason.contains("submit it again")),
        "{a:?}"
    );
    // A copy an earlier version re-submitted (original offset set, current sequence) is
    // applied once; the same copy seen again is not.
    let again = KafkaMessage::Regular {
        envelope: env(4, 10),
        config_seq: 1,
        original_offset: 1,
        is_config: true,
    };
    let a = core
        .on_message(2, again.clone(), 1, &revalidate)
        .expect("ok");
    assert_eq!(
        a,
        vec![Action::Block {
            envelopes: vec![env(4, 10)],
            last_offset: 2,
            last_original_offset: 1,
            config: true
        }]
    );
    // The same re-submission seen again (a duplicate produce) is not applied twice.
    assert_eq!(
        core.on_message(3, again, 2, &revalidate).expect("ok"),
        vec![]
    );
}
