//! The metadata server: a replicated, versioned key-value store for cluster metadata (the
//! service schema, the partition table, the node table). It is an openraft group whose log and
//! state machine live in one RocksDB under `<node-dir>/metadata-server/`. Every write is a
//! compare-and-set on the key's version ([`Precondition`]), checked in log order by the state
//! machine, so concurrent writers cannot overwrite each other unseen.
//!
//! Node-local readers and writers go through [`MetadataClient`] (`get`, `put`, `delete`,
//! `watch`). Today the group has one member; the multi-node work adds members and a network
//! transport without changing the client's API.

mod codec;
#[cfg(test)]
mod conformance;
mod state_machine;
pub mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use rocksdb::DB;
use tokio::sync::watch;

use reprise_raft_storage::{LogStore, LogStoreConfig, SingleMemberNetwork, SnapshotDir};
use state_machine::{CF_KV, CF_SM, SharedState, StateMachine};
pub use types::{Command, CommandResponse, Precondition, Version, VersionedValue};

pub(crate) use reprise_raft_storage::{StorageResult, storage_io};

const CF_LOGS: &str = "logs";
const CF_RAFT: &str = "raft";

/// The metadata group has its column families to itself: no key prefix.
pub(crate) fn log_store(db: Arc<DB>) -> LogStore<types::TypeConfig> {
    LogStore::new(
        db,
        LogStoreConfig {
            log_cf: CF_LOGS,
            raft_cf: CF_RAFT,
            prefix: Vec::new(),
        },
    )
}

/// How long a client call waits for the group to have a leader (after a start, an election).
const LEADER_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Open(#[from] reprise_rocksdb::OpenError),
    #[error("cannot open the metadata snapshot directory {}: {source}", path.display())]
    SnapshotDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata storage failed: {0}")]
    Storage(String),
    #[error("invalid raft configuration for the metadata store: {0}")]
    Config(String),
    #[error("`{key}` changed concurrently: expected {expected:?}, found version {current:?}")]
    PreconditionFailed {
        key: String,
        expected: Precondition,
        current: Option<Version>,
    },
    #[error("the metadata store is unavailable: {0}")]
    Unavailable(String),
}

/// Where and as whom to run the metadata server.
#[derive(Debug, Clone)]
pub struct MetadataServerOptions {
    /// The node directory; the store lives in `metadata-server/` inside it.
    pub node_dir: PathBuf,
    /// This node's plain id: its member id in the metadata group.
    pub member_id: u64,
    /// This node's advertised address.
    pub address: String,
    pub cluster_name: String,
}

/// A running metadata server. Stop it with [`MetadataServer::shutdown`].
pub struct MetadataServer {
    raft: Raft<types::TypeConfig>,
    shared: Arc<SharedState>,
    member_id: u64,
    address: String,
    db: Arc<DB>,
}

impl MetadataServer {
    pub const DIR: &'static str = "metadata-server";
    /// Under the node directory: the metadata group's snapshot files.
    pub const SNAPSHOT_DIR: &'static str = "metadata-snapshots";
    /// The storage format this build writes: 1 is the first binary one.
    pub const FORMAT_VERSION: u32 = 1;

    /// Opens the store and starts the raft group's task. Call
    /// [`provision_single_member`](Self::provision_single_member) on a new cluster.
    pub async fn start(options: MetadataServerOptions) -> Result<Self, MetadataError> {
        let path = options.node_dir.join(Self::DIR);
        let db = open_db(&path)?;
        let snapshots = open_snapshot_dir(options.node_dir.join(Self::SNAPSHOT_DIR))?;
        let shared = Arc::new(SharedState::default());
        let state_machine = StateMachine::open(db.clone(), shared.clone(), snapshots)
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        let log_store = log_store(db.clone());

        let config = openraft::Config {
            cluster_name: options.cluster_name.clone(),
            heartbeat_interval: 100,
            election_timeout_min: 200,
            election_timeout_max: 400,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetadataError::Config(e.to_string()))?;
        let raft = Raft::new(
            options.member_id,
            Arc::new(config),
            SingleMemberNetwork::new("metadata"),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| MetadataError::Storage(e.to_string()))?;
        Ok(Self {
            raft,
            shared,
            member_id: options.member_id,
            address: options.address,
            db,
        })
    }

    /// Makes this node the only member of a new metadata group. Does nothing when the group
    /// already exists (a restart).
    pub async fn provision_single_member(&self) -> Result<(), MetadataError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| MetadataError::Unavailable(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let members = BTreeMap::from([(
            self.member_id,
            BasicNode {
                addr: self.address.clone(),
            },
        )]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| MetadataError::Unavailable(e.to_string()))
    }

    pub fn client(&self) -> MetadataClient {
        MetadataClient {
            raft: self.raft.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Stops the raft task and flushes the store to disk.
    pub async fn shutdown(self) -> Result<(), MetadataError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        let db = self.db;
        reprise_rocksdb::blocking(move || reprise_rocksdb::close(&db))
            .await
            .map_err(|e| MetadataError::Storage(e.to_string()))
    }
}

fn open_db(path: &Path) -> Result<Arc<DB>, MetadataError> {
    Ok(reprise_rocksdb::open(&reprise_rocksdb::DbSpec {
        what: "metadata store",
        path,
        column_families: &[CF_LOGS, CF_RAFT, CF_KV, CF_SM],
        format_version: MetadataServer::FORMAT_VERSION,
    })?)
}

fn open_snapshot_dir(path: PathBuf) -> Result<SnapshotDir, MetadataError> {
    SnapshotDir::open(path.clone()).map_err(|source| MetadataError::SnapshotDir { path, source })
}

/// Reads and writes cluster metadata. Cheap to clone.
#[derive(Clone)]
pub struct MetadataClient {
    raft: Raft<types::TypeConfig>,
    shared: Arc<SharedState>,
}

impl MetadataClient {
    /// The current value of `key`, reflecting every write acknowledged before the call.
    pub async fn get(&self, key: &str) -> Result<Option<VersionedValue>, MetadataError> {
        self.wait_for_leader().await?;
        self.raft
            .ensure_linearizable()
            .await
            .map_err(|e| MetadataError::Unavailable(e.to_string()))?;
        Ok(self.shared.get(key))
    }

    /// Writes `value` under `key` if `precondition` holds, and returns the new version.
    pub async fn put(
        &self,
        key: &str,
        value: Bytes,
        precondition: Precondition,
    ) -> Result<Version, MetadataError> {
        let command = Command::Put {
            key: key.to_owned(),
            value,
            precondition,
        };
        match self.write(command).await? {
            CommandResponse::Applied {
                version: Some(version),
            } => Ok(version),
            other => Err(self.unexpected(key, precondition, other)),
        }
    }

    /// Removes `key` if `precondition` holds.
    pub async fn delete(&self, key: &str, precondition: Precondition) -> Result<(), MetadataError> {
        let command = Command::Delete {
            key: key.to_owned(),
            precondition,
        };
        match self.write(command).await? {
            CommandResponse::Applied { version: None } => Ok(()),
            other => Err(self.unexpected(key, precondition, other)),
        }
    }

    /// Follows the version of `key` (`None` while it has no value) as writes are applied.
    pub fn watch(&self, key: &str) -> watch::Receiver<Option<Version>> {
        self.shared.watch(key)
    }

    async fn write(&self, command: Command) -> Result<CommandResponse, MetadataError> {
        self.wait_for_leader().await?;
        match self.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(MetadataError::Unavailable(format!(
                    "this node is not the metadata leader (leader: {:?})",
                    forward.leader_id
                )))
            }
            Err(err) => Err(MetadataError::Unavailable(err.to_string())),
        }
    }

    fn unexpected(
        &self,
        key: &str,
        expected: Precondition,
        response: CommandResponse,
    ) -> MetadataError {
        match response {
            CommandResponse::PreconditionFailed { current } => MetadataError::PreconditionFailed {
                key: key.to_owned(),
                expected,
                current,
            },
            other => MetadataError::Storage(format!("unexpected response {other:?} to a write")),
        }
    }

    /// Waits (up to a bound) until the group has a leader and can serve reads and writes.
    pub async fn wait_for_leader(&self) -> Result<(), MetadataError> {
        self.raft
            .wait(Some(LEADER_WAIT))
            .metrics(|m| m.current_leader.is_some(), "a metadata leader")
            .await
            .map(|_| ())
            .map_err(|e| MetadataError::Unavailable(format!("no metadata leader: {e}")))
    }
}
