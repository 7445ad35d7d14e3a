//! The tables the state machine reads and writes, behind a trait so the same logic runs over
//! RocksDB in a node and over memory in tests. An implementation applies all writes of one
//! record atomically (one write batch), so a crash never leaves half a record applied.

use std::collections::BTreeMap;

use reprise_types::InvocationId;

use crate::record::StoredFrame;
use crate::status::InvocationStatus;

#[derive(Debug, thiserror::Error)]
#[error("partition storage failed: {0}")]
pub struct StorageError(pub String);

pub trait PartitionStore {
    fn status(&self, id: InvocationId) -> Result<Option<InvocationStatus>, StorageError>;
    fn put_status(
        &mut self,
        id: InvocationId,
        status: InvocationStatus,
    ) -> Result<(), StorageError>;
    fn journal_entry(
        &self,
        id: InvocationId,
        index: u32,
    ) -> Result<Option<StoredFrame>, StorageError>;
    fn put_journal_entry(
        &mut self,
        id: InvocationId,
        index: u32,
        entry: StoredFrame,
    ) -> Result<(), StorageError>;
    /// Removes entries `0..length` of the invocation's journal.
    fn delete_journal(&mut self, id: InvocationId, length: u32) -> Result<(), StorageError>;
}

/// Tables in memory: for tests and replay checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    pub statuses: BTreeMap<InvocationId, InvocationStatus>,
    pub journals: BTreeMap<(InvocationId, u32), StoredFrame>,
}

impl PartitionStore for MemoryStore {
    fn status(&self, id: InvocationId) -> Result<Option<InvocationStatus>, StorageError> {
        Ok(self.statuses.get(&id).cloned())
    }

    fn put_status(
        &mut self,
        id: InvocationId,
        status: InvocationStatus,
    ) -> Result<(), StorageError> {
        self.statuses.insert(id, status);
        Ok(())
    }

    fn journal_entry(
        &self,
        id: InvocationId,
        index: u32,
    ) -> Result<Option<StoredFrame>, StorageError> {
        Ok(self.journals.get(&(id, index)).cloned())
    }

    fn put_journal_entry(
        &mut self,
        id: InvocationId,
        index: u32,
        entry: StoredFrame,
    ) -> Result<(), StorageError> {
        self.journals.insert((id, index), entry);
        Ok(())
    }

    fn delete_journal(&mut self, id: InvocationId, length: u32) -> Result<(), StorageError> {
        for index in 0..length {
            self.journals.remove(&(id, index));
        }
        Ok(())
    }
}
