//! The metadata store's state machine: a map from key to [`VersionedValue`], applied from the
//! log deterministically (preconditions are checked here, in log order, so every replica
//! reaches the same answer). It is persisted in the `kv` column family together with the last
//! applied log id and membership (`sm`) in one batch per apply, so after a crash the store and
//! its applied position agree and openraft replays exactly the entries after it.
//!
//! Snapshots are files ([`SnapshotDir`]) cut from a RocksDB snapshot of `kv` taken at the
//! applied log id, so a snapshot's rows are always the state its log id names.
//!
//! Readers share the in-memory map through [`SharedState`]; watchers learn of new versions.

// openraft's storage traits fix `StorageError` as the error type; our helpers return it too.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageIOError, StoredMembership,
};
use reprise_raft_storage::codec::{
    decode_maybe_log_id, decode_stored_membership, encode_maybe_log_id, encode_stored_membership,
};
use reprise_raft_storage::{
    DecodeError, InstallPlan, PendingSnapshot, SnapshotBuilder, SnapshotDir, SnapshotTable,
};
use rocksdb::{DB, WriteBatch};
use tokio::sync::watch;

use crate::codec::{decode_value, encode_value};
use crate::types::{Command, CommandResponse, Precondition, TypeConfig, Version, VersionedValue};
use crate::{StorageResult, storage_io as io};

pub(crate) const CF_KV: &str = "kv";
pub(crate) const CF_SM: &str = "sm";

const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
/// Present while a snapshot is being installed.
const KEY_INSTALLING: &[u8] = b"installing";

type Membership = StoredMembership<u64, openraft::BasicNode>;

/// The applied key-value map, readable outside the raft task, with per-key watchers.
#[derive(Default)]
pub struct SharedState {
    values: RwLock<BTreeMap<String, VersionedValue>>,
    watchers: Mutex<HashMap<String, watch::Sender<Option<Version>>>>,
    /// Bytes of commands applied since the last snapshot was cut: what the log holds beyond
    /// the snapshot, which a size-driven snapshot bounds.
    logged_bytes: std::sync::atomic::AtomicU64,
}

impl SharedState {
    /// Bytes of commands applied since the last snapshot was cut.
    pub fn logged_bytes(&self) -> u64 {
        self.logged_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

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

    /// Applies changes that are durable: `Some` sets a key, `None` removes it.
    fn apply(&self, changes: BTreeMap<String, Option<VersionedValue>>) {
        let mut values = self.values.write().unwrap_or_else(|p| p.into_inner());
        for (key, value) in &changes {
            match value {
                Some(value) => values.insert(key.clone(), value.clone()),
                None => values.remove(key),
            };
        }
        drop(values);
        for (key, value) in changes {
            self.notify(&key, value.map(|v| v.version));
        }
    }

    /// Replaces the whole map (after a snapshot install) and tells every watcher.
    fn replace_all(&self, values: BTreeMap<String, VersionedValue>) {
        let mut current = self.values.write().unwrap_or_else(|p| p.into_inner());
        let old = std::mem::replace(&mut *current, values);
        let keys: Vec<String> = old.into_keys().chain(current.keys().cloned()).collect();
        drop(current);
        for key in keys {
            let version = self.get(&key).map(|v| v.version);
            self.notify(&key, version);
        }
    }
}

pub struct StateMachine {
    db: Arc<DB>,
    shared: Arc<SharedState>,
    snapshots: SnapshotDir,
    applied: Option<LogId<u64>>,
    membership: Membership,
}

fn read_err(e: impl std::fmt::Display) -> openraft::StorageError<u64> {
    io(StorageIOError::read_state_machine(&std::io::Error::other(
        e.to_string(),
    )))
}

impl StateMachine {
    /// Loads the persisted state, finishing first a snapshot install a crash interrupted.
    pub(crate) fn open(
        db: Arc<DB>,
        shared: Arc<SharedState>,
        snapshots: SnapshotDir,
    ) -> StorageResult<Self> {
        let mut machine = Self {
            db,
            shared,
            snapshots,
            applied: None,
            membership: Membership::default(),
        };
        if let Some(meta) = machine
            .snapshots
            .resume_install(&machine.db, machine.install_plan(WriteBatch::default()))
            .map_err(read_err)?
        {
            machine.applied = meta.last_log_id;
            machine.membership = meta.last_membership;
            let mut batch = WriteBatch::default();
            machine.record_position(&mut batch)?;
            machine
                .db
                .write_opt(batch, &reprise_raft_storage::synced())
                .map_err(|e| io(StorageIOError::write_state_machine(&e)))?;
            tracing::info!("finished a metadata snapshot install a restart interrupted");
        }
        machine.applied = machine.get_sm(KEY_APPLIED, decode_maybe_log_id)?.flatten();
        machine.membership = machine
            .get_sm(KEY_MEMBERSHIP, decode_stored_membership)?
            .unwrap_or_default();
        machine.shared.replace_all(machine.load_values()?);
        Ok(machine)
    }

    fn load_values(&self) -> StorageResult<BTreeMap<String, VersionedValue>> {
        let mut values = BTreeMap::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_KV)?, rocksdb::IteratorMode::Start)
        {
            let (key, value) = item.map_err(read_err)?;
            let key = String::from_utf8(key.to_vec())
                .map_err(|_| read_err("a metadata key is not UTF-8"))?;
            let value = decode_value(&value)
                .map_err(|e| read_err(format!("the metadata value of `{key}` is damaged: {e}")))?;
            values.insert(key, value);
        }
        Ok(values)
    }

    fn tables() -> Vec<SnapshotTable> {
        vec![SnapshotTable {
            id: 1,
            cf: CF_KV,
            from: Vec::new(),
            to: None,
        }]
    }

    fn install_plan(&self, finish: WriteBatch) -> InstallPlan {
        InstallPlan {
            tables: Self::tables(),
            marker: (CF_SM, KEY_INSTALLING.to_vec()),
            accept: Box::new(|_, key| std::str::from_utf8(key).is_ok()),
            finish,
        }
    }

    fn cf(&self, name: &str) -> StorageResult<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| read_err(format!("column family `{name}` is missing")))
    }

    fn get_sm<T>(
        &self,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> StorageResult<Option<T>> {
        self.db
            .get_cf(self.cf(CF_SM)?, key)
            .map_err(read_err)?
            .map(|bytes| {
                decode(&bytes).map_err(|e| {
                    read_err(format!(
                        "the metadata store's `{}` row is damaged: {e}",
                        String::from_utf8_lossy(key)
                    ))
                })
            })
            .transpose()
    }

    /// Adds the applied log id and membership to `batch`, so they commit with the data.
    fn record_position(&self, batch: &mut WriteBatch) -> StorageResult<()> {
        let sm = self.cf(CF_SM)?;
        batch.put_cf(sm, KEY_APPLIED, encode_maybe_log_id(self.applied.as_ref()));
        batch.put_cf(
            sm,
            KEY_MEMBERSHIP,
            encode_stored_membership(&self.membership),
        );
        Ok(())
    }

    /// Applies one command on top of the committed map and this batch's earlier `changes`.
    fn apply_command(
        &self,
        command: &Command,
        changes: &mut BTreeMap<String, Option<VersionedValue>>,
        batch: &mut WriteBatch,
    ) -> StorageResult<CommandResponse> {
        let key = command.key();
        let current = match changes.get(key) {
            Some(pending) => pending.as_ref().map(|v| v.version),
            None => self.shared.get(key).map(|v| v.version),
        };
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
                batch.put_cf(kv, key.as_bytes(), encode_value(&next));
                let version = next.version;
                changes.insert(key.to_owned(), Some(next));
                Some(version)
            }
            Command::Delete { .. } => {
                batch.delete_cf(kv, key.as_bytes());
                changes.insert(key.to_owned(), None);
                None
            }
        };
        Ok(CommandResponse::Applied { version })
    }

    async fn cut_snapshot(&self) -> PendingSnapshot {
        self.shared
            .logged_bytes
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match self.applied {
            Some(applied) => format!("{}-{}", applied.leader_id, applied.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        self.snapshots
            .cut(self.db.clone(), meta, Self::tables())
            .await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, Membership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut changes = BTreeMap::new();
        let mut batch = WriteBatch::default();
        let mut responses = Vec::new();
        for entry in entries {
            self.applied = Some(entry.log_id);
            let response = match &entry.payload {
                EntryPayload::Blank => CommandResponse::NoCommand,
                EntryPayload::Normal(command) => {
                    let size = match command {
                        Command::Put { key, value, .. } => key.len() + value.len(),
                        Command::Delete { key, .. } => key.len(),
                    };
                    self.shared.logged_bytes.fetch_add(
                        u64::try_from(size).unwrap_or(u64::MAX),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    self.apply_command(command, &mut changes, &mut batch)?
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                    CommandResponse::NoCommand
                }
            };
            responses.push(response);
        }
        self.record_position(&mut batch)?;
        // The commands were applied to the in-memory map; the write goes to the blocking pool.
        let db = self.db.clone();
        reprise_rocksdb::blocking(move || db.write(batch))
            .await
            .map_err(|e| io(StorageIOError::write_state_machine(&e)))?;
        // Readers see the changes only once they are in the database.
        self.shared.apply(changes);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder::new(self.cut_snapshot().await)
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<tokio::fs::File>> {
        self.snapshots.receive().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> StorageResult<()> {
        let previous = (self.applied, self.membership.clone());
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let mut finish = WriteBatch::default();
        let mut installed = self.record_position(&mut finish);
        if installed.is_ok() {
            let plan = self.install_plan(finish);
            installed = self
                .snapshots
                .install(self.db.clone(), meta, snapshot, plan)
                .await;
        }
        if let Err(err) = installed {
            (self.applied, self.membership) = previous;
            return Err(err);
        }
        let values = self.load_values()?;
        self.shared.replace_all(values);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        self.snapshots.current().await
    }
}
