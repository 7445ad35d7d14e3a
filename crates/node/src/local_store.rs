//! The node's local store: a small RocksDB database under `<node-dir>/local-store/` that keeps
//! what this node must remember about itself across restarts. Values are JSON documents under
//! fixed keys (a handful of small documents, read once at start; format 1 of this store); every
//! write is synced to disk before it returns, because the node acts on it (an identity that was
//! handed out must never be handed out again).

use std::path::{Path, PathBuf};

use std::sync::Arc;

use rocksdb::{DB, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] reprise_rocksdb::OpenError),
    #[error("local store at {path}: {source}")]
    Io {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error(
        "local store at {path}: the value under `{key}` is not readable ({source}); the data \
         directory is damaged or was written by an incompatible version"
    )]
    Corrupt {
        path: PathBuf,
        key: String,
        source: serde_json::Error,
    },
    #[error("local store: cannot encode the value for `{key}`: {source}")]
    Encode {
        key: String,
        source: serde_json::Error,
    },
}

/// Cheap to clone: every clone is the same open database.
#[derive(Clone)]
pub struct LocalStore {
    path: PathBuf,
    db: Arc<DB>,
}

impl LocalStore {
    pub const DIR: &'static str = "local-store";
    /// The storage format this build writes.
    pub const FORMAT_VERSION: u32 = 1;

    /// Opens (creating if needed) the store inside the node directory.
    pub fn open(node_dir: &Path) -> Result<Self, StoreError> {
        let path = node_dir.join(Self::DIR);
        let db = reprise_rocksdb::open(&reprise_rocksdb::DbSpec {
            what: "local store",
            path: &path,
            column_families: &[],
            format_version: Self::FORMAT_VERSION,
        })?;
        Ok(Self { path, db })
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self.db.get(key).map_err(|source| self.io(source))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                path: self.path.clone(),
                key: key.to_owned(),
                source,
            })
    }

    /// Writes all the given values atomically and durably.
    pub fn put_all(&self, values: &[(&str, &dyn ErasedJson)]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for (key, value) in values {
            let bytes = value.to_json().map_err(|source| StoreError::Encode {
                key: (*key).to_owned(),
                source,
            })?;
            batch.put(key, bytes);
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .write_opt(batch, &options)
            .map_err(|source| self.io(source))
    }

    /// Flushes everything to disk and closes the database.
    pub fn close(self) -> Result<(), StoreError> {
        reprise_rocksdb::close(&self.db).map_err(|source| self.io(source))
    }

    fn io(&self, source: rocksdb::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// A value that can be stored as JSON; lets one batch hold values of different types.
pub trait ErasedJson {
    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
}

impl<T: Serialize> ErasedJson for T {
    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopening() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::open(tmp.path()).expect("open");
        assert_eq!(store.get::<u32>("answer").expect("readable"), None);
        store
            .put_all(&[("answer", &42u32), ("name", &"n1")])
            .expect("write");
        store.close().expect("close");
        let store = LocalStore::open(tmp.path()).expect("reopen");
        assert_eq!(store.get::<u32>("answer").expect("readable"), Some(42));
        assert_eq!(
            store.get::<String>("name").expect("readable").as_deref(),
            Some("n1")
        );
    }

    #[test]
    fn a_damaged_value_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::open(tmp.path()).expect("open");
        store.put_all(&[("answer", &"text")]).expect("write");
        let err = store.get::<u32>("answer").expect_err("wrong type");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("`answer`"));
    }
}
