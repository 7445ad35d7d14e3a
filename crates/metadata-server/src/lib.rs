//! The metadata server: a replicated, versioned key-value store for cluster metadata (the
//! service schema, the partition table, the node table). It is an openraft group whose log and
//! state machine live in one RocksDB under `<node-dir>/metadata-server/`. Every write is a
//! compare-and-set on the key's version ([`Precondition`]), checked in log order by the state
//! machine, so concurrent writers cannot overwrite each other unseen.
//!
//! Every reader and writer goes through [`MetadataClient`] (`get`, `put`, `delete`, `watch`,
//! and the membership calls), on a member or on any other node: it talks to the local member
//! when that leads and to the leader over the node channel otherwise. The group's members talk
//! raft over the node channel ([`reprise_net::RaftTransport`]); [`metadata_service`] answers
//! other nodes' calls.

mod client;
mod codec;
#[cfg(test)]
mod conformance;
mod service;
mod state_machine;
pub mod types;

pub use client::{Member, Members, MetadataClient};
pub use service::{MetadataSlot, metadata_service};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Raft, SnapshotPolicy};
use reprise_net::{Connections, RaftEndpoint, RaftTransport};
use rocksdb::DB;

use client::Local;
use reprise_raft_storage::{LogStore, LogStoreConfig, SnapshotDir};
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

/// The largest value the store takes: metadata is small, and every member keeps all of it.
pub const MAX_VALUE_SIZE: usize = 16 * 1024 * 1024;

/// The raft group's name on the node channel.
pub const GROUP: &str = "metadata";

fn proto_members(members: &Members) -> reprise_net::proto::MembersResponse {
    reprise_net::proto::MembersResponse {
        members: members
            .members
            .iter()
            .map(|m| reprise_net::proto::Member {
                id: u32::try_from(m.id).unwrap_or(0),
                address: m.address.clone(),
                voter: m.voter,
            })
            .collect(),
        leader: members
            .leader
            .and_then(|l| u32::try_from(l).ok())
            .unwrap_or(0),
    }
}

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
    #[error("the metadata store refused the request: {0}")]
    Refused(String),
}

/// Where and as whom to run the metadata server.
#[derive(Clone)]
pub struct MetadataServerOptions {
    /// The node directory; the store lives in `metadata-server/` inside it.
    pub node_dir: PathBuf,
    /// This node's plain id: its member id in the metadata group.
    pub member_id: u64,
    /// This node's advertised address.
    pub address: String,
    pub cluster_name: String,
    /// The node's connections to its peers (raft traffic, forwarded calls).
    pub connections: Connections,
    /// Node ports of metadata members to ask when this member cannot answer itself
    /// (`metadata-client.addresses`).
    pub peers: Vec<String>,
    /// Where the node's `Metadata` service finds this member.
    pub slot: MetadataSlot,
    /// A snapshot is cut once the commands applied since the last one hold this many bytes
    /// (besides every 1 000 entries), so the log, and with it the disk, stays bounded by size.
    pub snapshot_after_bytes: u64,
}

impl MetadataServerOptions {
    /// The default of [`snapshot_after_bytes`](Self::snapshot_after_bytes): 32 MiB.
    pub const SNAPSHOT_AFTER_BYTES: u64 = 32 * 1024 * 1024;
}

/// How often the size of the log since the last snapshot is looked at.
const SNAPSHOT_CHECK: Duration = Duration::from_millis(500);

/// A running metadata server. Stop it with [`MetadataServer::shutdown`].
pub struct MetadataServer {
    raft: Raft<types::TypeConfig>,
    shared: Arc<SharedState>,
    member_id: u64,
    address: String,
    db: Arc<DB>,
    connections: Connections,
    peers: Vec<String>,
    slot: MetadataSlot,
    /// Cuts snapshots by size; aborted at shutdown.
    snapshots_by_size: tokio::task::JoinHandle<()>,
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
            // Kept after a snapshot for followers that lag a little; with values of up to
            // 16 MiB more would undo the bound that snapshots by size give the log.
            max_in_snapshot_log_to_keep: 16,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetadataError::Config(e.to_string()))?;
        let raft = Raft::new(
            options.member_id,
            Arc::new(config),
            RaftTransport::new(GROUP, options.connections.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| MetadataError::Storage(e.to_string()))?;
        options.slot.set(Some(Local {
            raft: raft.clone(),
            shared: shared.clone(),
        }));
        let snapshots_by_size = tokio::spawn(snapshot_by_size(
            raft.clone(),
            shared.clone(),
            options.snapshot_after_bytes,
        ));
        Ok(Self {
            raft,
            shared,
            member_id: options.member_id,
            address: options.address,
            db,
            connections: options.connections,
            peers: options.peers,
            slot: options.slot,
            snapshots_by_size,
        })
    }

    /// Makes this node the only member of a new metadata group and waits until it leads. Does
    /// nothing when the group already exists (a restart).
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
            .map_err(|e| MetadataError::Unavailable(e.to_string()))?;
        // Until it leads, its client would not know it is a member yet.
        self.wait_for_leader().await
    }

    pub fn client(&self) -> MetadataClient {
        MetadataClient::with_local(
            Local {
                raft: self.raft.clone(),
                shared: self.shared.clone(),
            },
            self.connections.clone(),
            self.peers.clone(),
        )
    }

    /// Waits (up to a bound) until the group this member belongs to has a leader.
    pub async fn wait_for_leader(&self) -> Result<(), MetadataError> {
        Local {
            raft: self.raft.clone(),
            shared: self.shared.clone(),
        }
        .wait_for_leader()
        .await
    }

    /// The member as the node channel delivers raft traffic to it.
    pub fn raft_endpoint(&self) -> Arc<dyn RaftEndpoint> {
        Arc::new(self.raft.clone())
    }

    /// Stops the raft task and flushes the store to disk.
    pub async fn shutdown(self) -> Result<(), MetadataError> {
        self.slot.set(None);
        self.snapshots_by_size.abort();
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

/// Asks openraft for a snapshot whenever the commands applied since the last one hold more than
/// `limit` bytes: the entry-count policy alone would let a log of large values grow to
/// gigabytes before its first snapshot.
async fn snapshot_by_size(raft: Raft<types::TypeConfig>, shared: Arc<SharedState>, limit: u64) {
    loop {
        tokio::time::sleep(SNAPSHOT_CHECK).await;
        if shared.logged_bytes() > limit
            && let Err(err) = raft.trigger().snapshot().await
        {
            tracing::warn!(%err, "asking for a metadata snapshot");
            return;
        }
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
