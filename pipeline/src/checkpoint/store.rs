//! The local state directory: checkpoint files written so that each is either complete or
//! ignored.
//!
//! A checkpoint is written to `checkpoint-<seq>.tmp`, synced, and only then renamed to
//! `checkpoint-<seq>.state` (the directory is synced too, so the rename survives a power
//! cut). A crash leaves at worst a `.tmp` file, which is never read and is removed by the
//! next commit. Renaming is the moment a checkpoint becomes complete; the caller decides
//! when (after the results up to its position are delivered). The newest
//! [`KEEP`] complete checkpoints are kept, so that a newest one damaged on disk still
//! leaves an older one to restore.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{decode, Checkpoint, FormatError};

/// Complete checkpoints kept in the directory.
pub const KEEP: usize = 2;

const PREFIX: &str = "checkpoint-";
const COMPLETE: &str = ".state";
const PARTIAL: &str = ".tmp";

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the state directory `{}` (state.dir): {source}", dir.display())]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write checkpoint `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read checkpoint `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "checkpoint `{}` cannot be read: {source}; start with a riskstream that reads it, or \
         start over with `riskstream run --fresh-state` (the window state is then empty)",
        path.display()
    )]
    Unreadable { path: PathBuf, source: FormatError },
}

/// A checkpoint written and synced under its temporary name, not yet complete.
#[derive(Debug)]
pub struct Prepared {
    seq: u64,
    tmp: PathBuf,
    bytes: u64,
}

impl Prepared {
    /// The file's size.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// A state directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    /// Opens `dir`, creating it if missing.
    pub fn open(dir: &Path) -> Result<CheckpointStore, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(CheckpointStore {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Complete checkpoints by sequence number, newest first.
    fn complete(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let mut found = self.files(COMPLETE)?;
        found.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        Ok(found)
    }

    fn files(&self, suffix: &str) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| StoreError::Dir {
            dir: self.dir.clone(),
            source,
        })?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|n| n.strip_suffix(suffix))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            found.push((seq, entry.path()));
        }
        Ok(found)
    }

    /// The newest complete checkpoint and its file, skipping (with a warning) files that
    /// are torn; `None` when there is none. A whole checkpoint of another format version
    /// is an error: starting empty instead would silently lose the state.
    pub fn latest(&self) -> Result<Option<(Checkpoint, PathBuf)>, StoreError> {
        for (_, path) in self.complete()? {
            let bytes = fs::read(&path).map_err(|source| StoreError::Read {
                path: path.clone(),
                source,
            })?;
            match decode(&bytes) {
                Ok(checkpoint) => return Ok(Some((checkpoint, path))),
                Err(err) if err.is_torn() => {
                    tracing::warn!(
                        file = %path.display(),
                        reason = %err,
                        "ignoring a damaged checkpoint; trying the one before"
                    );
                }
                Err(source) => return Err(StoreError::Unreadable { path, source }),
            }
        }
        Ok(None)
    }

    /// The sequence number the next checkpoint takes: one after every file present.
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        let newest = self
            .files(COMPLETE)?
            .into_iter()
            .chain(self.files(PARTIAL)?)
            .map(|(seq, _)| seq)
            .max()
            .unwrap_or(0);
        Ok(newest + 1)
    }

    /// Writes `bytes` (an encoded checkpoint number `seq`) under its temporary name and
    /// syncs it; [`commit`](Self::commit) makes it complete.
    pub fn prepare(&self, seq: u64, bytes: &[u8]) -> Result<Prepared, StoreError> {
        let tmp = self.path(seq, PARTIAL);
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()
        };
        write().map_err(|source| StoreError::Write {
            path: tmp.clone(),
            source,
        })?;
        Ok(Prepared {
            seq,
            tmp,
            bytes: bytes.len() as u64,
        })
    }

    /// Makes a prepared checkpoint complete (atomic rename, directory synced), then
    /// removes all but the newest [`KEEP`] complete ones and any leftover temporary file.
    pub fn commit(&self, prepared: Prepared) -> Result<PathBuf, StoreError> {
        let path = self.path(prepared.seq, COMPLETE);
        let rename = || -> std::io::Result<()> {
            fs::rename(&prepared.tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        rename().map_err(|source| StoreError::Write {
            path: path.clone(),
            source,
        })?;
        for (_, old) in self.complete()?.into_iter().skip(KEEP) {
            let _ = fs::remove_file(old);
        }
        for (seq, tmp) in self.files(PARTIAL)? {
            if seq < prepared.seq {
                let _ = fs::remove_file(tmp);
            }
        }
        Ok(path)
    }

    /// Removes every checkpoint, complete or not, so that none is restored any more (a
    /// start with `--fresh-state`); returns how many complete ones there were.
    pub fn discard_all(&self) -> Result<usize, StoreError> {
        let complete = self.files(COMPLETE)?;
        for (_, path) in complete.iter().chain(&self.files(PARTIAL)?) {
            fs::remove_file(path).map_err(|source| StoreError::Write {
                path: path.clone(),
                source,
            })?;
        }
        Ok(complete.len())
    }

    /// Removes a prepared checkpoint that will not be completed.
    pub fn abandon(&self, prepared: Prepared) {
        let _ = fs::remove_file(prepared.tmp);
    }

    fn path(&self, seq: u64, suffix: &str) -> PathBuf {
        self.dir.join(format!("{PREFIX}{seq:020}{suffix}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::format::{encode, tests::sample, FORMAT_VERSION};

    fn write(store: &CheckpointStore, seq: u64) -> Checkpoint {
        let checkpoint = Checkpoint { seq, ..sample() };
        let prepared = store.prepare(seq, &encode(&checkpoint).unwrap()).unwrap();
        store.commit(prepared).unwrap();
        checkpoint
    }

    #[test]
    fn the_newest_complete_checkpoint_is_restored_and_only_two_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(&dir.path().join("state")).unwrap();
        assert!(store.latest().unwrap().is_none());
        assert_eq!(store.next_seq().unwrap(), 1);
        for seq in 1..=4 {
            write(&store, seq);
        }
        let (latest, _) = store.latest().unwrap().unwrap();
        assert_eq!(latest.seq, 4);
        assert_eq!(store.complete().unwrap().len(), KEEP);
        assert_eq!(store.next_seq().unwrap(), 5);
    }

    #[test]
    fn a_prepared_but_uncommitted_checkpoint_is_never_restored() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        write(&store, 1);
        let newer = Checkpoint { seq: 2, ..sample() };
        let _prepared = store.prepare(2, &encode(&newer).unwrap()).unwrap();
        assert_eq!(store.latest().unwrap().unwrap().0.seq, 1);
        // The leftover temporary file is cleaned up by the next commit.
        write(&store, 3);
        assert!(store
            .files(PARTIAL)
            .unwrap()
            .iter()
            .all(|(seq, _)| *seq > 3));
    }

    #[test]
    fn discarding_leaves_nothing_to_restore() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        write(&store, 1);
        write(&store, 2);
        assert_eq!(store.discard_all().unwrap(), 2);
        assert!(store.latest().unwrap().is_none());
    }

    #[test]
    fn a_torn_newest_checkpoint_is_ignored_and_the_one_before_restored() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let first = write(&store, 1);
        let bytes = encode(&Checkpoint { seq: 2, ..sample() }).unwrap();
        fs::write(store.path(2, COMPLETE), &bytes[..bytes.len() / 2]).unwrap();
        let (restored, path) = store.latest().unwrap().unwrap();
        assert_eq!(restored, first);
        assert!(path.ends_with("checkpoint-00000000000000000001.state"));
    }

    #[test]
    fn a_checkpoint_of_another_format_is_refused_naming_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let mut bytes = encode(&sample()).unwrap();
        bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        fs::write(store.path(1, COMPLETE), &bytes).unwrap();
        let err = store.latest().unwrap_err().to_string();
        assert!(err.contains("--fresh-state"), "{err}");
        assert!(err.contains("checkpoint format 2"), "{err}");
    }
}
