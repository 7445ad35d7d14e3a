//! The partitions' tables in RocksDB: column family `status` (invocation id → status) and
//! `journal` (invocation id ‖ big-endian entry index → frame), so one invocation's journal is
//! one contiguous, ordered key range. An invocation id starts with its partition key
//! (big-endian), so every partition's rows are one contiguous range too: all partitions of a
//! node share one database, and with it one write-ahead log whose fsyncs they share. The
//! partitions' raft logs live in the same database (families `log` and `raft`).
//!
//! Writes collect in a [`Transaction`] and reach the disk in one synced batch when it commits,
//! so several records can share one fsync (group commit) and a crash never leaves part of a
//! record applied. Reads inside a transaction see its own pending writes, so records applied
//! one after another in the same batch behave exactly as if each had been committed alone.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reprise_types::{InvocationId, PartitionKey};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::record::StoredFrame;
use crate::status::InvocationStatus;
use crate::storage::{MemoryStore, PartitionStore, StorageError};

const CF_STATUS: &str = "status";
const CF_JOURNAL: &str = "journal";
/// Raft log entries of every partition, under the partition's id.
pub const CF_LOG: &str = "log";
/// Raft vote, commit point and applied state of every partition, under the partition's id.
pub const CF_RAFT: &str = "raft";

/// One journal row: the invocation, the entry's index and the stored entry.
pub type JournalRow = ((InvocationId, u32), StoredFrame);

/// The database of a node's partitions. Cheap to clone.
#[derive(Clone)]
pub struct RocksDbStore {
    path: PathBuf,
    db: Arc<DB>,
}

impl std::fmt::Debug for RocksDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RocksDbStore {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_keep_log_file_num(2);
        let families = [CF_STATUS, CF_JOURNAL, CF_LOG, CF_RAFT]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&options, path, families).map_err(|err| {
            StorageError(format!(
                "cannot open the partition store at {}: {err}",
                path.display()
            ))
        })?;
        Ok(Self {
            path: path.to_owned(),
            db: Arc::new(db),
        })
    }

    /// The database, for the raft log stores that share it.
    pub fn db(&self) -> Arc<DB> {
        self.db.clone()
    }

    /// Writes the WAL to disk and stops background work: call before dropping the last clone.
    pub fn close(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true).map_err(|err| self.error(err))?;
        self.db.cancel_all_background_work(true);
        Ok(())
    }

    /// The committed status of an invocation.
    pub fn read_status(&self, id: InvocationId) -> Result<Option<InvocationStatus>, StorageError> {
        self.get(CF_STATUS, &id.to_bytes())
    }

    /// The committed journal entries `0..length` of an invocation. A missing entry is an error:
    /// the status said it exists.
    pub fn read_journal(
        &self,
        id: InvocationId,
        length: u32,
    ) -> Result<Vec<StoredFrame>, StorageError> {
        let mut entries = Vec::with_capacity(length as usize);
        let start = journal_key(id, 0);
        let iter = self.db.iterator_cf(
            self.cf(CF_JOURNAL)?,
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter.take(length as usize) {
            let (key, value) = item.map_err(|err| self.error(err))?;
            if key.as_ref() != journal_key(id, entries.len() as u32).as_slice() {
                break;
            }
            entries.push(self.decode(&value)?);
        }
        if entries.len() != length as usize {
            return Err(StorageError(format!(
                "journal of {id} has {} entries, its status says {length}",
                entries.len()
            )));
        }
        Ok(entries)
    }

    /// Every status of invocations whose partition key is in `range`, in key order.
    pub fn statuses_in(
        &self,
        range: RangeInclusive<PartitionKey>,
    ) -> Result<Vec<(InvocationId, InvocationStatus)>, StorageError> {
        let mut out = Vec::new();
        let start = range.start().as_u64().to_be_bytes();
        let iter = self.db.iterator_cf(
            self.cf(CF_STATUS)?,
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(|err| self.error(err))?;
            let id = self.decode_id(&key)?;
            if id.partition_key() > *range.end() {
                break;
            }
            out.push((id, self.decode(&value)?));
        }
        Ok(out)
    }

    /// Every journal entry of invocations whose partition key is in `range`.
    pub fn journal_entries_in(
        &self,
        range: RangeInclusive<PartitionKey>,
    ) -> Result<Vec<JournalRow>, StorageError> {
        let mut out = Vec::new();
        let start = range.start().as_u64().to_be_bytes();
        let iter = self.db.iterator_cf(
            self.cf(CF_JOURNAL)?,
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(|err| self.error(err))?;
            let (id, index) = self.decode_journal_key(&key)?;
            if id.partition_key() > *range.end() {
                break;
            }
            out.push(((id, index), self.decode(&value)?));
        }
        Ok(out)
    }

    /// Adds deletes of every row of `range` to `batch`: a snapshot replaces them.
    pub fn delete_range(
        &self,
        batch: &mut WriteBatch,
        range: RangeInclusive<PartitionKey>,
    ) -> Result<(), StorageError> {
        let start = range.start().as_u64().to_be_bytes().to_vec();
        // The end is exclusive: one past the last key of the range (or past every key).
        let end = match range.end().as_u64().checked_add(1) {
            Some(next) => next.to_be_bytes().to_vec(),
            None => vec![0xff; InvocationId::RAW_LEN + 5],
        };
        for cf in [CF_STATUS, CF_JOURNAL] {
            batch.delete_range_cf(self.cf(cf)?, &start, &end);
        }
        Ok(())
    }

    /// Adds rows (from a snapshot) to `batch`.
    pub fn put_rows(
        &self,
        batch: &mut WriteBatch,
        statuses: &[(InvocationId, InvocationStatus)],
        journal: &[((InvocationId, u32), StoredFrame)],
    ) -> Result<(), StorageError> {
        let status_cf = self.cf(CF_STATUS)?;
        for (id, status) in statuses {
            batch.put_cf(status_cf, id.to_bytes(), encode(status)?);
        }
        let journal_cf = self.cf(CF_JOURNAL)?;
        for ((id, index), entry) in journal {
            batch.put_cf(journal_cf, journal_key(*id, *index), encode(entry)?);
        }
        Ok(())
    }

    /// Starts collecting the writes of one or more records.
    pub fn transaction(&self) -> Transaction<'_> {
        Transaction {
            store: self,
            statuses: BTreeMap::new(),
            journal: BTreeMap::new(),
        }
    }

    /// Everything in the tables, as the in-memory model: for tests and debugging.
    pub fn to_memory(&self) -> Result<MemoryStore, StorageError> {
        let mut memory = MemoryStore::default();
        for item in self
            .db
            .iterator_cf(self.cf(CF_STATUS)?, IteratorMode::Start)
        {
            let (key, value) = item.map_err(|err| self.error(err))?;
            memory
                .statuses
                .insert(self.decode_id(&key)?, self.decode(&value)?);
        }
        for item in self
            .db
            .iterator_cf(self.cf(CF_JOURNAL)?, IteratorMode::Start)
        {
            let (key, value) = item.map_err(|err| self.error(err))?;
            memory
                .journals
                .insert(self.decode_journal_key(&key)?, self.decode(&value)?);
        }
        Ok(memory)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError(format!("column family `{name}` is missing")))
    }

    fn error(&self, err: rocksdb::Error) -> StorageError {
        StorageError(format!("partition store at {}: {err}", self.path.display()))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, StorageError> {
        serde_json::from_slice(bytes).map_err(|err| {
            StorageError(format!(
                "partition store at {}: unreadable value ({err})",
                self.path.display()
            ))
        })
    }

    fn decode_journal_key(&self, key: &[u8]) -> Result<(InvocationId, u32), StorageError> {
        let (id, index) = key.split_at(InvocationId::RAW_LEN.min(key.len()));
        let index = <[u8; 4]>::try_from(index)
            .map(u32::from_be_bytes)
            .map_err(|_| StorageError(format!("bad journal key in {}", self.path.display())))?;
        Ok((self.decode_id(id)?, index))
    }

    fn decode_id(&self, bytes: &[u8]) -> Result<InvocationId, StorageError> {
        InvocationId::from_bytes(bytes).map_err(|err| StorageError(err.to_string()))
    }

    fn get<T: DeserializeOwned>(&self, cf: &str, key: &[u8]) -> Result<Option<T>, StorageError> {
        self.db
            .get_cf(self.cf(cf)?, key)
            .map_err(|err| self.error(err))?
            .map(|bytes| self.decode(&bytes))
            .transpose()
    }
}

fn journal_key(id: InvocationId, index: u32) -> Vec<u8> {
    let mut key = id.to_bytes().to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Pending writes: `Some` is a put, `None` a delete.
pub struct Transaction<'a> {
    store: &'a RocksDbStore,
    statuses: BTreeMap<InvocationId, Option<InvocationStatus>>,
    journal: BTreeMap<(InvocationId, u32), Option<StoredFrame>>,
}

impl Transaction<'_> {
    /// Writes everything durably, in one batch.
    pub fn commit(self) -> Result<(), StorageError> {
        let store = self.store;
        let batch = self.into_batch()?;
        let mut options = WriteOptions::default();
        options.set_sync(true);
        store
            .db
            .write_opt(batch, &options)
            .map_err(|err| store.error(err))
    }

    /// The pending writes as one batch, for a caller that adds its own writes (the raft
    /// state machine adds its applied position) and writes it.
    pub fn into_batch(self) -> Result<WriteBatch, StorageError> {
        let store = self.store;
        let mut batch = WriteBatch::default();
        let status_cf = store.cf(CF_STATUS)?;
        let journal_cf = store.cf(CF_JOURNAL)?;
        for (id, status) in &self.statuses {
            match status {
                Some(status) => batch.put_cf(status_cf, id.to_bytes(), encode(status)?),
                None => batch.delete_cf(status_cf, id.to_bytes()),
            }
        }
        for ((id, index), entry) in &self.journal {
            let key = journal_key(*id, *index);
            match entry {
                Some(entry) => batch.put_cf(journal_cf, key, encode(entry)?),
                None => batch.delete_cf(journal_cf, key),
            }
        }
        Ok(batch)
    }
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|err| StorageError(format!("cannot encode a value: {err}")))
}

impl PartitionStore for Transaction<'_> {
    fn status(&self, id: InvocationId) -> Result<Option<InvocationStatus>, StorageError> {
        match self.statuses.get(&id) {
            Some(pending) => Ok(pending.clone()),
            None => self.store.get(CF_STATUS, &id.to_bytes()),
        }
    }

    fn put_status(
        &mut self,
        id: InvocationId,
        status: InvocationStatus,
    ) -> Result<(), StorageError> {
        self.statuses.insert(id, Some(status));
        Ok(())
    }

    fn journal_entry(
        &self,
        id: InvocationId,
        index: u32,
    ) -> Result<Option<StoredFrame>, StorageError> {
        match self.journal.get(&(id, index)) {
            Some(pending) => Ok(pending.clone()),
            None => self.store.get(CF_JOURNAL, &journal_key(id, index)),
        }
    }

    fn put_journal_entry(
        &mut self,
        id: InvocationId,
        index: u32,
        entry: StoredFrame,
    ) -> Result<(), StorageError> {
        self.journal.insert((id, index), Some(entry));
        Ok(())
    }

    fn delete_journal(&mut self, id: InvocationId, length: u32) -> Result<(), StorageError> {
        for index in 0..length {
            self.journal.insert((id, index), None);
        }
        Ok(())
    }
}
