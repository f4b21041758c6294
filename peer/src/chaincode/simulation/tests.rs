use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use proptest::prelude::*;

use ordo_proto::pb::peer::{KvRead, KvWrite, RangeRead, Version};
use ordo_sdk::chaincode::builtin::bank::{account_key, Bank};
use ordo_sdk::chaincode::builtin::kv::Kv;
use ordo_sdk::chaincode::{Chaincode, Context, Response, TransientMap};

use super::*;

type State = BTreeMap<(String, String), (Version, Bytes)>;

fn v(block: u64, tx: u32) -> Version {
    Version { block, tx }
}

fn args(a: &[&str]) -> Vec<Bytes> {
    a.iter().map(|s| Bytes::from(s.to_string())).collect()
}

/// Applies a successful outcome's writes as if its transaction committed at `version`.
fn commit(state: &mut State, ns: &str, out: &Outcome, version: Version) {
    assert!(out.is_ok(), "{:?}", out.response);
    for w in &out.rwset.writes {
        let k = (ns.to_string(), w.key.clone());
        if w.is_delete {
            state.remove(&k);
        } else {
            state.insert(k, (version, w.value.clone()));
        }
    }
}

fn run(cc: &dyn Chaincode, state: &State, ns: &str, f: &str, a: &[&str]) -> Outcome {
    simulate(
        cc,
        state,
        ns,
        "tx",
        f,
        &args(a),
        &TransientMap::new(),
        Limits::default(),
    )
}

/// A chaincode written as a closure, for exercising the context directly.
struct Script<F>(F);

impl<F> Chaincode for Script<F>
where
    F: Fn(&mut dyn Context) -> Response + Send + Sync,
{
    fn invoke(&self, ctx: &mut dyn Context, _f: &str, _a: &[Bytes]) -> Response {
        (self.0)(ctx)
    }
}

#[test]
fn reads_record_versions_once_and_see_the_invocations_own_writes() {
    let mut state = State::new();
    state.insert(("kv".into(), "a".into()), (v(1, 0), Bytes::from("x")));
    let cc = Script(|ctx: &mut dyn Context| {
        assert_eq!(ctx.get("a").expect("get"), Some(Bytes::from("x")));
        assert_eq!(ctx.get("missing").expect("get"), None);
        ctx.put("b", Bytes::from("y")).expect("put");
        assert_eq!(ctx.get("b").expect("own write"), Some(Bytes::from("y")));
        ctx.delete("a").expect("delete");
        assert_eq!(ctx.get("a").expect("own delete"), None);
        ctx.set_event("done", Bytes::from("1"));
        Response::ok("fine")
    });
    let out = run(&cc, &state, "kv", "", &[]);
    assert!(out.is_ok());
    assert_eq!(
        out.rwset.reads,
        vec![
            KvRead {
                key: "a".into(),
                version: Some(v(1, 0))
            },
            KvRead {
                key: "missing".into(),
                version: None
            },
        ],
        "each committed key once, with the version seen; own writes are not reads"
    );
    assert_eq!(
        out.rwset.writes,
        vec![
            KvWrite {
                key: "a".into(),
                value: Bytes::new(),
                is_delete: true
            },
            KvWrite {
                key: "b".into(),
                value: Bytes::from("y"),
                is_delete: false
            },
        ]
    );
    assert_eq!(out.event.map(|e| e.name), Some("done".to_string()));
}

#[test]
fn a_failed_invocation_keeps_no_writes_and_no_event() {
    let cc = Script(|ctx: &mut dyn Context| {
        ctx.put("k", Bytes::from("v")).expect("put");
        ctx.set_event("e", Bytes::new());
        Response::bad_request("changed my mind")
    });
    let out = run(&cc, &State::new(), "kv", "", &[]);
    assert_eq!(out.response.status, 400);
    assert!(out.rwset.writes.is_empty() && out.rwset.reads.is_empty());
    assert_eq!(out.event, None);
}

#[test]
fn limits_end_the_invocation_even_when_the_chaincode_ignores_the_error() {
    let greedy = Script(|ctx: &mut dyn Context| {
        for i in 0..50 {
            let _ = ctx.put(&format!("k{i}"), Bytes::from(vec![0u8; 100]));
        }
        Response::ok("")
    });
    let few_writes = Limits {
        max_writes: 10,
        ..Limits::default()
    };
    let out = simulate(
        &greedy,
        &State::new(),
        "kv",
        "tx",
        "",
        &[],
        &TransientMap::new(),
        few_writes,
    );
    assert_eq!(out.response.status, 413, "{:?}", out.response);
    assert!(out.response.message.contains("keys written"));
    assert!(out.rwset.writes.is_empty());

    let few_bytes = Limits {
        max_write_bytes: 1000,
        ..Limits::default()
    };
    let out = simulate(
        &greedy,
        &State::new(),
        "kv",
        "tx",
        "",
        &[],
        &TransientMap::new(),
        few_bytes,
    );
    assert_eq!(out.response.status, 413);
    assert!(out.response.message.contains("bytes written"));

    let no_time = Limits {
        time: std::time::Duration::ZERO,
        ..Limits::default()
    };
    let out = simulate(
        &Kv,
        &State::new(),
        "kv",
        "tx",
        "get",
        &args(&["a"]),
        &TransientMap::new(),
        no_time,
    );
    assert_eq!(out.response.status, 413);
    assert!(out.response.message.contains("longer than"));
}

#[test]
fn bad_keys_are_the_callers_mistake() {
    let long = "k".repeat(2000);
    let out = run(&Kv, &State::new(), "kv", "put", &[&long, "v"]);
    assert_eq!(out.response.status, 400, "{:?}", out.response);
    let out = run(&Kv, &State::new(), "kv", "get", &[""]);
    assert_eq!(out.response.status, 400);
}

#[test]
fn kv_functions_and_range_over_committed_and_own_writes() {
    let mut state = State::new();
    for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
        let out = run(&Kv, &state, "kv", "put", &[k, &format!("{k}{k}")]);
        commit(&mut state, "kv", &out, v(1, i as u32));
    }
    assert_eq!(run(&Kv, &state, "kv", "get", &["b"]).response.payload, "bb");
    assert_eq!(run(&Kv, &state, "kv", "get", &["zz"]).response.status, 404);
    assert_eq!(run(&Kv, &state, "kv", "del", &["zz"]).response.status, 404);
    assert_eq!(run(&Kv, &state, "kv", "nope", &[]).response.status, 404);
    assert_eq!(run(&Kv, &state, "kv", "get", &[]).response.status, 400);
    let out = run(&Kv, &state, "kv", "range", &["b", "d"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.response.payload).expect("json");
    assert_eq!(
        listed,
        serde_json::json!([{"key": "b", "value": "bb"}, {"key": "c", "value": "cc"}])
    );
    assert!(
        out.rwset.reads.is_empty(),
        "no point reads: {:?}",
        out.rwset.reads
    );
    assert_eq!(
        out.rwset.range_reads,
        vec![RangeRead {
            start: "b".into(),
            end: "d".into(),
            reads: vec![
                KvRead {
                    key: "b".into(),
                    version: Some(v(1, 1))
                },
                KvRead {
                    key: "c".into(),
                    version: Some(v(1, 2))
                },
            ],
        }],
        "the range is recorded whole, with the versions seen"
    );

    let cc = Script(|ctx: &mut dyn Context| {
        ctx.delete("b").expect("delete");
        ctx.put("bb", Bytes::from("new")).expect("put");
        let keys: Vec<String> = ctx
            .range("b", "")
            .expect("range")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        Response::ok(keys.join(","))
    });
    let out = run(&cc, &state, "kv", "", &[]);
    assert_eq!(out.response.payload, "bb,c,d");
    let recorded: Vec<&str> = out.rwset.range_reads[0]
        .reads
        .iter()
        .map(|r| r.key.as_str())
        .collect();
    assert_eq!(
        recorded,
        ["b", "c", "d"],
        "the committed keys, not the invocation's own view"
    );
    let tight = Limits {
        max_range: 2,
        ..Limits::default()
    };
    let out = simulate(
        &Kv,
        &state,
        "kv",
        "tx",
        "range",
        &args(&["a", ""]),
        &TransientMap::new(),
        tight,
    );
    assert_eq!(out.response.status, 413);
}

#[test]
fn bank_opens_moves_and_refuses_cleanly() {
    let mut state = State::new();
    let mut n = 0;
    let mut step = |state: &mut State, f: &str, a: &[&str]| -> Outcome {
        let out = run(&Bank, state, "bank", f, a);
        if out.is_ok() {
            n += 1;
            commit(state, "bank", &out, v(n, 0));
        }
        out
    };
    assert_eq!(
        step(&mut state, "open", &["alice", "100"]).response.payload,
        "100"
    );
    assert!(step(&mut state, "open", &["bob", "5"]).is_ok());
    let again = step(&mut state, "open", &["alice", "1"]);
    assert_eq!(again.response.status, 400);
    assert!(again.response.message.contains("already exists"));
    let t = step(&mut state, "transfer", &["alice", "bob", "30"]);
    assert!(t.is_ok());
    assert_eq!(t.event.as_ref().map(|e| e.name.as_str()), Some("transfer"));
    assert_eq!(t.rwset.reads.len(), 2);
    assert_eq!(t.rwset.writes.len(), 2);
    let poor = step(&mut state, "transfer", &["bob", "alice", "1000"]);
    assert_eq!(poor.response.status, 400);
    assert!(
        poor.response.message.contains("insufficient funds"),
        "{}",
        poor.response.message
    );
    assert!(poor.rwset.writes.is_empty());
    assert_eq!(
        step(&mut state, "transfer", &["alice", "carol", "1"])
            .response
            .status,
        404
    );
    assert_eq!(
        step(&mut state, "transfer", &["alice", "alice", "1"])
            .response
            .status,
        400
    );
    assert_eq!(
        step(&mut state, "transfer", &["alice", "bob", "0"])
            .response
            .status,
        400
    );
    assert_eq!(
        step(&mut state, "transfer", &["alice", "bob", "-3"])
            .response
            .status,
        400
    );
    assert_eq!(
        step(&mut state, "deposit", &["bob", "7"]).response.payload,
        "42"
    );
    assert_eq!(
        step(&mut state, "balance", &["alice"]).response.payload,
        "70"
    );
    assert_eq!(
        step(&mut state, "balance", &["nobody"]).response.status,
        404
    );
    assert_eq!(
        step(&mut state, "open", &["bad name", "1"]).response.status,
        400
    );
    assert_eq!(
        step(&mut state, "withdraw", &["alice", "1"])
            .response
            .status,
        404
    );
    assert_eq!(
        state
            .get(&("bank".to_string(), account_key("bob")))
            .map(|(_, b)| b.clone()),
        Some(Bytes::from("42"))
    );
}

#[derive(Debug, Clone)]
enum Op {
    Transfer(usize, usize, u64),
    Deposit(usize, u64),
}

fn op(accounts: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..accounts, 0..accounts, 0u64..150).prop_map(|(f, t, a)| Op::Transfer(f, t, a)),
        1 => (0..accounts, 0u64..50).prop_map(|(a, n)| Op::Deposit(a, n)),
    ]
}

proptest! {
    /// Any sequence of bank operations, each simulated and (when it succeeds) committed:
    /// balances follow a reference model exactly, and money is neither made nor lost
    /// except by deposits.
    #[test]
    fn bank_balances_follow_the_reference_model(
        opening in prop::collection::vec(0u64..200, 2..6),
        ops in prop::collection::vec(op(6), 0..60),
    ) {
        let mut state = State::new();
        let mut model: HashMap<usize, u64> = HashMap::new();
        let mut block = 0;
        for (i, amount) in opening.iter().enumerate() {
            block += 1;
            let out = run(&Bank, &state, "bank", "open", &[&format!("acct{i}"), &amount.to_string()]);
            commit(&mut state, "bank", &out, v(block, 0));
            model.insert(i, *amount);
        }
        let mut deposited = 0u64;
        for o in ops {
            block += 1;
            let (out, expect_ok) = match o {
                Op::Transfer(f, t, a) => {
                    let known = model.contains_key(&f) && model.contains_key(&t);
                    let ok = known && f != t && a > 0 && model[&f] >= a;
                    let out = run(&Bank, &state, "bank", "transfer",
                        &[&format!("acct{f}"), &format!("acct{t}"), &a.to_string()]);
                    if ok {
                        *model.get_mut(&f).expect("known") -= a;
                        *model.get_mut(&t).expect("known") += a;
                    }
                    (out, ok)
                }
                Op::Deposit(acct, n) => {
                    let ok = model.contains_key(&acct) && n > 0;
                    let out = run(&Bank, &state, "bank", "deposit", &[&format!("acct{acct}"), &n.to_string()]);
                    if ok {
                        *model.get_mut(&acct).expect("known") += n;
                        deposited += n;
                    }
                    (out, ok)
                }
            };
            prop_assert_eq!(out.is_ok(), expect_ok, "{:?}", out.response);
            if out.is_ok() {
                commit(&mut state, "bank", &out, v(block, 0));
            } else {
                prop_assert!(out.rwset.writes.is_empty());
            }
        }
        let mut total = 0u64;
        for (i, want) in &model {
            let out = run(&Bank, &state, "bank", "balance", &[&format!("acct{i}")]);
            prop_assert_eq!(out.response.payload, Bytes::from(want.to_string()));
            total += want;
        }
        prop_assert_eq!(total, opening.iter().sum::<u64>() + deposited);
    }
}

#[test]
fn a_page_is_recorded_only_up_to_where_it_stopped() {
    let mut state = State::new();
    for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
        let out = run(&Kv, &state, "kv", "put", &[k, k]);
        commit(&mut state, "kv", &out, v(1, i as u32));
    }
    let cc = Script(|ctx: &mut dyn Context| {
        ctx.delete("b").expect("delete");
        ctx.put("bb", Bytes::from("new")).expect("put");
        let (first, next) = ctx.range_page("a", "", 2).expect("page");
        let next = next.expect("more to come");
        let (rest, last) = ctx.range_page(&next, "", 2).expect("page");
        let keys: Vec<String> = first.into_iter().chain(rest).map(|(k, _)| k).collect();
        Response::ok(format!("{}|{next}|{last:?}", keys.join(",")))
    });
    let out = run(&cc, &state, "kv", "", &[]);
    assert_eq!(out.response.payload, "a,bb,c,d|c|None");
    let recorded: Vec<(String, String, Vec<String>)> = out
        .rwset
        .range_reads
        .iter()
        .map(|r| {
            (
                r.start.clone(),
                r.end.clone(),
                r.reads.iter().map(|k| k.key.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        vec![
            // The first page stopped before "c": the committed keys below it, b (deleted
            // by this invocation) included.
            ("a".into(), "c".into(), vec!["a".into(), "b".into()]),
            // The last page ran to the end.
            ("c".into(), "".into(), vec!["c".into(), "d".into()]),
        ]
    );
    assert_eq!(
        run(&Kv, &state, "kv", "page", &["a", "", "0"])
            .response
            .status,
        400
    );
}
