//! Disk use over a run (`--watch-disk DIR`): how much the watched directories hold,
//! sampled every few seconds while the load runs.
//!
//! An endurance run must show that a node's disk stays bounded when pruning is on, and a
//! run's average throughput says nothing about that. The watcher walks each directory on
//! a blocking thread every [`SAMPLE_EVERY`] and adds up the space its files take on disk
//! (allocated blocks, as `du` counts them: what fills a disk, not the files' lengths).
//! Files that vanish during the walk — RocksDB deletes compacted files all the time — are
//! skipped, not errors. The walk costs a few milliseconds for a node's few hundred files.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often the watched directories are measured.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// One measurement of every watched directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskSample {
    /// When it was taken, in seconds since the load started.
    pub at_s: f64,
    /// Bytes all the watched directories take on disk.
    pub total_bytes: u64,
    /// Bytes each one takes, by its label (see [`labels`]).
    pub parts: BTreeMap<String, u64>,
}

/// Disk use over a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DiskSeries {
    /// The directories watched, as given.
    pub dirs: Vec<String>,
    /// The samples, oldest first: one before the load, then every [`SAMPLE_EVERY`], and
    /// one when the load ended.
    pub samples: Vec<DiskSample>,
}

impl DiskSeries {
    /// The largest total seen.
    pub fn max_total_bytes(&self) -> u64 {
        self.samples
            .iter()
            .map(|s| s.total_bytes)
            .max()
            .unwrap_or(0)
    }

    /// The total of the last sample taken at or before `at_s`.
    pub fn total_at(&self, at_s: f64) -> Option<u64> {
        self.samples
            .iter()
            .take_while(|s| s.at_s <= at_s)
            .last()
            .map(|s| s.total_bytes)
    }

    /// One line: first, largest and last total.
    pub fn summary(&self) -> String {
        match (self.samples.first(), self.samples.last()) {
            (Some(first), Some(last)) => format!(
                "disk ({} directories): {} at the start, at most {}, {} at the end",
                self.dirs.len(),
                human_bytes(first.total_bytes),
                human_bytes(self.max_total_bytes()),
                human_bytes(last.total_bytes)
            ),
            _ => "disk: no samples".to_string(),
        }
    }
}

/// Short names for the watched directories: each path without the leading components all
/// of them share (`net/orderer0/data` and `net/peer0/data` become `orderer0/data` and
/// `peer0/data`); a lone directory keeps its last component.
pub fn labels(dirs: &[PathBuf]) -> Vec<String> {
    let components: Vec<Vec<String>> = dirs
        .iter()
        .map(|d| {
            d.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect()
        })
        .collect();
    let shortest = components.iter().map(Vec::len).min().unwrap_or(0);
    let mut shared = (0..shortest)
        .take_while(|&i| components.iter().all(|c| c[i] == components[0][i]))
        .count();
    // Keep at least the last component of every path.
    shared = shared.min(shortest.saturating_sub(1));
    components.iter().map(|c| c[shared..].join("/")).collect()
}

/// Bytes the files under `dir` take on disk (allocated 512-byte blocks), following no
/// symlinks. Entries that disappear while it walks are skipped.
pub fn allocated_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let meta = match std::fs::symlink_metadata(entry.path()) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

/// Measures every directory once.
fn sample(dirs: &[(String, PathBuf)], at_s: f64) -> io::Result<DiskSample> {
    let mut parts = BTreeMap::new();
    for (label, dir) in dirs {
        let bytes = allocated_bytes(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("measuring {}: {e}", dir.display())))?;
        parts.insert(label.clone(), bytes);
    }
    Ok(DiskSample {
        at_s,
        total_bytes: parts.values().sum(),
        parts,
    })
}

/// Samples disk use in the background until [`DiskWatcher::finish`].
pub struct DiskWatcher {
    stop: Arc<Notify>,
    task: JoinHandle<Vec<DiskSample>>,
    dirs: Vec<(String, PathBuf)>,
    started: Instant,
    taken: Arc<AtomicUsize>,
}

impl DiskWatcher {
    /// Measures `dirs` once now (so a directory that does not exist fails the run before
    /// it starts, not after it), then every `every` from a background task. Times are
    /// seconds since `started`.
    pub fn start(dirs: &[PathBuf], every: Duration, started: Instant) -> io::Result<Self> {
        let dirs: Vec<(String, PathBuf)> = labels(dirs).into_iter().zip(dirs.to_vec()).collect();
        let first = sample(&dirs, started.elapsed().as_secs_f64())?;
        let stop = Arc::new(Notify::new());
        let taken = Arc::new(AtomicUsize::new(1));
        let task = {
            let (stop, dirs, taken) = (stop.clone(), dirs.clone(), taken.clone());
            tokio::spawn(async move {
                let mut samples = vec![first];
                let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.notified() => return samples,
                        _ = tick.tick() => {}
                    }
                    let dirs = dirs.clone();
                    let at_s = started.elapsed().as_secs_f64();
                    match tokio::task::spawn_blocking(move || sample(&dirs, at_s)).await {
                        Ok(Ok(s)) => {
                            samples.push(s);
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(e)) => tracing::warn!("disk sample skipped: {e}"),
                        Err(e) => tracing::warn!("disk sample task failed: {e}"),
                    }
                }
            })
        };
        Ok(Self {
            stop,
            task,
            dirs,
            started,
            taken,
        })
    }

    /// Samples taken so far (the first one included).
    pub fn samples_taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }

    /// Stops sampling, takes a last sample, and returns the series.
    pub async fn finish(self) -> DiskSeries {
        self.stop.notify_one();
        let mut samples = self.task.await.unwrap_or_default();
        let (dirs, at_s) = (self.dirs.clone(), self.started.elapsed().as_secs_f64());
        if let Ok(Ok(last)) = tokio::task::spawn_blocking(move || sample(&dirs, at_s)).await {
            samples.push(last);
        }
        DiskSeries {
            dirs: self
                .dirs
                .iter()
                .map(|(_, d)| d.display().to_string())
                .collect(),
            samples,
        }
    }
}

/// `bytes` in binary units with one decimal: "812 B", "3.0 MiB", "1.2 GiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_drop_the_shared_prefix() {
        let dirs = [
            PathBuf::from("/var/tmp/net/orderer0/data"),
            PathBuf::from("/var/tmp/net/peer0/data"),
        ];
        assert_eq!(labels(&dirs), ["orderer0/data", "peer0/data"]);
        assert_eq!(labels(&[PathBuf::from("/var/tmp/net")]), ["net"]);
        let nested = [PathBuf::from("a/b"), PathBuf::from("a/b/c")];
        assert_eq!(labels(&nested), ["b", "b/c"]);
    }

    #[test]
    fn allocated_bytes_counts_files_below_and_fails_on_a_missing_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::write(dir.path().join("a/one"), vec![1u8; 100_000]).expect("write");
        std::fs::write(dir.path().join("a/b/two"), vec![2u8; 300_000]).expect("write");
        let bytes = allocated_bytes(dir.path()).expect("measured");
        // Allocation rounds up to the file system's block size, never down.
        assert!(
            (400_000..400_000 + 64 * 1024).contains(&bytes),
            "{bytes} bytes allocated"
        );
        let err = allocated_bytes(&dir.path().join("missing")).expect_err("no such dir");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn the_watcher_sees_a_directory_grow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let watcher = DiskWatcher::start(
            &[dir.path().to_path_buf()],
            Duration::from_millis(100),
            started,
        )
        .expect("watching");
        std::fs::write(dir.path().join("f"), vec![7u8; 1 << 20]).expect("write");
        // Wait (polling, bounded) until a periodic sample was taken after the write.
        let deadline = Instant::now() + Duration::from_secs(10);
        while watcher.samples_taken() < 3 {
            assert!(Instant::now() < deadline, "no periodic sample in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let series = watcher.finish().await;
        assert!(
            series.samples[1..series.samples.len() - 1]
                .iter()
                .any(|s| s.total_bytes >= 1 << 20),
            "a periodic sample saw the file: {series:?}"
        );
        assert!(series.samples.len() >= 3, "{series:?}");
        assert_eq!(series.samples[0].total_bytes, 0);
        assert!(series.max_total_bytes() >= 1 << 20, "{series:?}");
        let last = series.samples.last().expect("a last sample");
        assert!(last.total_bytes >= 1 << 20);
        assert_eq!(series.total_at(-1.0), None);
        assert_eq!(series.total_at(series.samples[0].at_s), Some(0));
        assert!(
            series.summary().contains("at most 1.0 MiB"),
            "{}",
            series.summary()
        );
        let missing = DiskWatcher::start(&[dir.path().join("nope")], SAMPLE_EVERY, started);
        assert!(missing.is_err());
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
