//! A bank application on Ordo: what a team writes in its first hour with `ordo_sdk`.
//!
//! Against a network from `ordo up` (which defines the built-in `bank` chaincode):
//!
//! ```text
//! ordo up --dir net
//! cargo run -p ordo-sdk --example bank_client -- net/network.json
//! ```
//!
//! It connects to every org's peer, then:
//!
//! 1. starts listening to the `bank` events from the next block, with a checkpoint file;
//! 2. opens accounts — `alice` with her identity as *transient data*, which the chaincode
//!    hashes and the ledger never records;
//! 3. transfers, reads balances, and handles an overdraft: the chaincode's 400 arrives as
//!    a typed error, not as text to parse;
//! 4. runs many concurrent transfers over a few accounts through all the gateways, with
//!    the SDK's retry policy (jittered backoff after MVCC conflicts), and reports how many
//!    attempts each needed;
//! 5. checks that the money is conserved;
//! 6. reads the events, stops half way (closing the stream), resumes from the checkpoint
//!    file, and checks that it saw each event exactly once: one per account opened and
//!    one per VALID transfer.
//!
//! Options: `--transfers N` (200), `--accounts N` (20), `--checkpoint FILE`
//! (`bank_client-<run>.checkpoint` beside the network file), `--json` (one summary line).
//! It exits with an error when a check fails.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use ordo_sdk::gateway::{
    ChaincodeEvents, Checkpointer, Contract, Gateway, GatewayError, RetryPolicy, StartAt, Submitted,
};
use ordo_sdk::network::Network;

type AppResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Each account of the concurrent phase starts with this much.
const INITIAL: u64 = 1_000;

/// How long to wait for events that should already be committed.
const EVENT_WAIT: Duration = Duration::from_secs(30);

struct Options {
    network: PathBuf,
    transfers: usize,
    accounts: usize,
    checkpoint: Option<PathBuf>,
    json: bool,
}

fn options() -> AppResult<Options> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        network: PathBuf::new(),
        transfers: 200,
        accounts: 20,
        checkpoint: None,
        json: false,
    };
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--transfers" => o.transfers = value("--transfers")?.parse()?,
            "--accounts" => o.accounts = value("--accounts")?.parse()?,
            "--checkpoint" => o.checkpoint = Some(value("--checkpoint")?.into()),
            "--json" => o.json = true,
            "-h" | "--help" => {
                return Err(
                    "usage: bank_client NETWORK_JSON [--transfers N] [--accounts N] \
                            [--checkpoint FILE] [--json]"
                        .into(),
                )
            }
            path => o.network = path.into(),
        }
    }
    if o.network.as_os_str().is_empty() {
        o.network = std::env::var("ORDO_NETWORK")
            .unwrap_or_else(|_| ".ordo/network.json".into())
            .into();
    }
    if o.accounts < 2 {
        return Err("--accounts must be at least 2".into());
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> AppResult<()> {
    let opts = options()?;
    let network = Network::load(&opts.network)?;
    let channel = network.channel(None)?.name.clone();
    let mut orgs: Vec<String> = network
        .nodes_with_role("peer")
        .map(|p| p.org.clone())
        .collect();
    orgs.sort();
    orgs.dedup();
    // A contract per org's gateway; transactions are spread over them.
    let mut banks: Vec<Contract> = Vec::new();
    for org in &orgs {
        let gateway = Gateway::for_org(&network, org, "client").await?;
        banks.push(gateway.contract(&channel, "bank"));
    }
    let bank = banks[0].clone();
    // Names unique to this run, so the example can run again on the same network.
    let run = format!("r{}", ordo_proto::now_ms() % 1_000_000_000);
    let say = |line: String| {
        if !opts.json {
            println!("{line}");
        }
    };

    // 1. Listen from the next block, remembering progress in a checkpoint file.
    let checkpoint_file = opts.checkpoint.clone().unwrap_or_else(|| {
        opts.network
            .with_file_name(format!("bank_client-{run}.checkpoint"))
    });
    let checkpointer = Checkpointer::file(&checkpoint_file)?;
    let first_listener = bank
        .events(checkpointer.start_at(StartAt::NextBlock))
        .await?;

    // 2. Accounts. Alice's identity travels as transient data: the chaincode records only
    // its hash.
    let alice = format!("{run}-alice");
    let bob = format!("{run}-bob");
    let owner = format!("Alice Example, passport {run}");
    let opened = bank
        .call("open")
        .args([alice.as_str(), "100"])
        .transient("owner", &owner)
        .submit()
        .await?;
    say(format!(
        "opened {alice} in block {} (tx {})",
        opened.block, opened.tx_id
    ));
    bank.submit("open", [bob.as_str(), "0"]).await?;
    let recorded = bank.evaluate("owner", [alice.as_str()]).await?;
    let expected_owner = hex(&ordo_proto::hash::sha256(owner.as_bytes()));
    check(
        recorded == expected_owner.as_bytes(),
        "the owner is recorded as its hash",
    )?;

    // 3. A transfer, balances, and an overdraft refused with the chaincode's own status.
    let moved = bank
        .submit("transfer", [alice.as_str(), bob.as_str(), "30"])
        .await?;
    say(format!(
        "moved 30 in block {}: alice has {}",
        moved.block,
        text(&moved.result)
    ));
    let bob_balance = bank.evaluate("balance", [bob.as_str()]).await?;
    check(bob_balance == "30", "bob holds 30")?;
    let overdraft = match bank
        .submit("transfer", [bob.as_str(), alice.as_str(), "1000"])
        .await
    {
        Err(GatewayError::Chaincode {
            status, message, ..
        }) => {
            say(format!("overdraft refused: {status} {message}"));
            status
        }
        Err(other) => {
            return Err(format!("an overdraft must be the chaincode's refusal: {other}").into())
        }
        Ok(done) => return Err(format!("an overdraft committed: {}", done.tx_id).into()),
    };
    check(overdraft == 400, "an overdraft is a 400")?;

    // 4. Concurrent transfers over a few accounts: conflicts, retried with jitter.
    let accounts: Vec<String> = (0..opts.accounts)
        .map(|i| format!("{run}-acct{i}"))
        .collect();
    let mut opening = tokio::task::JoinSet::new();
    for (i, name) in accounts.iter().enumerate() {
        let contract = banks[i % banks.len()].clone();
        let name = name.clone();
        opening.spawn(async move {
            contract
                .submit_with_retry("open", [name.as_str(), &INITIAL.to_string()])
                .await
        });
    }
    while let Some(done) = opening.join_next().await {
        done??;
    }
    // Every transfer reads and writes two of a few accounts, so most attempts lose an
    // MVCC race at first. The default policy (10 attempts, jittered waits growing from
    // 100 ms to 5 s) spreads the retries thinly enough; spelled out here to show the knobs.
    let policy = RetryPolicy {
        max_attempts: 10,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
        multiplier: 2.0,
        jitter: true,
    };
    let mut transfers = tokio::task::JoinSet::new();
    for i in 0..opts.transfers {
        let contract = banks[i % banks.len()].with_retry_policy(policy);
        let from = accounts[i % accounts.len()].clone();
        let to = accounts[(i * 7 + 3) % accounts.len()].clone();
        let to = if to == from {
            accounts[(i + 1) % accounts.len()].clone()
        } else {
            to
        };
        let amount = (1 + i % 10).to_string();
        transfers.spawn(async move {
            contract
                .submit_with_retry("transfer", [from.as_str(), &to, &amount])
                .await
        });
    }
    let mut valid: Vec<Submitted> = Vec::new();
    let mut attempts: BTreeMap<u32, usize> = BTreeMap::new();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(done) = transfers.join_next().await {
        match done? {
            Ok(s) => {
                *attempts.entry(s.attempts).or_default() += 1;
                valid.push(s);
            }
            Err(e) => {
                *attempts.entry(e.attempts()).or_default() += 1;
                let kind = match e.validation_code() {
                    Some(code) => code.as_str_name().to_string(),
                    None => e.root().to_string(),
                };
                *failed.entry(kind).or_default() += 1;
            }
        }
    }
    say(format!(
        "{} of {} transfers VALID; attempts per transfer: {attempts:?}; failures: {failed:?}",
        valid.len(),
        opts.transfers
    ));

    // 5. Money is conserved.
    let mut total = 0u64;
    for name in &accounts {
        total += text(&bank.evaluate("balance", [name.as_str()]).await?).parse::<u64>()?;
    }
    let conserved = total == INITIAL * accounts.len() as u64;
    check(conserved, "the money is conserved")?;

    // 6. Events: half now, then stop; the rest after resuming from the checkpoint file.
    let expected_opens = 2 + accounts.len();
    let expected_transfers = 1 + valid.len();
    let expected = expected_opens + expected_transfers;
    let mut seen = Seen::default();
    let mut checkpointer = checkpointer;
    read_events(
        first_listener,
        &run,
        expected / 2,
        &mut seen,
        &mut checkpointer,
    )
    .await?;
    let first_part = seen.total();
    let resumed = Checkpointer::file(&checkpoint_file)?;
    let mut checkpointer = resumed;
    let second_listener = bank
        .events(checkpointer.start_at(StartAt::NextBlock))
        .await?;
    read_events(
        second_listener,
        &run,
        expected - first_part,
        &mut seen,
        &mut checkpointer,
    )
    .await?;
    let mut transfer_ids: HashSet<String> = valid.iter().map(|s| s.tx_id.clone()).collect();
    transfer_ids.insert(moved.tx_id.clone());
    check(seen.duplicates == 0, "no event was seen twice")?;
    check(seen.opens == expected_opens, "one open event per account")?;
    check(
        seen.transfers == transfer_ids,
        "one transfer event per VALID transfer",
    )?;
    say(format!(
        "events: {first_part} before stopping, {} after resuming from {}",
        seen.total() - first_part,
        checkpoint_file.display()
    ));

    let summary = serde_json::json!({
        "run": run,
        "orgs": orgs,
        "alice_open_block": opened.block,
        "owner_hash": expected_owner,
        "overdraft_status": overdraft,
        "transfers": opts.transfers,
        "valid": valid.len(),
        "attempts": attempts.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "failed": failed,
        "conserved": conserved,
        "events_before_stop": first_part,
        "events_after_resume": seen.total() - first_part,
        "transfer_events": seen.transfers.len(),
        "open_events": seen.opens,
    });
    if opts.json {
        println!("{summary}");
    }
    Ok(())
}

/// Events of this run, as read so far.
#[derive(Default)]
struct Seen {
    opens: usize,
    transfers: HashSet<String>,
    duplicates: usize,
    tx_ids: HashSet<String>,
}

impl Seen {
    fn total(&self) -> usize {
        self.opens + self.transfers.len()
    }
}

/// Handles this run's events until `wanted` more were seen, advancing the checkpoint
/// after each; then closes the stream.
async fn read_events(
    mut events: ChaincodeEvents,
    run: &str,
    wanted: usize,
    seen: &mut Seen,
    checkpointer: &mut Checkpointer,
) -> AppResult<()> {
    let goal = seen.total() + wanted;
    while seen.total() < goal {
        let event = match tokio::time::timeout(EVENT_WAIT, events.next()).await {
            Ok(Some(event)) => event?,
            Ok(None) => return Err("the event stream ended".into()),
            Err(_) => return Err(format!("no event within {EVENT_WAIT:?}").into()),
        };
        let payload: serde_json::Value = serde_json::from_slice(&event.payload)?;
        let ours = ["account", "from"]
            .iter()
            .filter_map(|k| payload[k].as_str())
            .any(|a| a.starts_with(run));
        if ours {
            if !seen.tx_ids.insert(event.tx_id.clone()) {
                seen.duplicates += 1;
            } else if event.name == "open" {
                seen.opens += 1;
            } else if event.name == "transfer" {
                seen.transfers.insert(event.tx_id.clone());
            }
        }
        checkpointer.advance(&event)?;
    }
    events.close();
    Ok(())
}

fn check(ok: bool, what: &str) -> AppResult<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
