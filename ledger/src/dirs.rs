//! The directory of a node's channel ledgers (`<data_dir>/channels/<id>`), with joins and
//! removals that a crash cannot leave half done: a new ledger is built in `<id>.joining`
//! and renamed into place when complete; a removed one is renamed to `<id>.removing`
//! before it is deleted. At start, [`ChannelDirs::open`] deletes leftovers of either.

use std::io;
use std::path::{Path, PathBuf};

const JOINING: &str = ".joining";
const REMOVING: &str = ".removing";

/// A node's channels directory.
#[derive(Debug, Clone)]
pub struct ChannelDirs {
    root: PathBuf,
}

impl ChannelDirs {
    /// Creates `root` if needed, deletes interrupted joins and removals, and returns the
    /// ids of the channels found, sorted.
    pub fn open(root: &Path) -> io::Result<(Self, Vec<String>)> {
        std::fs::create_dir_all(root)?;
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            if !entry.path().is_dir() {
                continue;
            }
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.ends_with(JOINING) || name.ends_with(REMOVING) {
                tracing::warn!(dir = %entry.path().display(), "removing an interrupted join or removal");
                std::fs::remove_dir_all(entry.path())?;
                continue;
            }
            ids.push(name);
        }
        ids.sort();
        Ok((
            Self {
                root: root.to_path_buf(),
            },
            ids,
        ))
    }

    /// The channels directory itself (`<data_dir>/channels`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The node's data directory: the parent of [`ChannelDirs::root`], where backups go.
    pub fn data_dir(&self) -> &Path {
        self.root.parent().unwrap_or(Path::new("."))
    }

    /// The directory of channel `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Builds channel `id`'s directory with `build` (given a fresh temporary directory)
    /// and moves it into place only if `build` succeeds; on failure nothing is left. The
    /// rename is made durable (the parent directory is fsynced) before this returns, so a
    /// join that was answered survives a crash.
    pub fn install<E: From<io::Error>>(
        &self,
        id: &str,
        build: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, E> {
        let tmp = self.root.join(format!("{id}{JOINING}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        let finished = build(&tmp).and_then(|()| {
            let target = self.path(id);
            std::fs::rename(&tmp, &target)?;
            std::fs::File::open(&self.root)?.sync_all()?;
            Ok(target)
        });
        if finished.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        finished
    }

    /// Deletes channel `id`'s directory: renamed first, so a crash mid-delete never leaves
    /// a half channel that would open at the next start. A plain removal rather than a
    /// RocksDB destroy: a reader that has not yet noticed the removal may still hold the
    /// store open.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let doomed = self.root.join(format!("{id}{REMOVING}"));
        std::fs::rename(self.path(id), &doomed)?;
        std::fs::remove_dir_all(&doomed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_all_or_nothing_and_leftovers_are_cleaned() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("channels");
        let (dirs, ids) = ChannelDirs::open(&root).expect("open");
        assert!(ids.is_empty());
        let failed: Result<PathBuf, io::Error> = dirs.install("a", |p| {
            std::fs::create_dir_all(p)?;
            Err(io::Error::other("build failed"))
        });
        assert!(failed.is_err());
        assert!(!root.join("a").exists() && !root.join("a.joining").exists());
        dirs.install::<io::Error>("b", |p| std::fs::create_dir_all(p))
            .expect("install");
        std::fs::create_dir_all(root.join("c.joining")).expect("leftover");
        std::fs::create_dir_all(root.join("d.removing")).expect("leftover");
        let (dirs, ids) = ChannelDirs::open(&root).expect("reopen");
        assert_eq!(ids, vec!["b".to_string()]);
        assert!(!root.join("c.joining").exists() && !root.join("d.removing").exists());
        dirs.remove("b").expect("remove");
        assert!(!root.join("b").exists());
    }
}
