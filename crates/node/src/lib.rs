//! A Reprise node: it owns the node directory (`<base-dir>/<node-name>/`) and its exclusive
//! lock, the node's local RocksDB store and its identity, the node's listeners (node, ingress,
//! admin ports) and its readiness. It composes the roles the configuration asks for and runs
//! them through an orderly lifecycle: [`Node::build`] claims the directory and binds every port
//! before any data is opened; [`Node::run`] opens storage, reports ready, and on shutdown stops
//! accepting, drains in-flight work within `shutdown-timeout`, and closes storage.
//!
//! It does not parse arguments, handle signals or set up logging: that is the server binary's.

pub mod cluster;
mod data_dir;
mod health;
mod http_server;
mod identity;
mod listeners;
mod liveness;
mod local_store;
mod net;
mod node_service;
mod start;

use std::time::Duration;

use reprise_admin::AdminHandle;
use reprise_ingress::IngressHandle;
use reprise_metadata_server::MetadataError;
use reprise_node_config::{Configuration, Role};
use reprise_worker::WorkerError;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use cluster::ClusterError;
pub use data_dir::{DataDir, DataDirError};
pub use health::{Health, NodeStatus};
pub use identity::{IdentityError, NodeIdentity};
pub use listeners::{BindError, BoundAddresses, ListenerKind};
pub use liveness::status_of;
pub use local_store::{LocalStore, StoreError};

use identity::Start;
use listeners::BoundListener;
use net::Net;
use start::{Apis, Roles, start_roles};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the {listener} listener stopped unexpectedly: {reason}")]
    ListenerFailed {
        listener: &'static str,
        reason: String,
    },
    #[error("a storage task of the node failed: {0}")]
    StorageTask(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot set up the HTTP client for deployments: {0}")]
    ServiceClient(std::io::Error),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("the node was stopped while it waited to be provisioned")]
    StoppedBeforeProvisioning,
}

/// A node that has claimed its directory and bound its ports, ready to [`run`](Node::run).
pub struct Node {
    config: Configuration,
    data_dir: DataDir,
    listeners: Vec<BoundListener>,
    addresses: BoundAddresses,
    health: Health,
}

impl Node {
    /// Locks the node directory and binds every listener. Touches no data besides the lock
    /// file, so a node that fails here leaves its directory as it was.
    pub fn build(mut config: Configuration) -> Result<Node, NodeError> {
        // The ingress hands calls to partitions of its own node until calls are forwarded
        // between nodes (the partitions-across-the-cluster issue).
        if config.roles.contains(Role::Ingress) && !config.roles.contains(Role::Worker) {
            return Err(NodeError::Unsupported(format!(
                "the {} role needs the {} role on the same node: calls are not forwarded \
                 between nodes yet; add `{}` to `roles`",
                Role::Ingress,
                Role::Worker,
                Role::Worker
            )));
        }
        // Before any store is opened: every one of them draws on this budget.
        let budget =
            usize::try_from(config.rocksdb_total_memory_size.as_u64()).unwrap_or(usize::MAX);
        if !reprise_rocksdb::set_memory_budget(budget, config.rocksdb_total_memtables_ratio) {
            warn!("a RocksDB memory budget was set already in this process; keeping it");
        }
        let data_dir = DataDir::lock(&config.node_dir())?;
        let listeners = listeners::bind_all(&config)?;
        let addresses =
            listeners::bound_addresses(&listeners).map_err(|source| NodeError::WriteFile {
                path: data_dir.path().display().to_string(),
                source,
            })?;
        // A node port the OS picked is only known now; other nodes must reach that one.
        if config.advertised_address.is_none() && config.bind_address.port() == 0 {
            let ip = if addresses.node.ip().is_unspecified() {
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            } else {
                addresses.node.ip()
            };
            config.advertised_address = Some(format!(
                "http://{}",
                std::net::SocketAddr::new(ip, addresses.node.port())
            ));
        }
        Ok(Node {
            config,
            data_dir,
            listeners,
            addresses,
            health: Health::default(),
        })
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The addresses actually bound (port 0 replaced by the port the OS chose).
    pub fn addresses(&self) -> &BoundAddresses {
        &self.addresses
    }

    /// Runs the node until `shutdown` is cancelled, then stops it in order. Returns once
    /// storage is closed; the directory lock is released when this returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), NodeError> {
        let Node {
            config,
            data_dir,
            listeners,
            addresses,
            health,
        } = self;

        // Ingress stops first so no new work arrives while the rest winds down; the admin and
        // node ports keep answering (503) until storage is closed.
        let stop_ingress = CancellationToken::new();
        let stop_control = CancellationToken::new();
        let admin = AdminHandle::default();
        let ingress = IngressHandle::default();
        let net = Net::new(&config, &health);
        let mut ingress_tasks = JoinSet::new();
        let mut control_tasks = JoinSet::new();
        for BoundListener { kind, listener } in listeners {
            let (router, stop, tasks) = match kind {
                ListenerKind::Node => (
                    health.router("/health").merge(net.router()),
                    &stop_control,
                    &mut control_tasks,
                ),
                ListenerKind::Admin => (
                    reprise_admin::HEALTH_PATHS
                        .iter()
                        .fold(health.router("/health"), |router, path| {
                            router.merge(health.router(path))
                        })
                        .merge(reprise_admin::router(admin.clone()))
                        .fallback(reprise_admin::not_found),
                    &stop_control,
                    &mut control_tasks,
                ),
                ListenerKind::Ingress => (
                    health
                        .router("/restate/health")
                        .merge(reprise_ingress::router(ingress.clone())),
                    &stop_ingress,
                    &mut ingress_tasks,
                ),
            };
            let stop = stop.clone();
            let limits = http_server::HttpLimits::from_options(&config.http);
            tasks.spawn(async move {
                (
                    kind,
                    http_server::serve(listener, router, limits, stop).await,
                )
            });
        }
        addresses
            .write(data_dir.path())
            .map_err(|source| NodeError::WriteFile {
                path: data_dir
                    .path()
                    .join(BoundAddresses::FILE)
                    .display()
                    .to_string(),
                source,
            })?;
        info!(
            node = %addresses.node,
            ingress = ?addresses.ingress,
            admin = ?addresses.admin,
            "listening"
        );

        let startup = match open_storage(config.clone()).await {
            Ok((store, start)) => {
                // What the admin API's `/version` names as the ingress endpoint.
                let ingress_endpoint = addresses.ingress.map(|addr| format!("http://{addr}/"));
                let apis = Apis {
                    admin: &admin,
                    ingress: &ingress,
                    ingress_endpoint,
                };
                let started = start_roles(&config, &store, start, &net, apis, &shutdown).await;
                match started {
                    Ok((identity, roles)) => Ok((store, identity, roles)),
                    Err(err) => {
                        close_store(store).await;
                        Err(err)
                    }
                }
            }
            Err(err) => Err(err),
        };
        let (
            store,
            Roles {
                metadata,
                worker,
                liveness,
            },
        ) = match startup {
            Ok((store, identity, roles)) => {
                info!(
                    node_id = %identity.node_id,
                    node_name = %identity.node_name,
                    cluster = %identity.cluster_name,
                    data_dir = %data_dir.path().display(),
                    "node ready"
                );
                health.set_identity(identity);
                health.set(NodeStatus::Ready);
                (store, roles)
            }
            Err(err) => {
                stop_ingress.cancel();
                stop_control.cancel();
                let deadline = Instant::now() + Duration::from_secs(5);
                drain(&mut ingress_tasks, deadline).await;
                drain(&mut control_tasks, deadline).await;
                BoundAddresses::remove(data_dir.path());
                // Stopped while it waited to be provisioned: nothing had started.
                if matches!(err, NodeError::StoppedBeforeProvisioning) {
                    info!("stopped");
                    return Ok(());
                }
                return Err(err);
            }
        };

        let listener_failure = tokio::select! {
            _ = shutdown.cancelled() => None,
            Some(ended) = ingress_tasks.join_next() => Some(ended),
            Some(ended) = control_tasks.join_next() => Some(ended),
        };

        // The shutdown budget: in-flight requests get three quarters of `shutdown-timeout`
        // and are abandoned after that (they are the caller's to retry; nothing acknowledged
        // is lost), which leaves the rest for closing storage within the timeout.
        // State first, then the log line: whoever sees "stopping" also sees the 503.
        health.set(NodeStatus::Stopping);
        info!("stopping");
        let started = Instant::now();
        let budget = config.shutdown_timeout.as_duration();
        let within_budget = |share: f64| {
            // A configured timeout can be absurdly long; never overflow the clock for it.
            started
                .checked_add(budget.mul_f64(share))
                .unwrap_or_else(|| started + Duration::from_secs(86_400 * 365))
        };
        stop_ingress.cancel();
        drain(&mut ingress_tasks, within_budget(0.75)).await;

        liveness.0.cancel();
        if let Err(err) = liveness.1.await {
            error!(%err, "the heartbeat task failed");
        }
        if let Some(worker) = worker {
            worker.shutdown().await;
        }

        net.groups.remove(reprise_metadata_server::GROUP);
        if let Some(metadata) = metadata
            && let Err(err) = metadata.shutdown().await
        {
            error!(%err, "stopping the metadata server");
        }
        let closed = tokio::task::spawn_blocking(move || store.close()).await;
        stop_control.cancel();
        drain(&mut control_tasks, within_budget(0.875)).await;
        BoundAddresses::remove(data_dir.path());
        drop(data_dir);

        closed
            .map_err(|err| NodeError::StorageTask(err.to_string()))?
            .map_err(NodeError::from)?;
        if let Some(ended) = listener_failure {
            return Err(listener_failed(ended));
        }
        info!("stopped");
        Ok(())
    }
}

async fn close_store(store: LocalStore) {
    match tokio::task::spawn_blocking(move || store.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(%err, "closing the local store after a failed start"),
        Err(err) => warn!(%err, "closing the local store after a failed start"),
    }
}

/// Opens the local store and reads what this start is. Blocking IO, so it runs off the async
/// workers; a failure closes whatever was opened.
async fn open_storage(config: Configuration) -> Result<(LocalStore, Start), NodeError> {
    let task = tokio::task::spawn_blocking(move || {
        let store = LocalStore::open(&config.node_dir())?;
        match identity::load(&store, &config) {
            Ok(start) => Ok((store, start)),
            Err(err) => {
                if let Err(close_err) = store.close() {
                    warn!(%close_err, "closing the local store after a failed start");
                }
                Err(NodeError::from(err))
            }
        }
    });
    task.await
        .map_err(|err| NodeError::StorageTask(err.to_string()))?
}

type ListenerEnded = Result<(ListenerKind, std::io::Result<()>), tokio::task::JoinError>;

fn listener_failed(ended: ListenerEnded) -> NodeError {
    match ended {
        Ok((kind, result)) => NodeError::ListenerFailed {
            listener: kind.name(),
            reason: match result {
                Ok(()) => "it closed".to_owned(),
                Err(err) => err.to_string(),
            },
        },
        Err(err) => NodeError::ListenerFailed {
            listener: "unknown",
            reason: err.to_string(),
        },
    }
}

/// Waits for every task of `tasks` until `deadline`, then aborts the rest (and with them their
/// connections).
async fn drain(tasks: &mut JoinSet<(ListenerKind, std::io::Result<()>)>, deadline: Instant) {
    let all_done = async {
        while let Some(ended) = tasks.join_next().await {
            match ended {
                Ok((_, Ok(()))) => {}
                Ok((kind, Err(err))) => error!(listener = kind.name(), %err, "listener failed"),
                Err(err) => error!(%err, "listener task failed"),
            }
        }
    };
    if tokio::time::timeout_at(deadline, all_done).await.is_err() {
        warn!("shutdown budget used up: abandoning in-flight requests");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}
