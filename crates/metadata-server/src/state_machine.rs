//! The metadata store's state machine: a map from key to [`VersionedValue`], applied from the
//! log deterministically (preconditions are checked here, in log order, so every replica
//! reaches the same answer). It is persisted in the `kv` column family together with the last
//! applied log id and membership (`sm`) in one batch per apply, so after a crash the store and
//! its applied position agree and openraft replays exactly the entries after it.
//!
//! Readers share the in-memory map through [`SharedState`]; watchers learn of new versions.

// openraft's storage traits fix `StorageError` as the error type; our helpers return it too.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use rocksdb::{DB, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::types::{Command, CommandResponse, Precondition, TypeConfig, Version, VersionedValue};
use crate::{StorageResult, storage_io as io};

pub(crate) const CF_KV: &str = "kv";
pub(crate) const CF_SM: &str = "sm";

const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_SNAPSHOT: &[u8] = b"snapshot";

type Membership = StoredMembership<u64, openraft::BasicNode>;

/// The applied key-value map, readable outside the raft task, with per-key watchers.
#[derive(Default)]
pub struct SharedState {
    values: RwLock<BTreeMap<String, VersionedValue>>,
    watchers: Mutex<HashMap<String, watch::Sender<Option<Version>>>>,
}

impl SharedState {
    pub fn get(&self, key: &str) -> Option<VersionedValue> {
        // A poisoned lock means a panic mid-update elsewhere; the map itself is still whole
        // (updates are single inserts), so reading on is safe.
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        values.get(key).cloned()
    }

    pub fn watch(&self, key: &str) -> watch::Receiver<Option<Version>> {
        let current = self.get(key).map(|v| v.version);
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        watchers
            .entry(key.to_owned())
            .or_insert_with(|| watch::Sender::new(current))
            .subscribe()
    }

    fn notify(&self, key: &str, version: Option<Version>) {
        let watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = watchers.get(key) {
            sender.send_replace(version);
        }
    }

    fn replace_all(&self, values: BTreeMap<String, VersionedValue>) {
        let mut current = self.values.write().unwrap_or_else(|p| p.into_inner());
        *current = values;
    }

    fn snapshot(&self) -> BTreeMap<String, VersionedValue> {
        self.values
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What a snapshot holds: the whole map and where in the log it was taken.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    values: BTreeMap<String, VersionedValue>,
}

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    shared: Arc<SharedState>,
    applied: Option<LogId<u64>>,
    membership: Membership,
}

impl StateMachine {
    /// Loads the persisted state.
    pub(crate) fn open(db: Arc<DB>, shared: Arc<SharedState>) -> StorageResult<Self> {
        let mut machine = Self {
            db,
            shared,
            applied: None,
            membership: Membership::default(),
        };
        machine.applied = machine.get_sm(KEY_APPLIED)?.flatten();
        machine.membership = machine.get_sm(KEY_MEMBERSHIP)?.unwrap_or_default();
        let mut values = BTreeMap::new();
        let cf = machine.cf(CF_KV)?;
        for item in machine.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (key, value) = item.map_err(|e| io(StorageIOError::read_state_machine(&e)))?;
            let key = String::from_utf8(key.to_vec())
                .map_err(|e| io(StorageIOError::read_state_machine(&e)))?;
            let value = serde_json::from_slice(&value)
                .map_err(|e| io(StorageIOError::read_state_machine(&e)))?;
            values.insert(key, value);
        }
        machine.shared.replace_all(values);
        Ok(machine)
    }

    fn cf(&self, name: &str) -> StorageResult<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| {
            io(StorageIOError::read_state_machine(&std::io::Error::other(
                format!("column family `{name}` is missing"),
            )))
        })
    }

    fn get_sm<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        self.db
            .get_cf(self.cf(CF_SM)?, key)
            .map_err(|e| io(StorageIOError::read_state_machine(&e)))?
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|e| io(StorageIOError::read_state_machine(&e)))
    }

    /// Adds the applied log id and membership to `batch`, so they commit with the data.
    fn record_position(&self, batch: &mut WriteBatch) -> StorageResult<()> {
        let sm = self.cf(CF_SM)?;
        let write_err = |e: serde_json::Error| io(StorageIOError::write_state_machine(&e));
        batch.put_cf(
            sm,
            KEY_APPLIED,
            serde_json::to_vec(&self.applied).map_err(write_err)?,
        );
        batch.put_cf(
            sm,
            KEY_MEMBERSHIP,
            serde_json::to_vec(&self.membership).map_err(write_err)?,
        );
        Ok(())
    }

    /// Applies one command to `values` (the working copy) and records the change in `batch`.
    fn apply_command(
        &self,
        command: &Command,
        values: &mut BTreeMap<String, VersionedValue>,
        batch: &mut WriteBatch,
        changed: &mut Vec<(String, Option<Version>)>,
    ) -> StorageResult<CommandResponse> {
        let key = command.key();
        let current = values.get(key).map(|v| v.version);
        let precondition = match command {
            Command::Put { precondition, .. } | Command::Delete { precondition, .. } => {
                *precondition
            }
        };
        let holds = match precondition {
            Precondition::None => true,
            Precondition::DoesNotExist => current.is_none(),
            Precondition::MatchesVersion(expected) => current == Some(expected),
        };
        if !holds {
            return Ok(CommandResponse::PreconditionFailed { current });
        }
        let kv = self.cf(CF_KV)?;
        let version = match command {
            Command::Put { value, .. } => {
                let next = VersionedValue {
                    version: current.map_or(1, |v| v.saturating_add(1)),
                    value: value.clone(),
                };
                let bytes = serde_json::to_vec(&next)
                    .map_err(|e| io(StorageIOError::write_state_machine(&e)))?;
                batch.put_cf(kv, key.as_bytes(), bytes);
                let version = next.version;
                values.insert(key.to_owned(), next);
                Some(version)
            }
            Command::Delete { .. } => {
                batch.delete_cf(kv, key.as_bytes());
                values.remove(key);
                None
            }
        };
        changed.push((key.to_owned(), version));
        Ok(CommandResponse::Applied { version })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let snapshot_id = match self.applied {
            Some(applied) => format!("{}-{}", applied.leader_id, applied.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let data = SnapshotData {
            meta: meta.clone(),
            values: self.shared.snapshot(),
        };
        let bytes =
            serde_json::to_vec(&data).map_err(|e| io(StorageIOError::write_snapshot(None, &e)))?;
        // The snapshot lets openraft purge the log, so it must be durable first.
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .put_cf_opt(self.cf(CF_SM)?, KEY_SNAPSHOT, &bytes, &options)
            .map_err(|e| io(StorageIOError::write_snapshot(None, &e)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, Membership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut values = self.shared.snapshot();
        let mut batch = WriteBatch::default();
        let mut changed = Vec::new();
        let mut responses = Vec::new();
        for entry in entries {
            self.applied = Some(entry.log_id);
            let response = match &entry.payload {
                EntryPayload::Blank => CommandResponse::NoCommand,
                EntryPayload::Normal(command) => {
                    self.apply_command(command, &mut values, &mut batch, &mut changed)?
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                    CommandResponse::NoCommand
                }
            };
            responses.push(response);
        }
        self.record_position(&mut batch)?;
        self.db
            .write(batch)
            .map_err(|e| io(StorageIOError::write_state_machine(&e)))?;
        self.shared.replace_all(values);
        for (key, version) in changed {
            self.shared.notify(&key, version);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let data: SnapshotData = serde_json::from_slice(&bytes)
            .map_err(|e| io(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
        let kv = self.cf(CF_KV)?;
        let sm = self.cf(CF_SM)?;
        let mut batch = WriteBatch::default();
        for item in self.db.iterator_cf(kv, rocksdb::IteratorMode::Start) {
            let (key, _) = item.map_err(|e| io(StorageIOError::read_state_machine(&e)))?;
            batch.delete_cf(kv, key);
        }
        for (key, value) in &data.values {
            let bytes = serde_json::to_vec(value)
                .map_err(|e| io(StorageIOError::write_state_machine(&e)))?;
            batch.put_cf(kv, key.as_bytes(), bytes);
        }
        batch.put_cf(sm, KEY_SNAPSHOT, &bytes);
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.record_position(&mut batch)?;
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| io(StorageIOError::write_state_machine(&e)))?;
        let changed: Vec<String> = self
            .shared
            .snapshot()
            .keys()
            .chain(data.values.keys())
            .cloned()
            .collect();
        self.shared.replace_all(data.values);
        for key in changed {
            let version = self.shared.get(&key).map(|v| v.version);
            self.shared.notify(&key, version);
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Some(bytes) = self
            .db
            .get_cf(self.cf(CF_SM)?, KEY_SNAPSHOT)
            .map_err(|e| io(StorageIOError::read_snapshot(None, &e)))?
        else {
            return Ok(None);
        };
        let data: SnapshotData = serde_json::from_slice(&bytes)
            .map_err(|e| io(StorageIOError::read_snapshot(None, &e)))?;
        Ok(Some(Snapshot {
            meta: data.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
