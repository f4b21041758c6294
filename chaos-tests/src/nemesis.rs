//! The nemesis: faults done to a running [`Net`], each recorded in the history, and
//! [`Nemesis::heal`], which undoes every one of them.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::history::{Event, History};
use crate::net::{Net, NodeRef};

/// Name of the file that fills a node's disk.
const FILLER: &str = "chaos-filler";
/// How the OS says a disk is full (ENOSPC), in a node's last error.
const DISK_FULL: &str = "No space left on device";

/// Does faults to one network and remembers what it must undo.
pub struct Nemesis<'a> {
    /// The network.
    pub net: &'a mut Net,
    history: History,
    /// Faults done so far.
    pub faults: usize,
    filled: Vec<PathBuf>,
}

impl<'a> Nemesis<'a> {
    /// A nemesis for `net`, recording into `history`.
    pub fn new(net: &'a mut Net, history: History) -> Self {
        Self {
            net,
            history,
            faults: 0,
            filled: Vec::new(),
        }
    }

    fn note(&mut self, what: String) {
        self.faults += 1;
        self.history.record(Event::Fault { what });
        reap_exits(self.net, &self.history);
    }

    /// Records that a lying orderer served `tampered` tampered blocks (each one a fault).
    pub fn note_lies(&mut self, tampered: u64) {
        self.faults += usize::try_from(tampered).unwrap_or(usize::MAX);
        self.history.record(Event::Fault {
            what: format!("the lying orderer served {tampered} tampered blocks"),
        });
    }

    /// Records an observation made during the faults (not itself a fault).
    pub fn note_fact(&mut self, what: String) {
        self.history.record(Event::Fault {
            what: format!("observed: {what}"),
        });
    }

    /// Records an operator action done while the faults go on — a certificate renewal, a
    /// key pair reload, a consenter update. Counted with the faults: each one changes who
    /// may talk to whom, as a fault does.
    pub fn note_operation(&mut self, what: String) {
        self.note(what);
    }

    /// Records that an operator is submitting a config update signed by the identity whose
    /// certificate digest is `by` (see [`Event::ConfigSubmit`]); recorded before every
    /// attempt, since one the command gave up on may still be applied.
    pub fn note_config_submit(&mut self, by: String, what: String) {
        self.history.record(Event::ConfigSubmit { by, what });
    }

    fn name(&self, r: NodeRef) -> String {
        self.net.node(r).proc.name.clone()
    }

    /// SIGKILL.
    pub fn kill(&mut self, r: NodeRef) {
        let what = format!("kill -9 {}", self.name(r));
        self.net.node_mut(r).proc.kill();
        self.note(what);
    }

    /// SIGTERM and wait (a graceful stop).
    pub fn stop(&mut self, r: NodeRef) {
        let what = format!("stop {}", self.name(r));
        let clean = self.net.node_mut(r).proc.stop();
        self.note(format!(
            "{what} (exit {})",
            if clean { "0" } else { "non-zero" }
        ));
    }

    /// Starts a stopped or killed node again.
    pub fn start(&mut self, r: NodeRef) {
        let what = format!("start {}", self.name(r));
        let started = self.net.node_mut(r).proc.start();
        self.note(match started {
            Ok(()) => what,
            Err(e) => format!("{what} failed: {e}"),
        });
    }

    /// SIGSTOP.
    pub fn pause(&mut self, r: NodeRef) {
        let what = format!("pause {}", self.name(r));
        self.net.node_mut(r).proc.pause();
        self.note(what);
    }

    /// SIGCONT.
    pub fn resume(&mut self, r: NodeRef) {
        let what = format!("resume {}", self.name(r));
        self.net.node_mut(r).proc.resume();
        self.note(what);
    }

    /// Cuts the given raft partition (no-op without proxies).
    pub fn partition(&mut self, groups: &[BTreeSet<usize>]) {
        let n = self.net.orderers.len();
        if let Some(l) = &self.net.links {
            l.partition(groups, n);
        }
        self.note(format!("partition {groups:?}"));
    }

    /// Cuts one direction between two orderers.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        if let Some(l) = &self.net.links {
            l.cut_one_way(from, to);
        }
        self.note(format!("cut orderer{from} -> orderer{to}"));
    }

    /// Holds the peers' connections to every orderer proxy (they are left with their
    /// static endpoints).
    pub fn cut_peers_from_orderers(&mut self) {
        if let Some(l) = &self.net.links {
            l.cut_external();
        }
        self.note("cut the peers from the orderers' proxies".into());
    }

    /// Adds a delay to every orderer link.
    pub fn delay(&mut self, d: Duration) {
        if let Some(l) = &self.net.links {
            l.set_delay(d);
        }
        self.note(format!("delay links by {d:?}"));
    }

    /// Restores every orderer link.
    pub fn heal_links(&mut self) {
        if let Some(l) = &self.net.links {
            l.heal();
        }
        self.note("heal links".into());
    }

    /// Resets every connection between orderers.
    pub fn reset_links(&mut self) {
        if let Some(l) = &self.net.links {
            l.reset_connections();
        }
        self.note("reset links".into());
    }

    /// Takes every Kafka broker down.
    pub fn brokers_down(&mut self) {
        if let Some(k) = &self.net.kafka {
            for id in 1..=3 {
                let _ = k.broker_down(id);
            }
        }
        self.note("all kafka brokers down".into());
    }

    /// Brings every Kafka broker back.
    pub fn brokers_up(&mut self) {
        if let Some(k) = &self.net.kafka {
            for id in 1..=3 {
                let _ = k.broker_up(id);
            }
        }
        self.note("all kafka brokers up".into());
    }

    /// Moves the channel partition's leader to `broker` (1..=3).
    pub fn move_partition_leader(&mut self, broker: i32) {
        if let Some(k) = &self.net.kafka {
            let _ = k.partition_leader(crate::net::CHANNEL, 0, Some(broker));
        }
        self.note(format!("kafka partition leader -> broker {broker}"));
    }

    /// Makes the next produce requests fail with retriable errors.
    pub fn produce_errors(&mut self, n: usize) {
        if let Some(k) = &self.net.kafka {
            let errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; n];
            k.request_errors(RDKafkaApiKey::Produce, &errors);
        }
        self.note(format!("kafka: next {n} produce requests fail"));
    }

    /// Fills orderer `i`'s data disk (a tmpfs) until writes fail.
    pub fn fill_disk(&mut self, i: usize) {
        let path = self.net.orderers[i].data_dir.join(FILLER);
        let written = fill(&path);
        self.filled.push(path);
        self.note(format!("fill orderer{i}'s disk ({} MiB)", written >> 20));
    }

    /// Frees every filled disk.
    pub fn free_disks(&mut self) {
        for p in std::mem::take(&mut self.filled) {
            let _ = std::fs::remove_file(&p);
            self.note(format!("free {}", p.display()));
        }
    }

    /// Undoes everything: links, brokers, disks; resumes paused and starts stopped nodes.
    /// Records [`Event::Healed`].
    pub fn heal(&mut self) {
        self.free_disks();
        if self.net.links.is_some() {
            self.heal_links();
        }
        if self.net.kafka.is_some() {
            self.brokers_up();
        }
        reap_exits(self.net, &self.history);
        for r in all_nodes(self.net) {
            if self.net.node(r).proc.is_paused() {
                self.resume(r);
            }
            if !self.net.node_mut(r).proc.is_running() {
                self.start(r);
            }
        }
        self.history.record(Event::Healed);
    }
}

fn all_nodes(net: &Net) -> Vec<NodeRef> {
    (0..net.orderers.len())
        .map(NodeRef::Orderer)
        .chain((0..net.peers.len()).map(NodeRef::Peer))
        .collect()
}

/// Reaps every node whose process ended on its own and records how. A node that stopped
/// because a write found its disk full (the nemesis fills disks) kept its promise — it
/// stops rather than acknowledge what it could not write — and that is noted as an
/// observation; any other exit is an [`Event::Exited`], which [`crate::check::exits`]
/// reports. Runs after every fault, when healing and once the run is over, so no crash goes
/// unseen (before, healing quietly restarted crashed nodes: a node that crashed on every
/// start showed only as a missing chain).
pub fn reap_exits(net: &mut Net, history: &History) {
    for r in all_nodes(net) {
        let node = net.node_mut(r);
        let Some(status) = node.proc.reap_if_exited() else {
            continue;
        };
        let name = node.proc.name.clone();
        let last_words = node.proc.last_words();
        if last_words.contains(DISK_FULL) {
            history.record(Event::Fault {
                what: format!("observed: {name} stopped on a full disk ({status})"),
            });
        } else {
            history.record(Event::Exited {
                node: name,
                status: status.to_string(),
                last_words,
            });
        }
    }
}

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill(path: &std::path::Path) -> u64 {
    let Ok(mut f) = std::fs::File::create(path) else {
        return 0;
    };
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = f.sync_all();
    written
}
