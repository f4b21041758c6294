//! The node's data directory, checked before anything else starts.
//!
//! A node creates its channels' ledgers lazily, on join; without this check a node whose
//! data directory it cannot write (a container volume owned by another user, a read-only
//! mount, a typo in `data_dir`) would start, report ready and fail only at the first join
//! — far from the cause. Instead it refuses to start with one line naming the directory,
//! the user it runs as and the operating system's reason.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why the data directory cannot be used.
#[derive(Debug, Error)]
#[error("data directory {path} cannot be used by uid {uid}: {step}: {source}")]
pub struct DataDirError {
    /// The directory.
    pub path: PathBuf,
    /// The user the node runs as (a container's volume is often owned by another).
    pub uid: u32,
    /// What failed: creating it, writing to it, syncing, removing the probe file.
    pub step: &'static str,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

/// Name of the short-lived probe file written into the directory.
const PROBE: &str = ".ordo-write-check";

/// Creates `dir` when missing and proves it writable: a probe file is created, written,
/// synced and removed. Nothing else in the directory is touched.
pub fn prepare(dir: &Path) -> Result<(), DataDirError> {
    let fail = |step: &'static str| {
        move |source| DataDirError {
            path: dir.to_path_buf(),
            uid: current_uid(),
            step,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(fail("creating it"))?;
    let probe = dir.join(PROBE);
    let mut file = std::fs::File::create(&probe).map_err(fail("creating a file in it"))?;
    file.write_all(b"ordo")
        .map_err(fail("writing a file in it"))?;
    file.sync_all().map_err(fail("syncing a file in it"))?;
    drop(file);
    std::fs::remove_file(&probe).map_err(fail("removing a file from it"))?;
    Ok(())
}

/// The real uid of this process, from `/proc/self/status` (Linux); `u32::MAX` when it
/// cannot be read (the message then still names the directory and the reason).
fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_created_and_left_empty() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/b");
        prepare(&dir).expect("prepared");
        assert!(dir.is_dir());
        assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 0);
    }

    #[test]
    fn the_process_uid_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert_ne!(current_uid(), u32::MAX);
        }
    }

    #[test]
    fn a_file_in_the_way_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("data");
        std::fs::write(&file, b"x").expect("file");
        let err = prepare(&file).expect_err("refused");
        assert_eq!(err.step, "creating it");
        assert!(err.to_string().contains("data directory"), "{err}");
    }
}
