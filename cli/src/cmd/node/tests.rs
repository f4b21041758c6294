use super::*;

#[test]
fn requests_round_trip_and_bad_ones_say_why() {
    for req in [
        Request::Node {
            action: Action::Stop,
            name: "orderer1".into(),
        },
        Request::Node {
            action: Action::Kill,
            name: "peer0.BankA".into(),
        },
        Request::Node {
            action: Action::Start,
            name: "orderer0".into(),
        },
        Request::Node {
            action: Action::Restart,
            name: "orderer2".into(),
        },
        Request::Status,
    ] {
        assert_eq!(Request::parse(&req.to_line()), Ok(req));
    }
    for (line, why) in [
        ("", "empty request"),
        ("stop\n", "usage: stop NAME"),
        ("kill a b\n", "usage: kill NAME"),
        ("status orderer0", "status takes no node name"),
        (
            "reboot orderer0",
            "unknown request \"reboot\" (requests: stop|kill|start|restart NAME, status)",
        ),
    ] {
        assert_eq!(Request::parse(line), Err(why.to_string()), "{line:?}");
    }
}

#[test]
fn replies_stay_one_line() {
    let r = Reply::Error("starting orderer1: it exited\n  last lines:\nbind: in use\n".into());
    let line = r.to_line();
    assert_eq!(
        line,
        "error starting orderer1: it exited; last lines:; bind: in use\n"
    );
    assert_eq!(
        Reply::parse(&line),
        Ok(Reply::Error(
            "starting orderer1: it exited; last lines:; bind: in use".into()
        ))
    );
    assert_eq!(
        Reply::parse("ok stopped orderer1\n"),
        Ok(Reply::Ok("stopped orderer1".into()))
    );
    assert!(Reply::parse("maybe\n").is_err());
}

#[test]
fn backoff_doubles_then_gives_up_on_fast_crashes() {
    let policy = RestartPolicy::default();
    let mut h = CrashHistory::default();
    let fast = Duration::from_secs(1);
    let delays: Vec<CrashDecision> = (0..6).map(|_| h.on_crash(&policy, fast)).collect();
    let after = |s: u64, n: u32| CrashDecision::RestartAfter {
        delay: Duration::from_secs(s),
        in_a_row: n,
    };
    assert_eq!(
        delays,
        vec![
            after(1, 1),
            after(2, 2),
            after(4, 3),
            after(8, 4),
            after(16, 5),
            CrashDecision::GiveUp { in_a_row: 6 },
        ]
    );
}

#[test]
fn a_healthy_run_or_a_manual_start_forgets_earlier_crashes() {
    let policy = RestartPolicy::default();
    let mut h = CrashHistory::default();
    let fast = Duration::from_secs(1);
    for _ in 0..4 {
        h.on_crash(&policy, fast);
    }
    let healthy = Duration::from_millis(policy.healthy_after_ms);
    assert_eq!(
        h.on_crash(&policy, healthy),
        CrashDecision::RestartAfter {
            delay: Duration::from_secs(1),
            in_a_row: 1
        }
    );
    h.on_crash(&policy, fast);
    h.reset();
    assert_eq!(
        h.on_crash(&policy, fast),
        CrashDecision::RestartAfter {
            delay: Duration::from_secs(1),
            in_a_row: 1
        }
    );
}

#[test]
fn backoff_is_capped() {
    let policy = RestartPolicy {
        crashes_in_a_row_max: 100,
        ..RestartPolicy::default()
    };
    let mut h = CrashHistory::default();
    let mut last = None;
    for _ in 0..50 {
        last = Some(h.on_crash(&policy, Duration::ZERO));
    }
    assert_eq!(
        last,
        Some(CrashDecision::RestartAfter {
            delay: Duration::from_millis(policy.backoff_max_ms),
            in_a_row: 50
        })
    );
}
