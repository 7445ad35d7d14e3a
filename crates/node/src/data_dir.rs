//! The node directory, `<base-dir>/<node-name>/`, and the exclusive lock that keeps two
//! processes from opening the same data. The lock is an advisory `flock` on `LOCK`, released by
//! the OS when the process exits however it exits, so a crash never leaves a stale lock behind.
//! The holder writes its pid into the file so a refused process can say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "LOCK";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create the node directory {path}: {source}; check `base-dir`")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the node directory {path} is in use by another process{}; stop it, or give this node \
         another `base-dir` or `node-name`",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    InUse { path: PathBuf, holder: Option<u32> },
    #[error("cannot lock the node directory {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Holds the node directory for as long as it lives.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    // Held for its lock; dropping the file releases it.
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed and locks it, or says which process holds it.
    pub fn lock(path: &Path) -> Result<DataDir, DataDirError> {
        std::fs::create_dir_all(path).map_err(|source| DataDirError::Create {
            path: path.to_owned(),
            source,
        })?;
        let lock_path = path.join(LOCK_FILE);
        let lock_err = |source| DataDirError::Lock {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(DataDirError::InUse {
                    path: path.to_owned(),
                    holder: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(source)) => return Err(lock_err(source)),
        }
        file.set_len(0).map_err(lock_err)?;
        file.seek(SeekFrom::Start(0)).map_err(lock_err)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_err)?;
        file.sync_all().map_err(lock_err)?;
        Ok(DataDir {
            path: path.to_owned(),
            _lock: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("node-a");
        let held = DataDir::lock(&dir).expect("first lock");
        let err = DataDir::lock(&dir).expect_err("already locked");
        match &err {
            DataDirError::InUse { holder, .. } => {
                assert_eq!(*holder, Some(std::process::id()))
            }
            other => panic!("unexpected error {other}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id()))
        );
        drop(held);
        DataDir::lock(&dir).expect("free again after drop");
    }

    #[test]
    fn an_uncreatable_directory_is_a_clear_error() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write file");
        let err = DataDir::lock(&file.join("node")).expect_err("parent is a file");
        assert!(matches!(err, DataDirError::Create { .. }), "{err}");
    }
}
