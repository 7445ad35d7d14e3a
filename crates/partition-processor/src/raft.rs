//! The partition's raft group: its log entries are batches of [`Record`]s and its state machine
//! is [`apply`](crate::apply) over the partition's rows in [`RocksDbStore`]. One apply call of
//! openraft (one or more log entries) is one RocksDB batch that carries the table writes and the
//! applied log id together, so after a crash the tables and their position in the log agree and
//! openraft re-applies exactly the entries after it.
//!
//! The state machine's batch is not fsynced itself: the log entries it applies already are, and
//! a lost tail is re-applied from the log at start. Snapshots are files ([`SnapshotDir`]): cut
//! from a RocksDB snapshot taken at the applied log id, written by a thread of their own, and
//! kept, so starting a partition reads a file header instead of building anything.

// openraft's storage traits fix `StorageError` as the error type; our helpers return it too.
#![allow(clippy::result_large_err)]

use std::ops::RangeInclusive;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use reprise_raft_storage::codec::{
    decode_maybe_log_id, decode_stored_membership, encode_maybe_log_id, encode_stored_membership,
};
use reprise_raft_storage::{
    DecodeError, InstallPlan, PendingSnapshot, SnapshotBuilder, SnapshotDir, StorageResult,
    storage_io as io,
};
use reprise_types::{MillisSinceEpoch, PartitionId, PartitionKey};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::action::Action;
use crate::record::Record;
use crate::rocksdb_store::{CF_RAFT, RocksDbStore};
use crate::state_machine::{ApplyContext, apply};

/// What one log entry of a partition carries: records proposed together, applied in order,
/// and the proposer's clock when it proposed them — the "now" every replica applies them at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch {
    pub records: Vec<Record>,
    pub proposed_at: MillisSinceEpoch,
}

impl std::fmt::Display for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} record(s)", self.records.len())
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
        SnapshotData = tokio::fs::File,
        Responder = openraft::impls::OneshotResponder<PartitionTypes>,
        AsyncRuntime = openraft::TokioRuntime,
);

type Membership = StoredMembership<u64, BasicNode>;

const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
/// Present while a snapshot is being installed.
pub(crate) const KEY_INSTALLING: &[u8] = b"installing";

/// The key prefix of a partition in the shared raft column families.
pub fn key_prefix(partition: PartitionId) -> Vec<u8> {
    partition.as_u16().to_be_bytes().to_vec()
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
    snapshots: SnapshotDir,
    actions: mpsc::UnboundedSender<Vec<Action>>,
}

impl PartitionStateMachine {
    /// Opens the partition's state, finishing first a snapshot install that a crash
    /// interrupted. `snapshots` is the partition's own snapshot directory.
    pub fn open(
        store: RocksDbStore,
        partition: PartitionId,
        range: RangeInclusive<PartitionKey>,
        snapshots: SnapshotDir,
        actions: mpsc::UnboundedSender<Vec<Action>>,
    ) -> StorageResult<Self> {
        let mut machine = Self {
            db: store.db(),
            store,
            partition,
            range,
            applied: None,
            membership: Membership::default(),
            snapshots,
            actions,
        };
        let plan = machine.install_plan(WriteBatch::default());
        if let Some(meta) = machine
            .snapshots
            .resume_install(&machine.db, plan)
            .map_err(|e| io(StorageIOError::read_state_machine(&e)))?
        {
            // The interrupted install's final batch carried no position: write it now.
            machine.applied = meta.last_log_id;
            machine.membership = meta.last_membership;
            let mut batch = WriteBatch::default();
            machine.record_position(&mut batch)?;
            machine.write(batch, true)?;
            tracing::info!(%partition, "finished a snapshot install a restart interrupted");
        }
        machine.applied = machine
            .get_raft(KEY_APPLIED, decode_maybe_log_id)?
            .flatten();
        machine.membership = machine
            .get_raft(KEY_MEMBERSHIP, decode_stored_membership)?
            .unwrap_or_default();
        Ok(machine)
    }

    /// How a snapshot replaces this partition's rows; `finish` commits with its last batch.
    fn install_plan(&self, finish: WriteBatch) -> InstallPlan {
        let range = self.range.clone();
        InstallPlan {
            tables: RocksDbStore::snapshot_tables(&self.range),
            marker: (CF_RAFT, self.raft_key(KEY_INSTALLING)),
            accept: Box::new(move |_, key| RocksDbStore::owns_row(&range, key)),
            finish,
        }
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

    fn get_raft<T>(
        &self,
        name: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> StorageResult<Option<T>> {
        let bytes = self
            .db
            .get_cf(self.raft_cf()?, self.raft_key(name))
            .map_err(|e| io(StorageIOError::read_state_machine(&e)))?;
        bytes
            .map(|bytes| {
                decode(&bytes).map_err(|e| {
                    io(StorageIOError::read_state_machine(&std::io::Error::other(
                        format!(
                            "partition {}: its `{}` row is damaged: {e}",
                            self.partition,
                            String::from_utf8_lossy(name)
                        ),
                    )))
                })
            })
            .transpose()
    }

    /// Adds the applied log id and membership to `batch`, so they commit with the rows.
    fn record_position(&self, batch: &mut WriteBatch) -> StorageResult<()> {
        let cf = self.raft_cf()?;
        batch.put_cf(
            cf,
            self.raft_key(KEY_APPLIED),
            encode_maybe_log_id(self.applied.as_ref()),
        );
        batch.put_cf(
            cf,
            self.raft_key(KEY_MEMBERSHIP),
            encode_stored_membership(&self.membership),
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

    /// Cuts a snapshot at the applied position: the view is taken before this returns (no
    /// record is applied meanwhile: openraft calls it from the state machine's task), the rows
    /// are written by the snapshot's own thread.
    async fn cut_snapshot(&self) -> PendingSnapshot {
        let snapshot_id = match self.applied {
            Some(applied) => format!("{}-{}-{}", self.partition, applied.leader_id, applied.index),
            None => format!("{}-empty", self.partition),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        self.snapshots
            .cut(
                self.db.clone(),
                meta,
                RocksDbStore::snapshot_tables(&self.range),
            )
            .await
    }
}

fn storage_failure(err: crate::StorageError) -> openraft::StorageError<u64> {
    io(StorageIOError::write_state_machine(&std::io::Error::other(
        err.0,
    )))
}

impl RaftStateMachine<PartitionTypes> for PartitionStateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, Membership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<()>>
    where
        I: IntoIterator<Item = Entry<PartitionTypes>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The records are applied, and their batch written, on the blocking pool: applying
        // reads the tables, and neither reads nor writes of RocksDB belong on the runtime's
        // worker threads.
        let entries: Vec<Entry<PartitionTypes>> = entries.into_iter().collect();
        let store = self.store.clone();
        let start = *self.range.start();
        let applied = reprise_rocksdb::blocking(move || {
            let mut transaction = store.transaction(start);
            let mut actions = Vec::new();
            let mut position = None;
            let mut membership = None;
            for entry in &entries {
                position = Some(entry.log_id);
                match &entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(batch) => {
                        let ctx = ApplyContext {
                            now: batch.proposed_at,
                        };
                        for record in &batch.records {
                            actions.extend(apply(&mut transaction, record, ctx)?);
                        }
                    }
                    EntryPayload::Membership(changed) => {
                        membership =
                            Some(StoredMembership::new(Some(entry.log_id), changed.clone()));
                    }
                }
            }
            let batch = transaction.into_batch()?;
            Ok::<_, crate::StorageError>((batch, actions, position, membership, entries.len()))
        })
        .await;
        let (mut batch, actions, position, membership, count) = applied.map_err(storage_failure)?;
        if position.is_some() {
            self.applied = position;
        }
        if let Some(membership) = membership {
            self.membership = membership;
        }
        self.record_position(&mut batch)?;
        let db = self.db.clone();
        reprise_rocksdb::blocking(move || db.write(batch))
            .await
            .map_err(|e| io(StorageIOError::write_state_machine(&e)))?;
        // Actions only once their writes are in the database: an invoker reading the journal
        // for an `Invoke` must find what the record wrote.
        if !actions.is_empty() {
            // Nobody listening means the partition is shutting down; nothing to carry out.
            let _ = self.actions.send(actions);
        }
        Ok(vec![(); count])
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder::new(self.cut_snapshot().await)
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<tokio::fs::File>> {
        self.snapshots.receive().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> StorageResult<()> {
        let previous = (self.applied, self.membership.clone());
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let mut finish = WriteBatch::default();
        let positioned = self.record_position(&mut finish);
        let installed = match positioned {
            Ok(()) => {
                let plan = self.install_plan(finish);
                self.snapshots
                    .install(self.db.clone(), meta, snapshot, plan)
                    .await
            }
            Err(err) => Err(err),
        };
        if installed.is_err() {
            (self.applied, self.membership) = previous;
        }
        installed
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<PartitionTypes>>> {
        // The kept file: nothing is built here, so a start costs a header read.
        self.snapshots.current().await
    }
}
