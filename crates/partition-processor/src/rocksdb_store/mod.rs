//! The partitions' tables in RocksDB, one column family per [`Table`] (see [`keys`] for the
//! key layouts). Every row key starts with a partition key, so each partition's rows are one
//! contiguous range of every table: all partitions of a node share one database, and with it
//! one write-ahead log whose fsyncs they share. The partitions' raft logs live in the same
//! database (families `log` and `raft`).
//!
//! Writes collect in a [`Transaction`] and reach the disk in one synced batch when it commits,
//! so several records can share one fsync (group commit) and a crash never leaves part of a
//! record applied. Reads inside a transaction see its own pending writes, so records applied
//! one after another in the same batch behave exactly as if each had been committed alone.

mod keys;
mod transaction;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use reprise_raft_storage::SnapshotTable;
use reprise_types::{InvocationId, PartitionKey};
use rocksdb::{DB, Direction, IteratorMode};

pub use keys::Table;
pub use transaction::Transaction;

use crate::codec::StoredValue;
use crate::record::{OutboxMessage, StoredFrame, TimerKey};
use crate::status::InvocationStatus;
use crate::storage::{MemoryStore, ObjectId, StorageError};
use keys::{
    decode_delivered_from_key, decode_inbox_key, decode_journal_key, decode_object_prefix,
    decode_outbox_key, decode_state_key, decode_timer_key, journal_key, object_prefix, outbox_key,
    row_partition_key, status_key, timer_key,
};

/// Raft log entries of every partition, under the partition's id.
pub const CF_LOG: &str = "log";
/// Raft vote, commit point and applied state of every partition, under the partition's id.
pub const CF_RAFT: &str = "raft";

/// The storage format this build writes: 1 is the first binary one (prost rows and entries);
/// 2 adds the outbox, scheduled invocations and their timers.
pub const FORMAT_VERSION: u32 = 2;

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
        let families: Vec<&str> = Table::ALL
            .iter()
            .map(|table| table.cf_name())
            .chain([CF_LOG, CF_RAFT])
            .collect();
        let db = reprise_rocksdb::open(&reprise_rocksdb::DbSpec {
            what: "partition store",
            path,
            column_families: &families,
            format_version: FORMAT_VERSION,
        })
        .map_err(|err| StorageError(err.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            db,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database, for the raft log stores that share it.
    pub fn db(&self) -> Arc<DB> {
        self.db.clone()
    }

    /// Flushes everything to disk and stops background work: call before dropping the last
    /// clone ([`reprise_rocksdb::close`]).
    pub fn close(&self) -> Result<(), StorageError> {
        reprise_rocksdb::close(&self.db).map_err(|err| self.error(err))
    }

    /// Starts collecting the writes of one or more records of the partition whose key range
    /// starts at `partition_start` (its timers are stored under it).
    pub fn transaction(&self, partition_start: PartitionKey) -> Transaction<'_> {
        Transaction::new(self, partition_start)
    }

    /// The committed leader epoch of the partition whose keys start at `partition_start`.
    pub fn read_leader_epoch(&self, partition_start: PartitionKey) -> Result<u64, StorageError> {
        let key = keys::leader_epoch_key(partition_start);
        match self.get_raw(Table::Partition, &key)? {
            None => Ok(0),
            Some(bytes) => decode_epoch(&bytes).ok_or_else(|| self.bad_key(Table::Partition, &key)),
        }
    }

    /// The committed status of an invocation.
    pub fn read_status(&self, id: InvocationId) -> Result<Option<InvocationStatus>, StorageError> {
        let key = status_key(id);
        self.get_raw(Table::Status, &key)?
            .map(|bytes| self.decode(Table::Status, &key, bytes))
            .transpose()
    }

    /// The committed journal entries `0..length` of an invocation. A missing entry is an error:
    /// the status said it exists.
    pub fn read_journal(
        &self,
        id: InvocationId,
        length: u32,
    ) -> Result<Vec<StoredFrame>, StorageError> {
        // Not sized from `length`: a damaged status must not make this allocate.
        let mut entries = Vec::new();
        let iter = self.iter(
            Table::Journal,
            journal_key(id, 0),
            Some(journal_key(id, length)),
        )?;
        for item in iter {
            let (key, value) = item.map_err(|err| self.error(err))?;
            if key.as_ref() != journal_key(id, entries.len() as u32).as_slice() {
                break;
            }
            entries.push(self.decode(Table::Journal, &key, value)?);
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
        self.rows_of(Table::Status, range)?
            .into_iter()
            .map(|(key, value)| {
                let id = self.decode_id(Table::Status, &key)?;
                Ok((id, self.decode(Table::Status, &key, value)?))
            })
            .collect()
    }

    /// Up to `limit` committed statuses of every partition of the node, in id order, after
    /// `after` (from the first when `None`): what an SQL scan of the invocations reads, a page
    /// at a time.
    pub fn statuses_after(
        &self,
        after: Option<InvocationId>,
        limit: usize,
    ) -> Result<Vec<(InvocationId, InvocationStatus)>, StorageError> {
        let from = after.map(status_key).unwrap_or_default();
        let mut out = Vec::new();
        for item in self.iter(Table::Status, from, None)? {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(|err| self.error(err))?;
            let id = self.decode_id(Table::Status, &key)?;
            if Some(id) != after {
                out.push((id, self.decode(Table::Status, &key, value.to_vec())?));
            }
        }
        Ok(out)
    }

    /// Up to `limit` invocations of the partition whose keys are `range` that are `Invoked`, in
    /// id order after `after` (from the first when `None`): a new leader pages through them
    /// to resume them, reading the index, not the statuses.
    pub fn invoked_in(
        &self,
        range: &RangeInclusive<PartitionKey>,
        after: Option<InvocationId>,
        limit: usize,
    ) -> Result<Vec<InvocationId>, StorageError> {
        let from = match after {
            Some(after) => status_key(after),
            None => range.start().as_u64().to_be_bytes().to_vec(),
        };
        let to = range
            .end()
            .as_u64()
            .checked_add(1)
            .map(|next| next.to_be_bytes().to_vec());
        let mut out = Vec::new();
        for item in self.iter(Table::Invoked, from, to)? {
            if out.len() >= limit {
                break;
            }
            let (key, _) = item.map_err(|err| self.error(err))?;
            let id = self.decode_id(Table::Invoked, &key)?;
            if Some(id) != after {
                out.push(id);
            }
        }
        Ok(out)
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
        let iter = self.iter(Table::State, prefix.clone(), successor(&prefix))?;
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

    /// Up to `limit` committed timers of the partition starting at `partition_start`, in firing
    /// order, after `after` (from the first when `None`). The timer service pages through
    /// them with this, so it never holds more than a window in memory.
    pub fn read_timers(
        &self,
        partition_start: PartitionKey,
        after: Option<&TimerKey>,
        limit: usize,
    ) -> Result<Vec<TimerKey>, StorageError> {
        let scope = partition_start.as_u64().to_be_bytes();
        let from = match after {
            Some(after) => timer_key(partition_start, after),
            None => scope.to_vec(),
        };
        let iter = self.iter(Table::Timer, from, successor(&scope))?;
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (key, _) = item.map_err(|err| self.error(err))?;
            if !key.starts_with(&scope) {
                break;
            }
            let timer = decode_timer_key(&key).ok_or_else(|| self.bad_key(Table::Timer, &key))?;
            if Some(&timer) != after {
                out.push(timer);
            }
        }
        Ok(out)
    }

    /// Up to `limit` messages of the outbox of the partition starting at `partition_start`, in
    /// sequence order, after `after` (from the first when `None`): what its leader delivers.
    /// Reading stops once the messages read take `max_bytes` (at least one is read), so a page
    /// of large payloads stays bounded in memory.
    pub fn read_outbox(
        &self,
        partition_start: PartitionKey,
        after: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, OutboxMessage)>, StorageError> {
        let scope = partition_start.as_u64().to_be_bytes();
        let from = match after.and_then(|seq| seq.checked_add(1)) {
            Some(next) => outbox_key(partition_start, next),
            None if after.is_some() => return Ok(Vec::new()),
            None => scope.to_vec(),
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.iter(Table::Outbox, from, successor(&scope))? {
            if out.len() >= limit || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            let (key, value) = item.map_err(|err| self.error(err))?;
            bytes = bytes.saturating_add(value.len());
            let seq = decode_outbox_key(&key).ok_or_else(|| self.bad_key(Table::Outbox, &key))?;
            out.push((seq, self.decode(Table::Outbox, &key, value.to_vec())?));
        }
        Ok(out)
    }

    /// What a snapshot of the partition whose keys are `range` holds: each table's rows in
    /// that range. Table ids are the file's numbering; they never change.
    pub fn snapshot_tables(range: &RangeInclusive<PartitionKey>) -> Vec<SnapshotTable> {
        let from = range.start().as_u64().to_be_bytes().to_vec();
        let to = range
            .end()
            .as_u64()
            .checked_add(1)
            .map(|next| next.to_be_bytes().to_vec());
        Table::ALL
            .iter()
            .map(|table| SnapshotTable {
                id: table.snapshot_id(),
                cf: table.cf_name(),
                from: from.clone(),
                to: to.clone(),
            })
            .collect()
    }

    /// Whether a snapshot row's key belongs to the partition whose keys are `range`.
    pub fn owns_row(range: &RangeInclusive<PartitionKey>, key: &[u8]) -> bool {
        row_partition_key(key).is_some_and(|pk| range.contains(&PartitionKey::new(pk)))
    }

    /// Everything in the tables, as the in-memory model: for tests and debugging.
    /// The resume index is checked against the statuses on the way (it is not in the model).
    pub fn to_memory(&self) -> Result<MemoryStore, StorageError> {
        let mut memory = MemoryStore::default();
        let mut invoked = std::collections::BTreeSet::new();
        for table in Table::ALL {
            let rows = self.rows_of(table, PartitionKey::MIN..=PartitionKey::MAX)?;
            for (key, value) in rows {
                let bad = || self.bad_key(table, &key);
                match table {
                    Table::Status => {
                        let id = self.decode_id(table, &key)?;
                        memory.statuses.insert(id, self.decode(table, &key, value)?);
                    }
                    Table::Journal => {
                        let index = decode_journal_key(&key).ok_or_else(bad)?;
                        memory
                            .journals
                            .insert(index, self.decode(table, &key, value)?);
                    }
                    Table::State => {
                        let key = decode_state_key(&key).ok_or_else(bad)?;
                        memory.state.insert(key, value);
                    }
                    Table::Lock => {
                        let (object, _) = decode_object_prefix(&key).ok_or_else(bad)?;
                        let lock = self.decode(table, &key, value)?;
                        memory.locks.insert(object, lock);
                    }
                    Table::Inbox => {
                        let entry = decode_inbox_key(&key).ok_or_else(bad)?;
                        memory.inbox.insert(entry, self.decode(table, &key, value)?);
                    }
                    Table::Timer => {
                        memory
                            .timers
                            .insert(decode_timer_key(&key).ok_or_else(bad)?);
                    }
                    Table::Invoked => {
                        invoked.insert(self.decode_id(table, &key)?);
                    }
                    Table::Partition => {
                        let number = || decode_epoch(&value).ok_or_else(bad);
                        if key.ends_with(b"leader-epoch") {
                            memory.leader_epoch = number()?;
                        } else if key.ends_with(b"outbox-next") {
                            memory.outbox_next = number()?;
                        } else if let Some(producer) = decode_delivered_from_key(&key) {
                            memory.delivered_from.insert(producer, number()?);
                        }
                    }
                    Table::Promise => {
                        let (object, name) = decode_state_key(&key).ok_or_else(bad)?;
                        let name = String::from_utf8(name.to_vec()).map_err(|_| bad())?;
                        let promise = self.decode(table, &key, value)?;
                        memory.promises.insert((object, name), promise);
                    }
                    Table::Outbox => {
                        let seq = decode_outbox_key(&key).ok_or_else(bad)?;
                        memory.outbox.insert(seq, self.decode(table, &key, value)?);
                    }
                }
            }
        }
        let expected: std::collections::BTreeSet<InvocationId> = memory
            .statuses
            .iter()
            .filter(|(_, status)| matches!(status, InvocationStatus::Invoked(_)))
            .map(|(id, _)| *id)
            .collect();
        if invoked != expected {
            return Err(StorageError(format!(
                "partition store at {}: the resume index lists {} invocations, {} are invoked",
                self.path.display(),
                invoked.len(),
                expected.len()
            )));
        }
        Ok(memory)
    }

    /// Raw rows of one table whose partition key is in `range`, in key order.
    fn rows_of(
        &self,
        table: Table,
        range: RangeInclusive<PartitionKey>,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        let mut out = Vec::new();
        let start = range.start().as_u64().to_be_bytes().to_vec();
        let end = range
            .end()
            .as_u64()
            .checked_add(1)
            .map(|next| next.to_be_bytes().to_vec());
        let iter = self.iter(table, start, end)?;
        for item in iter {
            let (key, value) = item.map_err(|err| self.error(err))?;
            let partition_key = row_partition_key(&key).ok_or_else(|| self.bad_key(table, &key))?;
            if partition_key > range.end().as_u64() {
                break;
            }
            out.push((Bytes::from(key.to_vec()), Bytes::from(value.to_vec())));
        }
        Ok(out)
    }

    /// Iterates `table` from `from` up to `upper` (exclusive; unbounded when `None`). The
    /// bound matters beyond correctness: the rows after a range are often deletions (finished
    /// journals), and an unbounded iterator would step over every one of them before stopping.
    fn iter(
        &self,
        table: Table,
        from: Vec<u8>,
        upper: Option<Vec<u8>>,
    ) -> Result<rocksdb::DBIteratorWithThreadMode<'_, DB>, StorageError> {
        let mut options = rocksdb::ReadOptions::default();
        if let Some(upper) = upper {
            options.set_iterate_upper_bound(upper);
        }
        Ok(self.db.iterator_cf_opt(
            self.cf(table)?,
            options,
            IteratorMode::From(&from, Direction::Forward),
        ))
    }

    /// The keys of `table` in `from..to`.
    fn keys_in(&self, table: Table, from: &[u8], to: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut keys = Vec::new();
        for item in self.iter(table, from.to_vec(), Some(to.to_vec()))? {
            let (key, _) = item.map_err(|err| self.error(err))?;
            keys.push(key.to_vec());
        }
        Ok(keys)
    }

    fn get_raw(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get_cf(self.cf(table)?, key)
            .map_err(|err| self.error(err))
    }

    fn cf(&self, table: Table) -> Result<&rocksdb::ColumnFamily, StorageError> {
        let name = table.cf_name();
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError(format!("column family `{name}` is missing")))
    }

    fn error(&self, err: rocksdb::Error) -> StorageError {
        StorageError(format!("partition store at {}: {err}", self.path.display()))
    }

    pub(crate) fn bad_key(&self, table: Table, key: &[u8]) -> StorageError {
        StorageError(format!(
            "partition store at {}: a malformed key {} in table `{}`",
            self.path.display(),
            hex(key),
            table.cf_name()
        ))
    }

    /// Decodes a row's value; a damaged one is an error naming the table and the key.
    fn decode<T: StoredValue>(
        &self,
        table: Table,
        key: &[u8],
        bytes: impl Into<Bytes>,
    ) -> Result<T, StorageError> {
        T::decode_value(bytes.into()).map_err(|err| {
            StorageError(format!(
                "partition store at {}: the row {} of table `{}` is damaged: {err}",
                self.path.display(),
                hex(key),
                table.cf_name()
            ))
        })
    }

    fn decode_id(&self, table: Table, key: &[u8]) -> Result<InvocationId, StorageError> {
        InvocationId::from_bytes(key).map_err(|_| self.bad_key(table, key))
    }
}

/// A stored leader epoch: a big-endian u64.
fn decode_epoch(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// A key in hex, for messages.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first key after every key that starts with `prefix`, if there is one.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}
