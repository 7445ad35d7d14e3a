//! The partition's tables in RocksDB: column family `status` (invocation id → status) and
//! `journal` (invocation id ‖ big-endian entry index → frame), so one invocation's journal is
//! one contiguous, ordered key range.
//!
//! Writes collect in a [`Transaction`] and reach the disk in one synced batch when it commits,
//! so several records can share one fsync (group commit) and a crash never leaves part of a
//! record applied. Reads inside a transaction see its own pending writes, so records applied
//! one after another in the same batch behave exactly as if each had been committed alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reprise_types::InvocationId;
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::record::StoredFrame;
use crate::status::InvocationStatus;
use crate::storage::{MemoryStore, PartitionStore, StorageError};

const CF_STATUS: &str = "status";
const CF_JOURNAL: &str = "journal";

/// One partition's RocksDB database.
pub struct RocksDbStore {
    path: PathBuf,
    db: DB,
}

impl RocksDbStore {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = [CF_STATUS, CF_JOURNAL]
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
            db,
        })
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
            let (id, index) = key.split_at(InvocationId::RAW_LEN.min(key.len()));
            let index = <[u8; 4]>::try_from(index)
                .map(u32::from_be_bytes)
                .map_err(|_| StorageError(format!("bad journal key in {}", self.path.display())))?;
            memory
                .journals
                .insert((self.decode_id(id)?, index), self.decode(&value)?);
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
        let mut options = WriteOptions::default();
        options.set_sync(true);
        store
            .db
            .write_opt(batch, &options)
            .map_err(|err| store.error(err))
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
