//! The tables the state machine reads and writes, behind a trait so the same logic runs over
//! RocksDB in a node and over memory in tests. An implementation applies all writes of one
//! record atomically (one write batch), so a crash never leaves half a record applied.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use reprise_types::{InvocationId, PartitionId, PartitionKey};

use crate::record::{OutboxMessage, StoredFrame, TimerKey};
use crate::status::{InvocationStatus, ObjectLock, Promise};

#[derive(Debug, thiserror::Error)]
#[error("partition storage failed: {0}")]
pub struct StorageError(pub String);

pub trait PartitionStore {
    /// The epoch of the partition's current leadership (0 before the first announcement).
    fn leader_epoch(&self) -> Result<u64, StorageError>;
    fn put_leader_epoch(&mut self, epoch: u64) -> Result<(), StorageError>;

    fn status(&self, id: InvocationId) -> Result<Option<InvocationStatus>, StorageError>;
    fn put_status(
        &mut self,
        id: InvocationId,
        status: InvocationStatus,
    ) -> Result<(), StorageError>;
    fn delete_status(&mut self, id: InvocationId) -> Result<(), StorageError>;
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
    /// Removes the invocation's journal (its `length` entries, whatever it says).
    fn delete_journal(&mut self, id: InvocationId, length: u32) -> Result<(), StorageError>;

    /// One state entry of a virtual object (or workflow).
    fn state(&self, object: &ObjectId, key: &[u8]) -> Result<Option<Bytes>, StorageError>;
    fn put_state(
        &mut self,
        object: &ObjectId,
        key: Bytes,
        value: Bytes,
    ) -> Result<(), StorageError>;
    fn delete_state(&mut self, object: &ObjectId, key: &[u8]) -> Result<(), StorageError>;
    /// Every state entry of the object, ordered by key.
    fn all_state(&self, object: &ObjectId) -> Result<Vec<(Bytes, Bytes)>, StorageError>;
    fn delete_all_state(&mut self, object: &ObjectId) -> Result<(), StorageError>;

    /// The object's lock and inbox bounds; `None` when no exclusive invocation holds it.
    fn object_lock(&self, object: &ObjectId) -> Result<Option<ObjectLock>, StorageError>;
    fn put_object_lock(&mut self, object: &ObjectId, lock: ObjectLock) -> Result<(), StorageError>;
    fn delete_object_lock(&mut self, object: &ObjectId) -> Result<(), StorageError>;

    /// The invocation waiting at `seq` in the object's inbox.
    fn inbox_entry(
        &self,
        object: &ObjectId,
        seq: u64,
    ) -> Result<Option<InvocationId>, StorageError>;
    fn put_inbox_entry(
        &mut self,
        object: &ObjectId,
        seq: u64,
        id: InvocationId,
    ) -> Result<(), StorageError>;
    fn delete_inbox_entry(&mut self, object: &ObjectId, seq: u64) -> Result<(), StorageError>;

    /// Whether the timer is still pending.
    fn has_timer(&self, timer: &TimerKey) -> Result<bool, StorageError>;
    fn put_timer(&mut self, timer: TimerKey) -> Result<(), StorageError>;
    fn delete_timer(&mut self, timer: &TimerKey) -> Result<(), StorageError>;

    /// A workflow's promise.
    fn promise(&self, object: &ObjectId, key: &str) -> Result<Option<Promise>, StorageError>;
    fn put_promise(
        &mut self,
        object: &ObjectId,
        key: &str,
        promise: &Promise,
    ) -> Result<(), StorageError>;
    /// Removes every promise of the workflow.
    fn delete_all_promises(&mut self, object: &ObjectId) -> Result<(), StorageError>;

    /// The sequence number the partition's next outbox message gets: numbers are never
    /// reused, since targets recognise redeliveries by them.
    fn outbox_next(&self) -> Result<u64, StorageError>;
    fn put_outbox_next(&mut self, seq: u64) -> Result<(), StorageError>;
    fn put_outbox(&mut self, seq: u64, message: &OutboxMessage) -> Result<(), StorageError>;
    fn delete_outbox(&mut self, seq: u64) -> Result<(), StorageError>;

    /// The highest outbox sequence number applied from `producer`, if any was.
    fn delivered_from(&self, producer: PartitionId) -> Result<Option<u64>, StorageError>;
    fn put_delivered_from(&mut self, producer: PartitionId, seq: u64) -> Result<(), StorageError>;
}

/// A virtual object (or workflow) instance: the owner of a set of state entries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    pub service: String,
    pub key: String,
}

impl ObjectId {
    pub fn new(service: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            key: key.into(),
        }
    }

    /// Where the object lives: the hash of its key, as for every keyed call.
    pub fn partition_key(&self) -> PartitionKey {
        PartitionKey::from_key(&self.key)
    }
}

/// Tables in memory: for tests and replay checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    pub leader_epoch: u64,
    pub statuses: BTreeMap<InvocationId, InvocationStatus>,
    pub journals: BTreeMap<(InvocationId, u32), StoredFrame>,
    pub state: BTreeMap<(ObjectId, Bytes), Bytes>,
    pub locks: BTreeMap<ObjectId, ObjectLock>,
    pub inbox: BTreeMap<(ObjectId, u64), InvocationId>,
    pub timers: BTreeSet<TimerKey>,
    pub promises: BTreeMap<(ObjectId, String), Promise>,
    pub outbox_next: u64,
    pub outbox: BTreeMap<u64, OutboxMessage>,
    pub delivered_from: BTreeMap<PartitionId, u64>,
}

impl PartitionStore for MemoryStore {
    fn leader_epoch(&self) -> Result<u64, StorageError> {
        Ok(self.leader_epoch)
    }

    fn put_leader_epoch(&mut self, epoch: u64) -> Result<(), StorageError> {
        self.leader_epoch = epoch;
        Ok(())
    }

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

    fn delete_status(&mut self, id: InvocationId) -> Result<(), StorageError> {
        self.statuses.remove(&id);
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

    fn delete_journal(&mut self, id: InvocationId, _length: u32) -> Result<(), StorageError> {
        let entries: Vec<(InvocationId, u32)> = self
            .journals
            .range((id, 0)..=(id, u32::MAX))
            .map(|(key, _)| *key)
            .collect();
        for key in entries {
            self.journals.remove(&key);
        }
        Ok(())
    }

    fn state(&self, object: &ObjectId, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self
            .state
            .get(&(object.clone(), Bytes::copy_from_slice(key)))
            .cloned())
    }

    fn put_state(
        &mut self,
        object: &ObjectId,
        key: Bytes,
        value: Bytes,
    ) -> Result<(), StorageError> {
        self.state.insert((object.clone(), key), value);
        Ok(())
    }

    fn delete_state(&mut self, object: &ObjectId, key: &[u8]) -> Result<(), StorageError> {
        self.state
            .remove(&(object.clone(), Bytes::copy_from_slice(key)));
        Ok(())
    }

    fn all_state(&self, object: &ObjectId) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        Ok(self
            .state
            .iter()
            .filter(|((owner, _), _)| owner == object)
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect())
    }

    fn delete_all_state(&mut self, object: &ObjectId) -> Result<(), StorageError> {
        self.state.retain(|(owner, _), _| owner != object);
        Ok(())
    }

    fn object_lock(&self, object: &ObjectId) -> Result<Option<ObjectLock>, StorageError> {
        Ok(self.locks.get(object).cloned())
    }

    fn put_object_lock(&mut self, object: &ObjectId, lock: ObjectLock) -> Result<(), StorageError> {
        self.locks.insert(object.clone(), lock);
        Ok(())
    }

    fn delete_object_lock(&mut self, object: &ObjectId) -> Result<(), StorageError> {
        self.locks.remove(object);
        Ok(())
    }

    fn inbox_entry(
        &self,
        object: &ObjectId,
        seq: u64,
    ) -> Result<Option<InvocationId>, StorageError> {
        Ok(self.inbox.get(&(object.clone(), seq)).copied())
    }

    fn put_inbox_entry(
        &mut self,
        object: &ObjectId,
        seq: u64,
        id: InvocationId,
    ) -> Result<(), StorageError> {
        self.inbox.insert((object.clone(), seq), id);
        Ok(())
    }

    fn delete_inbox_entry(&mut self, object: &ObjectId, seq: u64) -> Result<(), StorageError> {
        self.inbox.remove(&(object.clone(), seq));
        Ok(())
    }

    fn has_timer(&self, timer: &TimerKey) -> Result<bool, StorageError> {
        Ok(self.timers.contains(timer))
    }

    fn put_timer(&mut self, timer: TimerKey) -> Result<(), StorageError> {
        self.timers.insert(timer);
        Ok(())
    }

    fn delete_timer(&mut self, timer: &TimerKey) -> Result<(), StorageError> {
        self.timers.remove(timer);
        Ok(())
    }

    fn promise(&self, object: &ObjectId, key: &str) -> Result<Option<Promise>, StorageError> {
        Ok(self
            .promises
            .get(&(object.clone(), key.to_owned()))
            .cloned())
    }

    fn put_promise(
        &mut self,
        object: &ObjectId,
        key: &str,
        promise: &Promise,
    ) -> Result<(), StorageError> {
        self.promises
            .insert((object.clone(), key.to_owned()), promise.clone());
        Ok(())
    }

    fn delete_all_promises(&mut self, object: &ObjectId) -> Result<(), StorageError> {
        self.promises.retain(|(owner, _), _| owner != object);
        Ok(())
    }

    fn outbox_next(&self) -> Result<u64, StorageError> {
        Ok(self.outbox_next)
    }

    fn put_outbox_next(&mut self, seq: u64) -> Result<(), StorageError> {
        self.outbox_next = seq;
        Ok(())
    }

    fn put_outbox(&mut self, seq: u64, message: &OutboxMessage) -> Result<(), StorageError> {
        self.outbox.insert(seq, message.clone());
        Ok(())
    }

    fn delete_outbox(&mut self, seq: u64) -> Result<(), StorageError> {
        self.outbox.remove(&seq);
        Ok(())
    }

    fn delivered_from(&self, producer: PartitionId) -> Result<Option<u64>, StorageError> {
        Ok(self.delivered_from.get(&producer).copied())
    }

    fn put_delivered_from(&mut self, producer: PartitionId, seq: u64) -> Result<(), StorageError> {
        self.delivered_from.insert(producer, seq);
        Ok(())
    }
}
