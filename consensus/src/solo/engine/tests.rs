//! Solo engine transcripts: what each input makes the engine ask for.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::testing::{envelope, genesis};

fn engine(max_count: u32) -> SoloEngine {
    let config = ordo_proto::config::config_from_block(&genesis(1, max_count)).expect("config");
    SoloEngine::new(Arc::new(ConfigState::new(config, 0).expect("state")))
}

fn normal(n: u64, size: usize) -> Input {
    let (envelope, tx_id) = envelope(n, size);
    Input::Envelope {
        request: OrderRequest {
            envelope,
            tx_id,
            config_seq: 0,
        },
        is_config: false,
    }
}

/// A config envelope (the engine does not look inside; the writer parses it).
fn config(n: u64, config_seq: u64) -> Input {
    let (envelope, tx_id) = envelope(n, 10);
    Input::Envelope {
        request: OrderRequest {
            envelope,
            tx_id,
            config_seq,
        },
        is_config: true,
    }
}

fn at(ms: u64) -> Input {
    Input::Time {
        now: Duration::from_millis(ms),
        unix_secs: 1,
    }
}

/// The commands as short lines.
fn render(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .map(|c| match c {
            Command::Write { envelopes, config } => format!(
                "write {} {}",
                if *config { "config" } else { "block" },
                envelopes.len()
            ),
            Command::Reject { reason, .. } => format!("reject: {reason}"),
            Command::ArmTimer(Some(d)) => format!("timer {}ms", d.as_millis()),
            Command::ArmTimer(None) => "timer off".into(),
        })
        .collect()
}

#[test]
fn a_full_batch_is_cut_at_once_and_a_partial_one_by_the_timer() {
    let mut e = engine(2);
    assert_eq!(render(&e.step(at(100))), Vec::<String>::new());
    assert_eq!(
        render(&e.step(normal(1, 10))),
        vec!["timer 150ms"],
        "timeout 50 ms"
    );
    assert_eq!(
        render(&e.step(normal(2, 10))),
        vec!["write block 2", "timer off"],
        "the second fills the batch"
    );
    assert_eq!(render(&e.step(normal(3, 10))), vec!["timer 150ms"]);
    assert!(e.step(at(149)).is_empty(), "not yet");
    assert_eq!(render(&e.step(at(150))), vec!["write block 1", "timer off"]);
}

#[test]
fn a_config_envelope_cuts_the_pending_batch_and_waits_to_be_written() {
    let mut e = engine(10);
    e.step(normal(1, 10));
    assert_eq!(
        render(&e.step(config(2, 0))),
        vec!["write block 1", "write config 1", "timer off"]
    );
    assert!(e.awaiting_config());
    let state = e.state.clone();
    assert!(e.step(Input::ConfigWritten(state)).is_empty());
    assert!(!e.awaiting_config());
}

#[test]
fn refusals_reach_the_waiters() {
    let mut e = engine(10);
    let stale = render(&e.step(config(1, 7)));
    assert_eq!(
        stale,
        vec!["reject: config update validated at sequence 7 but the channel is at 0"]
    );
    let big = render(&e.step(normal(2, 8192)));
    assert_eq!(big.len(), 1);
    assert!(big[0].starts_with("reject: "), "{big:?}");
    assert!(!e.awaiting_config());
}

#[test]
fn a_drain_cuts_what_is_pending() {
    let mut e = engine(10);
    e.step(normal(1, 10));
    e.step(normal(2, 10));
    assert_eq!(render(&e.drain()), vec!["write block 2"]);
    assert!(e.drain().is_empty());
}
