//! The partition's raft group: its log entries are batches of [`Record`]s and its state machine
//! is [`apply`](crate::apply) over the partition's rows in [`RocksDbStore`]. One apply call of
//! openraft (one or more log entries) is one RocksDB batch that carries the table writes and the
//! applied log id together, so after a crash the tables and their position in the log agree and
//! openraft re-applies exactly the entries after it.
//!
//! The state machine's batch is not fsynced itself: the log entries it applies already are, and
//! a lost tail is re-applied from the log at start. Before a snapshot lets openraft purge log
//! entries, the write-ahead log is synced.

// openraft's storage traits fix `StorageError` as the error type; our helpers return it too.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::ops::RangeInclusive;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use reprise_raft_storage::{StorageResult, storage_io as io};
use reprise_types::{PartitionId, PartitionKey};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::action::Action;
use crate::record::Record;
use crate::rocksdb_store::{CF_RAFT, RocksDbStore, TableRows};
use crate::state_machine::apply;

/// What one log entry of a partition carries: records proposed together, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch(pub Vec<Record>);

impl std::fmt::Display for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} record(s)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// Raft types of a partition group: entries carry record batches.
    pub PartitionTypes:
        D = RecordBatch,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<PartitionTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        Responder = openraft::impls::OneshotResponder<PartitionTypes>,
        AsyncRuntime = openraft::TokioRuntime,
);

type Membership = StoredMembership<u64, BasicNode>;

const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";

/// The key prefix of a partition in the shared raft column families.
pub fn key_prefix(partition: PartitionId) -> Vec<u8> {
    partition.as_u16().to_be_bytes().to_vec()
}

/// What a snapshot of a partition holds: every row of its key range.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    meta: SnapshotMeta<u64, BasicNode>,
    tables: Vec<TableRows>,
}

/// The state machine of one partition. Actions of applied records go to `actions`; whoever
/// receives them decides whether this replica leads and carries them out.
pub struct PartitionStateMachine {
    store: RocksDbStore,
    /// The store's database, held here so column family handles can be borrowed from it.
    db: std::sync::Arc<rocksdb::DB>,
    partition: PartitionId,
    range: RangeInclusive<PartitionKey>,
    applied: Option<LogId<u64>>,
    membership: Membership,
    actions: mpsc::UnboundedSender<Vec<Action>>,
}

impl PartitionStateMachine {
    pub fn open(
        store: RocksDbStore,
        partition: PartitionId,
        range: RangeInclusive<PartitionKey>,
        actions: mpsc::UnboundedSender<Vec<Action>>,
    ) -> StorageResult<Self> {
        let mut machine = Self {
            db: store.db(),
            store,
            partition,
            range,
            applied: None,
            membership: Membership::default(),
            actions,
        };
        machine.applied = machine.get_raft(KEY_APPLIED)?.flatten();
        machine.membership = machine.get_raft(KEY_MEMBERSHIP)?.unwrap_or_default();
        Ok(machine)
    }

    fn raft_key(&self, name: &[u8]) -> Vec<u8> {
        let mut key = key_prefix(self.partition);
        key.extend_from_slice(name);
        key
    }

    fn raft_cf(&self) -> StorageResult<&rocksdb::ColumnFamily> {
        self.db.cf_handle(CF_RAFT).ok_or_else(|| {
            io(StorageIOError::read_state_machine(&std::io::Error::other(
                format!("column family `{CF_RAFT}` is missing"),
            )))
        })
    }

    fn get_raft<T: serde::de::DeserializeOwned>(&self, name: &[u8]) -> StorageResult<Option<T>> {
        self.db
            .get_cf(self.raft_cf()?, self.raft_key(name))
            .map_err(|e| io(StorageIOError::read_state_machine(&e)))?
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|e| io(StorageIOError::read_state_machine(&e)))
    }

    /// Adds the applied log id and membership to `batch`, so they commit with the rows.
    fn record_position(&self, batch: &mut WriteBatch) -> StorageResult<()> {
        let cf = self.raft_cf()?;
        let write_err = |e: serde_json::Error| io(StorageIOError::write_state_machine(&e));
        batch.put_cf(
            cf,
            self.raft_key(KEY_APPLIED),
            serde_json::to_vec(&self.applied).map_err(write_err)?,
        );
        batch.put_cf(
            cf,
            self.raft_key(KEY_MEMBERSHIP),
            serde_json::to_vec(&self.membership).map_err(write_err)?,
        );
        Ok(())
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> StorageResult<()> {
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(sync);
        self.store
            .db()
            .write_opt(batch, &options)
            .map_err(|e| io(StorageIOError::write_state_machine(&e)))
    }

    fn build(&self) -> StorageResult<Snapshot<PartitionTypes>> {
        // A snapshot lets openraft purge the log it covers: the rows must be on disk first.
        self.store
            .db()
            .flush_wal(true)
            .map_err(|e| io(StorageIOError::write_snapshot(None, &e)))?;
        let snapshot_id = match self.applied {
            Some(applied) => format!("{}-{}-{}", self.partition, applied.leader_id, applied.index),
            None => format!("{}-empty", self.partition),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let read_err = |e: crate::StorageError| {
            io(StorageIOError::read_state_machine(&std::io::Error::other(
                e.0,
            )))
        };
        let data = SnapshotData {
            meta: meta.clone(),
            tables: self.store.rows_in(self.range.clone()).map_err(read_err)?,
        };
        let bytes =
            serde_json::to_vec(&data).map_err(|e| io(StorageIOError::write_snapshot(None, &e)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

/// Snapshots are built when openraft asks for the builder: openraft goes on applying while a
/// builder runs, and the rows must match the snapshot's log id.
pub struct PartitionSnapshotBuilder(Option<StorageResult<Snapshot<PartitionTypes>>>);

impl RaftSnapshotBuilder<PartitionTypes> for PartitionSnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<PartitionTypes>> {
        self.0.take().unwrap_or_else(|| {
            Err(io(StorageIOError::write_snapshot(
                None,
                &std::io::Error::other("this snapshot builder was already used"),
            )))
        })
    }
}

fn storage_failure(err: crate::StorageError) -> openraft::StorageError<u64> {
    io(StorageIOError::write_state_machine(&std::io::Error::other(
        err.0,
    )))
}

impl RaftStateMachine<PartitionTypes> for PartitionStateMachine {
    type SnapshotBuilder = PartitionSnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, Membership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<()>>
    where
        I: IntoIterator<Item = Entry<PartitionTypes>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let store = self.store.clone();
        let mut transaction = store.transaction(*self.range.start());
        let mut actions = Vec::new();
        let mut responses = Vec::new();
        for entry in entries {
            self.applied = Some(entry.log_id);
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(RecordBatch(records)) => {
                    for record in records {
                        actions.extend(apply(&mut transaction, record).map_err(storage_failure)?);
                    }
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                }
            }
            responses.push(());
        }
        let mut batch = transaction.into_batch().map_err(storage_failure)?;
        self.record_position(&mut batch)?;
        self.write(batch, false)?;
        // Actions only once their writes are in the database: an invoker reading the journal
        // for an `Invoke` must find what the record wrote.
        if !actions.is_empty() {
            // Nobody listening means the partition is shutting down; nothing to carry out.
            let _ = self.actions.send(actions);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        PartitionSnapshotBuilder(Some(self.build()))
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let data: SnapshotData = serde_json::from_slice(&bytes)
            .map_err(|e| io(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
        let mut batch = WriteBatch::default();
        self.store
            .replace_rows(&mut batch, self.range.clone(), &data.tables)
            .map_err(storage_failure)?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.record_position(&mut batch)?;
        self.write(batch, true)
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<PartitionTypes>>> {
        // The rows are the snapshot: a fresh one reflects exactly the applied position.
        if self.applied.is_none() {
            return Ok(None);
        }
        self.build().map(Some)
    }
}
