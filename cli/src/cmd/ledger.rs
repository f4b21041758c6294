//! `ordo ledger verify`: check a stopped node's channel ledgers on disk — the chain
//! (every block readable, hash-linked, its Merkle data hash, the orderers' signatures) and,
//! on a peer, everything derived from it (commit hash, tx index with its validation
//! codes, world state, key history) against a replay of its own blocks. See
//! [`ordo_peer::replay_check`] for what is compared.
//!
//! The node must be stopped (RocksDB allows one process per ledger; the error says so).
//! Opening a ledger of an older format migrates it, as the node itself would. The replay
//! writes a scratch copy of the ledger under `--scratch-dir` (the system's temporary
//! directory by default), deleted when the check ends.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use ordo_ledger::BlockStore;
use ordo_peer::replay_check::{check_ledger, ReplayReport};

use crate::progress::Progress;

/// `ordo ledger ...`
#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Check a stopped node's channel ledgers on disk: blocks, hash chain, orderer
    /// signatures, and on a peer the commit hash, tx index, state and history against a
    /// replay of its blocks. Exits non-zero naming the first fault of each bad ledger.
    Verify(VerifyArgs),
}

/// `ordo ledger verify`
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The stopped node's data directory (`data_dir` in its config): every channel under
    /// `channels/` is checked.
    #[arg(long, required_unless_present = "ledger", conflicts_with = "ledger")]
    pub data_dir: Option<PathBuf>,
    /// Check only this channel of `--data-dir`.
    #[arg(long, requires = "data_dir")]
    pub channel: Option<String>,
    /// One channel's ledger directory (`<data_dir>/channels/<channel>`), instead of
    /// `--data-dir`.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Check the orderers' certificates at this time (seconds since the Unix epoch)
    /// instead of now: for a chain whose orderer certificates have expired since.
    #[arg(long)]
    pub at: Option<u64>,
    /// Where the replay's scratch ledger goes (it can be as large as the ledger; default:
    /// the system's temporary directory). Deleted when the check ends.
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
    /// Print the result as JSON (progress lines still go to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Runs a ledger command.
pub fn run(cmd: LedgerCommand) -> anyhow::Result<()> {
    match cmd {
        LedgerCommand::Verify(a) => verify(a),
    }
}

/// One ledger's outcome.
struct Outcome {
    channel: String,
    dir: PathBuf,
    seconds: f64,
    result: anyhow::Result<ReplayReport>,
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let ledgers = ledgers_to_check(&a)?;
    let now_secs = a.at.unwrap_or_else(|| ordo_proto::now_ms() / 1000);
    let scratch_root = a.scratch_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut outcomes = Vec::new();
    for dir in ledgers {
        let channel = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let started = Instant::now();
        let result = verify_one(&dir, &channel, &scratch_root, now_secs);
        let outcome = Outcome {
            channel,
            dir,
            seconds: started.elapsed().as_secs_f64(),
            result,
        };
        if !a.json {
            print_outcome(&outcome);
        }
        outcomes.push(outcome);
    }
    if a.json {
        let channels: Vec<_> = outcomes.iter().map(outcome_json).collect();
        let out = serde_json::json!({ "at": now_secs, "channels": channels });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if failed > 0 {
        bail!(
            "{failed} of {} ledgers failed the check (remedy: {})",
            outcomes.len(),
            ordo_ledger::fault::REMEDY
        );
    }
    Ok(())
}

/// The ledger directories the arguments name, sorted.
fn ledgers_to_check(a: &VerifyArgs) -> anyhow::Result<Vec<PathBuf>> {
    if let Some(dir) = &a.ledger {
        return Ok(vec![dir.clone()]);
    }
    let Some(data_dir) = &a.data_dir else {
        bail!("give --data-dir or --ledger");
    };
    let channels = data_dir.join("channels");
    if let Some(c) = &a.channel {
        return Ok(vec![channels.join(c)]);
    }
    let mut found = Vec::new();
    let entries = std::fs::read_dir(&channels)
        .with_context(|| format!("listing {} (is it a node's data_dir?)", channels.display()))?;
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        // Interrupted joins and removals: the node deletes them when it starts.
        let leftover = name
            .as_deref()
            .is_some_and(|n| n.ends_with(".joining") || n.ends_with(".removing"));
        if path.is_dir() && !leftover {
            found.push(path);
        }
    }
    found.sort();
    if found.is_empty() {
        bail!("{} holds no channel ledger", channels.display());
    }
    Ok(found)
}

fn verify_one(
    dir: &Path,
    channel: &str,
    scratch_root: &Path,
    now_secs: u64,
) -> anyhow::Result<ReplayReport> {
    // Opening a directory without a ledger would create an empty one.
    if !dir.join("CURRENT").is_file() {
        bail!("{} holds no ledger", dir.display());
    }
    let ledger = BlockStore::open(dir).map_err(|e| {
        let hint = if e.to_string().contains("lock") {
            " (is the node still running? stop it first)"
        } else {
            ""
        };
        anyhow::anyhow!("opening {}: {e}{hint}", dir.display())
    })?;
    let scratch = ScratchDir::new(scratch_root, channel)?;
    let mut progress = Progress::new("checked");
    let report = check_ledger(&ledger, scratch.path(), now_secs, |_, envelopes| {
        progress.block(envelopes)
    });
    eprintln!("{channel}: {}", progress.line());
    Ok(report?)
}

fn print_outcome(o: &Outcome) {
    match &o.result {
        Ok(r) => {
            if r.first_block == 0 {
                print!(
                    "{}: OK, {} blocks ({} envelopes): chain and orderer signatures",
                    o.channel, r.blocks, r.envelopes
                );
            } else {
                print!(
                    "{}: OK, blocks {}..{} ({} envelopes; the ledger starts at {} — joined \
                     from a snapshot or pruned — so nothing to replay from): chain and orderer \
                     signatures",
                    o.channel, r.first_block, r.blocks, r.envelopes, r.first_block
                );
            }
            if let Some(h) = r.commit_hash {
                print!(
                    "; replayed: commit hash {}, tx index, state and history match",
                    hex::encode(h)
                );
            }
            println!(" ({:.1} s)", o.seconds);
        }
        Err(e) => println!("{}: FAULT in {}: {e:#}", o.channel, o.dir.display()),
    }
}

fn outcome_json(o: &Outcome) -> serde_json::Value {
    let mut v = serde_json::json!({
        "channel": o.channel,
        "dir": o.dir.display().to_string(),
        "ok": o.result.is_ok(),
        "seconds": o.seconds,
    });
    match &o.result {
        Ok(r) => {
            v["first_block"] = r.first_block.into();
            v["blocks"] = r.blocks.into();
            v["envelopes"] = r.envelopes.into();
            v["replayed"] = r.replayed.into();
            v["commit_hash"] = r.commit_hash.map(hex::encode).into();
        }
        Err(e) => v["error"] = format!("{e:#}").into(),
    }
    v
}

/// The replay's scratch ledger: a fresh directory, deleted when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(root: &Path, channel: &str) -> anyhow::Result<Self> {
        let dir = root.join(format!(
            "ordo-ledger-verify-{}-{channel}",
            std::process::id()
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing an old {}", dir.display()))?;
        }
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.0.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.0) {
                tracing::warn!(dir = %self.0.display(), "could not delete the scratch ledger: {e}");
            }
        }
    }
}
