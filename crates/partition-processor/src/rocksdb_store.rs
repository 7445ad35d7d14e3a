//! The partitions' tables in RocksDB: column family `status` (invocation id → status),
//! `journal` (invocation id ‖ big-endian entry index → frame), so one invocation's journal is
//! one contiguous, ordered key range, and `state` (partition key ‖ length-prefixed service ‖
//! length-prefixed object key ‖ state key → the value's bytes, as the SDK sent them), so one
//! object's state is one contiguous range too. An invocation id starts with its partition key
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

use bytes::Bytes;
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
use crate::storage::{MemoryStore, ObjectId, PartitionStore, StorageError};

const CF_STATUS: &str = "status";
const CF_JOURNAL: &str = "journal";
const CF_STATE: &str = "state";
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
        let families = [CF_STATUS, CF_JOURNAL, CF_STATE, CF_LOG, CF_RAFT]
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
        for cf in [CF_STATUS, CF_JOURNAL, CF_STATE] {
            batch.delete_range_cf(self.cf(cf)?, &start, &end);
        }
        Ok(())
    }

    /// Every state row of objects whose partition key is in `range`, as raw key and value.
    pub fn state_rows_in(
        &self,
        range: RangeInclusive<PartitionKey>,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        let mut out = Vec::new();
        let start = range.start().as_u64().to_be_bytes();
        let iter = self.db.iterator_cf(
            self.cf(CF_STATE)?,
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(|err| self.error(err))?;
            let partition_key = <[u8; 8]>::try_from(key.get(..8).unwrap_or_default())
                .map(u64::from_be_bytes)
                .map_err(|_| StorageError(format!("bad state key in {}", self.path.display())))?;
            if partition_key > range.end().as_u64() {
                break;
            }
            out.push((Bytes::from(key.to_vec()), Bytes::from(value.to_vec())));
        }
        Ok(out)
    }

    /// Adds state rows (from a snapshot, as [`Self::state_rows_in`] gave them) to `batch`.
    pub fn put_state_rows(
        &self,
        batch: &mut WriteBatch,
        rows: &[(Bytes, Bytes)],
    ) -> Result<(), StorageError> {
        let cf = self.cf(CF_STATE)?;
        for (key, value) in rows {
            batch.put_cf(cf, key, value);
        }
        Ok(())
    }

    /// The committed state of an object, ordered by key.
    pub fn read_all_state(&self, object: &ObjectId) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        Ok(self
            .read_state_within(object, usize::MAX)?
            .unwrap_or_default())
    }

    /// The committed state of an object if its keys and values together take at most `limit`
    /// bytes, else `None` — found without reading past the limit. What an attempt's start
    /// message carries as eager state.
    pub fn read_state_within(
        &self,
        object: &ObjectId,
        limit: usize,
    ) -> Result<Option<Vec<(Bytes, Bytes)>>, StorageError> {
        let prefix = object_prefix(object);
        let mut out = Vec::new();
        let mut size = 0usize;
        let iter = self.db.iterator_cf(
            self.cf(CF_STATE)?,
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(|err| self.error(err))?;
            let Some(state_key) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            size = size
                .saturating_add(state_key.len())
                .saturating_add(value.len());
            if size > limit {
                return Ok(None);
            }
            out.push((
                Bytes::copy_from_slice(state_key),
                Bytes::from(value.to_vec()),
            ));
        }
        Ok(Some(out))
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
            state: BTreeMap::new(),
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
        for item in self.db.iterator_cf(self.cf(CF_STATE)?, IteratorMode::Start) {
            let (key, value) = item.map_err(|err| self.error(err))?;
            let (object, state_key) = decode_state_key(&key)
                .ok_or_else(|| StorageError(format!("bad state key in {}", self.path.display())))?;
            memory
                .state
                .insert((object, state_key), Bytes::from(value.to_vec()));
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

/// Partition key ‖ service ‖ object key, each string length-prefixed so that no object's
/// prefix is a prefix of another object's.
fn object_prefix(object: &ObjectId) -> Vec<u8> {
    let mut key = object.partition_key().as_u64().to_be_bytes().to_vec();
    for part in [&object.service, &object.key] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        key.extend_from_slice(&len.to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key
}

fn state_key(object: &ObjectId, key: &[u8]) -> Vec<u8> {
    let mut full = object_prefix(object);
    full.extend_from_slice(key);
    full
}

fn decode_state_key(full: &[u8]) -> Option<(ObjectId, Bytes)> {
    let mut rest = full.get(8..)?;
    let mut parts = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let part = rest.get(4..4usize.checked_add(len)?)?;
        parts.push(String::from_utf8(part.to_vec()).ok()?);
        rest = &rest[4 + len..];
    }
    let key = parts.pop()?;
    let service = parts.pop()?;
    Some((ObjectId { service, key }, Bytes::copy_from_slice(rest)))
}

/// Pending writes: `Some` is a put, `None` a delete.
pub struct Transaction<'a> {
    store: &'a RocksDbStore,
    statuses: BTreeMap<InvocationId, Option<InvocationStatus>>,
    journal: BTreeMap<(InvocationId, u32), Option<StoredFrame>>,
    /// By full state key (see [`state_key`]).
    state: BTreeMap<Vec<u8>, Option<Bytes>>,
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
        let state_cf = store.cf(CF_STATE)?;
        for (key, value) in &self.state {
            match value {
                Some(value) => batch.put_cf(state_cf, key, value),
                None => batch.delete_cf(state_cf, key),
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

    fn state(&self, object: &ObjectId, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        let full = state_key(object, key);
        match self.state.get(&full) {
            Some(pending) => Ok(pending.clone()),
            None => Ok(self
                .store
                .db
                .get_cf(self.store.cf(CF_STATE)?, &full)
                .map_err(|err| self.store.error(err))?
                .map(Bytes::from)),
        }
    }

    fn put_state(
        &mut self,
        object: &ObjectId,
        key: Bytes,
        value: Bytes,
    ) -> Result<(), StorageError> {
        self.state.insert(state_key(object, &key), Some(value));
        Ok(())
    }

    fn delete_state(&mut self, object: &ObjectId, key: &[u8]) -> Result<(), StorageError> {
        self.state.insert(state_key(object, key), None);
        Ok(())
    }

    fn all_state(&self, object: &ObjectId) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        // Committed rows, overlaid with this transaction's pending writes.
        let mut merged: BTreeMap<Bytes, Bytes> =
            self.store.read_all_state(object)?.into_iter().collect();
        let prefix = object_prefix(object);
        for (full, value) in self.state.range(prefix.clone()..) {
            let Some(key) = full.strip_prefix(prefix.as_slice()) else {
                break;
            };
            let key = Bytes::copy_from_slice(key);
            match value {
                Some(value) => merged.insert(key, value.clone()),
                None => merged.remove(&key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    fn delete_all_state(&mut self, object: &ObjectId) -> Result<(), StorageError> {
        for (key, _) in self.all_state(object)? {
            self.state.insert(state_key(object, &key), None);
        }
        Ok(())
    }
}
