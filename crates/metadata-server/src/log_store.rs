//! The raft log of the metadata group in RocksDB: entries under their index (big-endian, so
//! iteration is in log order) in the `logs` column family; the vote, the committed log id and
//! the last purged log id in `raft`. Every write is synced before openraft is told it is done.

// openraft's storage traits fix `StorageError` as the error type; our helpers return it too.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageIOError, Vote};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::TypeConfig;
use crate::{StorageResult, storage_io as io};

pub(crate) const CF_LOGS: &str = "logs";
pub(crate) const CF_RAFT: &str = "raft";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last-purged";

/// Cheap to clone: clones share the database, and each serves as a log reader.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    fn cf(&self, name: &str) -> StorageResult<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| {
            io(StorageIOError::read(&std::io::Error::other(format!(
                "column family `{name}` is missing"
            ))))
        })
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        let bytes = self
            .db
            .get_cf(self.cf(CF_RAFT)?, key)
            .map_err(|e| io(StorageIOError::read(&e)))?;
        bytes
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|e| io(StorageIOError::read(&e)))
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> StorageResult<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| io(StorageIOError::write(&e)))?;
        self.db
            .put_cf_opt(self.cf(CF_RAFT)?, key, bytes, &synced())
            .map_err(|e| io(StorageIOError::write(&e)))
    }

    fn last_entry_id(&self) -> StorageResult<Option<LogId<u64>>> {
        let mut iter = self.db.iterator_cf(self.cf(CF_LOGS)?, IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| io(StorageIOError::read_logs(&e)))?;
                let entry: Entry<TypeConfig> = serde_json::from_slice(&value)
                    .map_err(|e| io(StorageIOError::read_logs(&e)))?;
                Ok(Some(*entry.get_log_id()))
            }
        }
    }

    /// Deletes the entries with index in `[from, to)`.
    fn delete_range(&self, from: u64, to: u64) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_LOGS)?, from.to_be_bytes(), to.to_be_bytes());
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io(StorageIOError::write_logs(&e)))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            std::ops::Bound::Included(i) => *i,
            std::ops::Bound::Excluded(i) => i.saturating_add(1),
            std::ops::Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(CF_LOGS)?,
            IteratorMode::From(&start.to_be_bytes(), Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(|e| io(StorageIOError::read_logs(&e)))?;
            let index = <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|e| io(StorageIOError::read_logs(&e)))?;
            if !range.contains(&index) {
                break;
            }
            let entry =
                serde_json::from_slice(&value).map_err(|e| io(StorageIOError::read_logs(&e)))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<u64>> = self.get_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        self.put_meta(KEY_VOTE, vote)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        self.put_meta(KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        Ok(self
            .get_meta::<Option<LogId<u64>>>(KEY_COMMITTED)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // One synced batch for everything openraft hands us at once: group commit.
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_LOGS)?;
        for entry in entries {
            let bytes =
                serde_json::to_vec(&entry).map_err(|e| io(StorageIOError::write_logs(&e)))?;
            batch.put_cf(cf, entry.get_log_id().index.to_be_bytes(), bytes);
        }
        let result = self.db.write_opt(batch, &synced());
        let outcome = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(outcome);
        result.map_err(|e| io(StorageIOError::write_logs(&e)))
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        // `delete_range` excludes its end; u64::MAX is never a real index.
        self.delete_range(log_id.index, u64::MAX)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        // Record the purge point first: a crash in between leaves extra entries, never a hole.
        self.put_meta(KEY_LAST_PURGED, &log_id)?;
        self.delete_range(0, log_id.index.saturating_add(1))
    }
}
