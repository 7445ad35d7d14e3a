//! A raft group's log in RocksDB: entries under `prefix ‖ index` (big-endian, so iteration is in
//! log order) in the log column family; the vote, the committed log id and the last purged log
//! id under `prefix ‖ name` in the raft column family, all in the binary forms of
//! [`codec`](crate::codec). Every write is synced before openraft is told it is done, and
//! everything openraft appends at once goes in one synced batch.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageIOError, Vote};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch};

use crate::codec::{
    DecodeError, GroupTypes, decode_entry, decode_maybe_log_id, decode_vote, encode_entry,
    encode_maybe_log_id, encode_vote,
};
use crate::{StorageResult, storage_io as io, synced};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last-purged";

/// Where in the database a group keeps its log.
#[derive(Debug, Clone)]
pub struct LogStoreConfig {
    /// Column family of the entries.
    pub log_cf: &'static str,
    /// Column family of the vote, commit point and purge point.
    pub raft_cf: &'static str,
    /// Prefix of every key this group writes; empty when the group has the families alone.
    pub prefix: Vec<u8>,
}

/// Cheap to clone: clones share the database, and each serves as a log reader.
pub struct LogStore<C> {
    db: Arc<DB>,
    config: Arc<LogStoreConfig>,
    _types: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            config: self.config.clone(),
            _types: PhantomData,
        }
    }
}

impl<C: GroupTypes> LogStore<C> {
    pub fn new(db: Arc<DB>, config: LogStoreConfig) -> Self {
        Self {
            db,
            config: Arc::new(config),
            _types: PhantomData,
        }
    }

    fn cf(&self, name: &str) -> StorageResult<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| {
            io(StorageIOError::read(&std::io::Error::other(format!(
                "column family `{name}` is missing"
            ))))
        })
    }

    fn key(&self, suffix: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.config.prefix.len() + suffix.len());
        key.extend_from_slice(&self.config.prefix);
        key.extend_from_slice(suffix);
        key
    }

    fn entry_key(&self, index: u64) -> Vec<u8> {
        self.key(&index.to_be_bytes())
    }

    fn get_meta<T>(
        &self,
        name: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> StorageResult<Option<T>> {
        let bytes = self
            .db
            .get_cf(self.cf(self.config.raft_cf)?, self.key(name))
            .map_err(|e| io(StorageIOError::read(&e)))?;
        bytes
            .map(|bytes| decode(&bytes).map_err(|e| self.damaged(name, e)))
            .transpose()
    }

    fn damaged(&self, name: &[u8], err: DecodeError) -> openraft::StorageError<u64> {
        io(StorageIOError::read(&std::io::Error::other(format!(
            "raft row `{}` of column family `{}` is damaged: {err}",
            String::from_utf8_lossy(name),
            self.config.raft_cf
        ))))
    }

    fn damaged_entry(&self, index: u64, err: DecodeError) -> openraft::StorageError<u64> {
        io(StorageIOError::read_logs(&std::io::Error::other(format!(
            "raft log entry {index} of column family `{}` is damaged: {err}",
            self.config.log_cf
        ))))
    }

    /// Writes a row of the raft family; `sync` waits for the write-ahead log to reach the disk.
    fn put_meta(&self, name: &[u8], bytes: Vec<u8>, sync: bool) -> StorageResult<()> {
        let options = if sync {
            synced()
        } else {
            rocksdb::WriteOptions::default()
        };
        self.db
            .put_cf_opt(
                self.cf(self.config.raft_cf)?,
                self.key(name),
                bytes,
                &options,
            )
            .map_err(|e| io(StorageIOError::write(&e)))
    }

    /// The index of a key of this group's entries, or `None` past the group's prefix.
    fn index_of(&self, key: &[u8]) -> StorageResult<Option<u64>> {
        let Some(suffix) = key.strip_prefix(self.config.prefix.as_slice()) else {
            return Ok(None);
        };
        <[u8; 8]>::try_from(suffix)
            .map(|bytes| Some(u64::from_be_bytes(bytes)))
            .map_err(|e| io(StorageIOError::read_logs(&e)))
    }

    fn last_entry_id(&self) -> StorageResult<Option<LogId<u64>>> {
        // The last key of this group: seek backwards from the largest possible index.
        let end = self.entry_key(u64::MAX);
        let mut iter = self.db.iterator_cf(
            self.cf(self.config.log_cf)?,
            IteratorMode::From(&end, Direction::Reverse),
        );
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item.map_err(|e| io(StorageIOError::read_logs(&e)))?;
                let Some(index) = self.index_of(&key)? else {
                    return Ok(None);
                };
                let entry: Entry<C> = decode_entry(Bytes::from(value.into_vec()))
                    .map_err(|e| self.damaged_entry(index, e))?;
                Ok(Some(*entry.get_log_id()))
            }
        }
    }

    /// Deletes the entries with index in `[from, to)`.
    fn delete_range(&self, from: u64, to: u64) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.cf(self.config.log_cf)?,
            self.entry_key(from),
            self.entry_key(to),
        );
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io(StorageIOError::write_logs(&e)))
    }
}

impl<C: GroupTypes> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<C>>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        let mut entries = Vec::new();
        let from = self.entry_key(start);
        // Bounded so the iterator stops at the range instead of stepping past it.
        let mut options = rocksdb::ReadOptions::default();
        if let Some(end) = end {
            options.set_iterate_upper_bound(self.entry_key(end));
        }
        let iter = self.db.iterator_cf_opt(
            self.cf(self.config.log_cf)?,
            options,
            IteratorMode::From(&from, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(|e| io(StorageIOError::read_logs(&e)))?;
            let Some(index) = self.index_of(&key)? else {
                break;
            };
            if !range.contains(&index) {
                break;
            }
            let entry = decode_entry(Bytes::from(value.into_vec()))
                .map_err(|e| self.damaged_entry(index, e))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl<C: GroupTypes> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<C>> {
        let last_purged_log_id = self
            .get_meta(KEY_LAST_PURGED, decode_maybe_log_id)?
            .flatten();
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
        // A vote must survive a crash: a node that forgets it could vote twice in a term.
        self.put_meta(KEY_VOTE, encode_vote(vote), true)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.get_meta(KEY_VOTE, decode_vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        // Not synced: the commit point only saves re-deriving it after a restart, and losing
        // the latest one is safe (openraft finds it again). Syncing it would make every commit
        // cost a second fsync after the append's.
        self.put_meta(
            KEY_COMMITTED,
            encode_maybe_log_id(committed.as_ref()),
            false,
        )
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        Ok(self.get_meta(KEY_COMMITTED, decode_maybe_log_id)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // One synced batch for everything openraft hands us at once: group commit. The write
        // (and its fsync) runs on the blocking pool, not on the runtime's worker threads.
        let cf = self.cf(self.config.log_cf)?;
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = entries
            .into_iter()
            .map(|entry| {
                (
                    self.entry_key(entry.get_log_id().index),
                    encode_entry(&entry),
                )
            })
            .collect();
        let mut batch =
            reprise_rocksdb::sized_batch(encoded.iter().map(|(k, v)| (k.len(), v.len())));
        for (key, value) in encoded {
            batch.put_cf(cf, key, value);
        }
        let db = self.db.clone();
        let result = crate::blocking(move || db.write_opt(batch, &synced())).await;
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
        self.put_meta(KEY_LAST_PURGED, encode_maybe_log_id(Some(&log_id)), true)?;
        self.delete_range(0, log_id.index.saturating_add(1))
    }
}
