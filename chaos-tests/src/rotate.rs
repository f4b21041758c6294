//! Certificate rotation during faults: what an operator does before TLS certificates
//! expire, done while the load runs and the nemesis kills and isolates orderers.
//!
//! For each orderer in turn: `ordo crypto renew --tls-only` (a new key and certificate,
//! each file written atomically), SIGHUP (the node re-reads the pair; its next handshakes
//! present the new certificate), and on raft `ordo channel consenter update`, which pins the
//! new certificate in the channel config. Until that config block commits the other
//! consenters refuse the node's new handshakes, so an orderer refuses the update unless the
//! other consenters alone are a live majority (an answer that mentions "lose quorum").
//! While the nemesis has one of them down, that refusal is the promise kept, not a failure:
//! it is recorded as an observation and the update is tried again a moment later. One node
//! at a time — the next orderer is renewed only once the previous one's certificate is
//! pinned — and then a peer's certificate and the load client's (reloaded into the client's
//! TLS transport, so every later reconnect presents it).
//!
//! Solo and kafka orderers do not dial each other, so there is nothing to pin: they get the
//! renewal and the reload, under kills, and their clients and peers must not notice.
//!
//! What must hold is what every run checks (nothing acknowledged lost, no duplicate, one
//! chain, peers agree, progress after healing, no node exits on its own — a node that died
//! of the SIGHUP would show there), plus this scenario's own property, `rotation`: every
//! step finishes (once the faults stop, the channel must accept each update), and at the
//! end the channel config pins every consenter's renewed certificate.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use ordo_proto::identity::Identity;
use ordo_proto::pb::common::ChannelConfig;
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_sdk::transport::Transport;

use crate::check::Violation;
use crate::nemesis::Nemesis;
use crate::net::{tls_files, Backend, NodeRef, CHANNEL, ORGS};
use crate::proc::{run_ordo_async, ProcError};

mod pins;
use pins::check_pins;

/// The property this scenario reports under.
const PROPERTY: &str = "rotation";
/// What a node logs when SIGHUP makes it re-read its TLS key pair.
pub const RELOADED: &str = "SIGHUP: reloading the TLS key pair";
/// What a rotated consenter logs when the channel config pins its new certificate and it
/// dials the others again with it.
pub const REDIALLED: &str = "the channel config pins a new TLS certificate for this node";
/// What an orderer's refusal of a consenter update says when the other consenters alone are
/// not a live majority.
pub const LOSE_QUORUM: &str = "lose quorum";
/// What `ordo channel consenter update` says when the config already pins the files'
/// certificate: an earlier attempt committed although the command did not see its block.
const ALREADY_PINNED: &str = "already has these certificates";
/// How often the faults are looked at while a rotation step runs.
const TICK: Duration = Duration::from_millis(50);
/// How long one `ordo channel consenter update` may take (by itself it waits up to 30 s for
/// a leader and 60 s for the config block); a slower one is abandoned and tried again.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two attempts at a refused update.
const RETRY_PAUSE: Duration = Duration::from_millis(300);
/// How long a node may take to answer (after a restart) and then to log its reload.
const RELOAD_WAIT: Duration = Duration::from_secs(10);
/// How long a rotation step waits, once its turn has come, for a fault to be in force.
const FAULT_WAIT: Duration = Duration::from_secs(3);
/// How long the final check waits for an orderer that serves the config with every
/// consenter's renewed certificate pinned.
const PIN_WAIT: Duration = Duration::from_secs(15);
/// Faults go on while the rotation does, but start no later than this past the fault
/// window: the rest of the rotation then runs on a healed network.
const FAULT_EXTENSION: Duration = Duration::from_secs(15);
/// How long after the last fault ended a rotation step may still take: by then the network
/// is healed and the channel must accept the update.
const SETTLE: Duration = Duration::from_secs(30);

/// A fault in force.
#[derive(Debug, Clone, Copy)]
enum Active {
    /// An orderer killed (started again when it ends).
    Killed(usize),
    /// An orderer cut from the others by the proxies (healed when it ends).
    Isolated,
}

/// The nemesis' schedule during the rotation: one fault at a time — an orderer killed, or
/// (raft) isolated — for 0.4–1.5 s, then 0.3–1 s of calm. Driven by [`Faults::tick`] from
/// the rotation's own task, so a fault never starts or ends between two steps that must see
/// the same state (checking that a node answers, then signalling it).
struct Faults {
    /// No fault starts after this.
    end: Instant,
    active: Option<(Active, Instant)>,
    next: Instant,
    raft: bool,
    orderers: usize,
}

fn millis(rng: &mut StdRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.gen_range(lo..hi))
}

impl Faults {
    /// Starts or ends a fault when its time has come.
    fn tick(&mut self, n: &mut Nemesis<'_>, rng: &mut StdRng) {
        let now = Instant::now();
        match self.active {
            Some((_, until)) if now >= until => {
                self.undo(n);
                self.next = now + millis(rng, 300, 1000);
            }
            Some(_) => {}
            None if now >= self.next && now < self.end && self.orderers > 0 => {
                let victim = rng.gen_range(0..self.orderers);
                let fault = if self.raft && rng.gen_bool(0.5) {
                    let rest: BTreeSet<usize> =
                        (0..self.orderers).filter(|o| *o != victim).collect();
                    n.partition(&[BTreeSet::from([victim]), rest]);
                    Active::Isolated
                } else {
                    n.kill(NodeRef::Orderer(victim));
                    Active::Killed(victim)
                };
                self.active = Some((fault, now + millis(rng, 400, 1500)));
            }
            None => {}
        }
    }

    /// Ends the fault in force, if any.
    fn undo(&mut self, n: &mut Nemesis<'_>) {
        match self.active.take() {
            Some((Active::Killed(v), _)) => n.start(NodeRef::Orderer(v)),
            Some((Active::Isolated, _)) => n.heal_links(),
            None => {}
        }
    }

    /// When the last fault ends at the latest.
    fn last_end(&self) -> Instant {
        self.end + Duration::from_millis(1500)
    }
}

/// Runs `fut` to completion while the faults go on.
async fn during<T>(
    n: &mut Nemesis<'_>,
    f: &mut Faults,
    rng: &mut StdRng,
    fut: impl Future<Output = T>,
) -> T {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            () = tokio::time::sleep(TICK) => f.tick(n, rng),
        }
    }
}

/// Waits for step `k` of `steps`' turn — the steps are spread evenly over the fault window
/// starting at `start` and lasting `time` — and then, for up to [`FAULT_WAIT`], for a fault
/// to be in force: a rotation done on a calm network would prove little (done at full
/// speed, the whole rotation takes well under a second and would finish before the first
/// fault).
async fn await_turn(
    n: &mut Nemesis<'_>,
    f: &mut Faults,
    rng: &mut StdRng,
    (start, time): (Instant, Duration),
    (k, steps): (u32, u32),
) {
    let turn = start + time * k / (steps + 1);
    while Instant::now() < turn {
        pause(n, f, rng, TICK).await;
    }
    let deadline = Instant::now() + FAULT_WAIT;
    while f.active.is_none() && Instant::now() < deadline && Instant::now() < f.end {
        pause(n, f, rng, TICK).await;
    }
}

/// Lets the faults go on for `d`.
async fn pause(n: &mut Nemesis<'_>, f: &mut Faults, rng: &mut StdRng, d: Duration) {
    during(n, f, rng, tokio::time::sleep(d)).await;
}

/// The last line of a command's output that says something, for the history.
fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// `ordo crypto renew --tls-only` for `org`'s `member`: a new key and certificate, with
/// the names of the one it replaces.
async fn renew(crypto: &Path, org: &str, member: &str) -> Result<(), ProcError> {
    let args: Vec<String> = [
        "crypto",
        "renew",
        "--crypto",
        &path_arg(crypto),
        "--org",
        org,
        "--name",
        member,
        "--tls-only",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_ordo_async(&args).await.map(|_| ())
}

/// The DER of the leaf certificate in a PEM file (empty when it cannot be read).
fn leaf_der(path: &Path) -> Vec<u8> {
    ordo_sdk::tls::read_certs(path)
        .ok()
        .and_then(|c| c.first().map(|c| c.to_vec()))
        .unwrap_or_default()
}

/// Rotates certificates while the faults go on, for at least `time`; returns what broke
/// the `rotation` property.
pub async fn inject(n: &mut Nemesis<'_>, rng: &mut StdRng, time: Duration) -> Vec<Violation> {
    let start = Instant::now();
    let window_end = start + time;
    let raft = n.net.spec.backend == Backend::Raft;
    let orderers = n.net.orderers.len();
    let mut f = Faults {
        end: window_end + FAULT_EXTENSION,
        active: None,
        next: start + millis(rng, 200, 800),
        raft,
        orderers,
    };
    let mut found = Vec::new();
    let mut tally = Tally::default();
    let crypto = n.net.crypto_dir().to_path_buf();
    let mut originals = Vec::new();
    let mut rotated_all = true;
    let window = (start, time);
    let peers = n.net.peers.len();
    // Every orderer, a peer (when there are any) and the client.
    let steps = u32::try_from(orderers + usize::from(peers > 0) + 1).unwrap_or(u32::MAX);
    let mut step = 0u32;

    for i in 0..orderers {
        step += 1;
        await_turn(n, &mut f, rng, window, (step, steps)).await;
        let org = n.net.orderers[i].org;
        let cert_file = tls_files(&crypto, org, "orderer").cert;
        originals.push(leaf_der(&cert_file));
        let name = format!("orderer{i}");
        if let Err(e) = during(n, &mut f, rng, renew(&crypto, org, "orderer")).await {
            found.push(Violation::new(
                PROPERTY,
                format!("renewing {name}'s TLS certificate: {e}"),
            ));
            rotated_all = false;
            break;
        }
        n.note_operation(format!("renew {name}'s TLS certificate (new key)"));
        reload(n, &mut f, rng, NodeRef::Orderer(i), &mut found).await;
        if raft && !update_consenter(n, &mut f, rng, i, &mut tally, &mut found).await {
            // Rotating another node while this one's new certificate is refused would
            // leave two consenters unable to make new connections: stop here.
            rotated_all = false;
            break;
        }
    }

    if rotated_all {
        if peers > 0 {
            step += 1;
            await_turn(n, &mut f, rng, window, (step, steps)).await;
            let p = rng.gen_range(0..peers);
            let org = n.net.peers[p].org;
            match during(n, &mut f, rng, renew(&crypto, org, "peer")).await {
                Ok(()) => {
                    n.note_operation(format!("renew peer{p}'s TLS certificate (new key)"));
                    reload(n, &mut f, rng, NodeRef::Peer(p), &mut found).await;
                }
                Err(e) => found.push(Violation::new(
                    PROPERTY,
                    format!("renewing peer{p}'s TLS certificate: {e}"),
                )),
            }
        }
        // The load's and the observers' client certificate: reloaded into the shared
        // transport, presented from their next connection on.
        step += 1;
        await_turn(n, &mut f, rng, window, (step, steps)).await;
        match during(n, &mut f, rng, renew(&crypto, ORGS[0], "client")).await {
            Ok(()) => match &n.net.transport {
                Transport::Tls(tls) => match tls.key_pair().map(|k| k.reload()) {
                    Some(Ok(())) => n.note_operation(format!(
                        "renew {}'s client TLS certificate (new key); the load presents it from its next connection",
                        ORGS[0]
                    )),
                    Some(Err(e)) => found.push(Violation::new(
                        PROPERTY,
                        format!("the renewed client key pair does not load: {e}"),
                    )),
                    None => found.push(Violation::new(
                        PROPERTY,
                        "the harness's client transport presents no certificate to renew",
                    )),
                },
                Transport::Plain => {}
            },
            Err(e) => found.push(Violation::new(
                PROPERTY,
                format!("renewing the client's TLS certificate: {e}"),
            )),
        }
    }

    // The faults go on for the rest of the window (not past it), then end.
    f.end = f.end.min(window_end.max(Instant::now()));
    while Instant::now() < f.end || f.active.is_some() {
        pause(n, &mut f, rng, TICK).await;
    }
    f.undo(n);

    if raft {
        n.note_fact(format!(
            "consenter updates: {} accepted, {} refused for lack of quorum, {} failed otherwise (the orderer asked was down or behind, or no outcome in time)",
            tally.accepted, tally.lost_quorum, tally.failed
        ));
        if rotated_all {
            check_pins(n, &originals, &mut found).await;
        }
    }
    for i in 0..orderers {
        let redials = n.net.orderers[i].proc.log_count(REDIALLED);
        n.note_fact(format!("orderer{i} logged {REDIALLED:?} {redials} times"));
    }
    found
}

/// Outcomes of the consenter updates, for the history.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    lost_quorum: usize,
    failed: usize,
}

/// SIGHUPs node `r` once it answers (a node signalled before it installed its handler would
/// die of the signal: the harness's doing, not the node's) and waits until its log shows the
/// reload. A node that is down, or does not answer in time, is left alone: it loads the
/// renewed pair when it starts, or within its file poll interval.
async fn reload(
    n: &mut Nemesis<'_>,
    f: &mut Faults,
    rng: &mut StdRng,
    r: NodeRef,
    found: &mut Vec<Violation>,
) {
    let name = n.net.node(r).proc.name.clone();
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let list = ordo_proto::pb::admin::admin_command::Command::List(
            ordo_proto::pb::admin::ListChannels {},
        );
        if n.net.admin(r, list).await.is_ok() {
            break;
        }
        if Instant::now() >= deadline {
            n.note_fact(format!(
                "{name} did not answer within {RELOAD_WAIT:?}: not signalled, it picks the renewed pair up itself"
            ));
            return;
        }
        pause(n, f, rng, TICK).await;
    }
    // Nothing between the answer and the signal lets a fault start or end.
    let before = n.net.node(r).proc.log_count(RELOADED);
    if !n.net.node_mut(r).proc.hangup() {
        n.note_fact(format!("{name} is down: it starts with the renewed pair"));
        return;
    }
    n.note_operation(format!("SIGHUP {name}"));
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        if n.net.node(r).proc.log_count(RELOADED) > before {
            return;
        }
        if !n.net.node_mut(r).proc.is_running() {
            n.note_fact(format!(
                "{name} went down before its reload showed: it starts with the renewed pair"
            ));
            return;
        }
        if Instant::now() >= deadline {
            found.push(Violation::new(
                PROPERTY,
                format!("{name} did not log {RELOADED:?} within {RELOAD_WAIT:?} of SIGHUP"),
            ));
            return;
        }
        pause(n, f, rng, TICK).await;
    }
}

/// Pins orderer `i`'s renewed certificate with `ordo channel consenter update`, submitted
/// to a running orderer other than `i`, again and again until the channel accepts it.
/// Returns false (with a violation) when it never does, even after the faults ended.
async fn update_consenter(
    n: &mut Nemesis<'_>,
    f: &mut Faults,
    rng: &mut StdRng,
    i: usize,
    tally: &mut Tally,
    found: &mut Vec<Violation>,
) -> bool {
    let org = n.net.orderers[i].org;
    let crypto = path_arg(n.net.crypto_dir());
    // `consenter update` submits as the first org's admin of crypto.json.
    let operator = match operator_digest(n.net.crypto_dir()) {
        Ok(d) => d,
        Err(e) => {
            found.push(Violation::new(
                PROPERTY,
                format!("the operator identity: {e}"),
            ));
            return false;
        }
    };
    let give_up = f.last_end() + SETTLE;
    let mut last = String::from("no orderer to submit to was running");
    let mut attempts = 0usize;
    while Instant::now() < give_up {
        let mut running = Vec::new();
        for o in 0..n.net.orderers.len() {
            if o != i && n.net.orderers[o].proc.is_running() {
                running.push(o);
            }
        }
        if running.is_empty() {
            pause(n, f, rng, RETRY_PAUSE).await;
            continue;
        }
        let via = running[rng.gen_range(0..running.len())];
        attempts += 1;
        let args: Vec<String> = [
            "channel",
            "consenter",
            "update",
            "--crypto",
            &crypto,
            "--orderer",
            &n.net.orderers[via].addr,
            "--channel",
            CHANNEL,
            "--id",
            &format!("orderer{i}"),
            "--org",
            org,
            "--member",
            "orderer",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        n.note_config_submit(
            operator.clone(),
            format!(
                "pin orderer{i}'s renewed TLS certificate (attempt {attempts}, via orderer{via})"
            ),
        );
        let outcome = during(
            n,
            f,
            rng,
            tokio::time::timeout(UPDATE_TIMEOUT, run_ordo_async(&args)),
        )
        .await;
        match outcome {
            Ok(Ok(_)) => {
                tally.accepted += 1;
                n.note_operation(format!(
                    "consenter update: orderer{i}'s renewed TLS certificate pinned (via orderer{via}, attempt {attempts})"
                ));
                return true;
            }
            Ok(Err(ProcError::Failed { output, .. })) if output.contains(ALREADY_PINNED) => {
                tally.accepted += 1;
                n.note_fact(format!(
                    "consenter update of orderer{i}: already pinned by an earlier attempt that did not see its config block (attempt {attempts})"
                ));
                return true;
            }
            Ok(Err(ProcError::Failed { output, .. })) if output.contains(LOSE_QUORUM) => {
                tally.lost_quorum += 1;
                last = last_line(&output);
                n.note_fact(format!(
                    "consenter update of orderer{i} refused via orderer{via} (correct while a consenter is down): {last}"
                ));
            }
            Ok(Err(e)) => {
                tally.failed += 1;
                last = match &e {
                    ProcError::Failed { output, .. } => last_line(output),
                    other => last_line(&other.to_string()),
                };
                n.note_fact(format!(
                    "consenter update of orderer{i} via orderer{via} failed: {last}"
                ));
            }
            Err(_) => {
                tally.failed += 1;
                last = format!("no outcome within {UPDATE_TIMEOUT:?}");
                n.note_fact(format!(
                    "consenter update of orderer{i} via orderer{via}: {last}; abandoned"
                ));
            }
        }
        pause(n, f, rng, RETRY_PAUSE).await;
    }
    found.push(Violation::new(
        PROPERTY,
        format!(
            "the channel never accepted orderer{i}'s renewed TLS certificate, not even after the faults ended ({attempts} attempts; last: {last})"
        ),
    ));
    false
}

/// The digest ([`crate::observe::cert_digest`]) of the identity `ordo channel consenter
/// update` signs its updates with: the admin of the first org of the crypto directory.
fn operator_digest(crypto: &Path) -> Result<String, ordo_proto::identity::IdentityError> {
    let dir = crypto.join(ORGS[0]);
    let admin = Identity::load(&dir.join("admin.key"), &dir.join("admin.cert"))?;
    Ok(crate::observe::cert_digest(admin.cert_bytes()))
}
