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
mod node_service;

use std::time::Duration;

use reprise_admin::{AdminHandle, AdminState};
use reprise_ingress::{IngressHandle, IngressState};
use reprise_metadata_server::{
    MetadataClient, MetadataError, MetadataServer, MetadataServerOptions, MetadataSlot,
};
use reprise_net::{ConnectionOptions, Connections, NetIdentity, RaftGroups};
use reprise_node_config::{Configuration, MetadataServerState, Role, WorkerState};
use reprise_partition_processor::Retention;
use reprise_schema::{SchemaStore, SchemaView};
use reprise_service_client::{ServiceClient, ServiceClientOptions};
use reprise_types::{MillisSinceEpoch, PlainNodeId};
use reprise_worker::{Worker, WorkerError, WorkerOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use cluster::ClusterError;
pub use data_dir::{DataDir, DataDirError};
pub use health::{Health, NodeStatus};
pub use identity::{IdentityError, NodeIdentity};
pub use listeners::{BindError, BoundAddresses, ListenerKind};
pub use local_store::{LocalStore, StoreError};

use identity::Start;
use listeners::BoundListener;

/// How long a start waits for this node to lead its partitions.
const PARTITION_START_WAIT: Duration = Duration::from_secs(30);

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

/// The roles running on storage, stopped in reverse order of their start.
struct Roles {
    metadata: Option<MetadataServer>,
    worker: Option<Worker>,
    /// The heartbeat task and what stops it.
    liveness: (CancellationToken, tokio::task::JoinHandle<()>),
}

/// The node channel's state: who this node is on it, its connections to peers, the raft groups
/// and metadata member it delivers traffic to. The services exist from the first moment the
/// node port is served; they answer `unavailable` until what they need has started.
struct Net {
    identity: NetIdentity,
    connections: Connections,
    groups: RaftGroups,
    metadata: MetadataSlot,
    liveness: liveness::Liveness,
    provisioning: node_service::ProvisionSlot,
    serving: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
    config_toml: String,
    default_num_partitions: u32,
    health: Health,
    name: String,
    address: String,
    roles: Vec<String>,
}

impl Net {
    fn new(config: &Configuration, health: &Health) -> Self {
        let identity = NetIdentity::new(config.cluster_name.clone());
        Self {
            connections: Connections::new(identity.clone(), ConnectionOptions::default()),
            identity,
            groups: RaftGroups::default(),
            metadata: MetadataSlot::default(),
            liveness: liveness::Liveness::default(),
            provisioning: node_service::ProvisionSlot::default(),
            serving: Default::default(),
            config_toml: config.to_toml().unwrap_or_default(),
            default_num_partitions: config.default_num_partitions,
            health: health.clone(),
            name: config.node_name.clone(),
            address: config.advertised_address(),
            roles: config.roles.iter().map(|role| role.to_string()).collect(),
        }
    }

    /// The gRPC services of the node port.
    fn router(&self) -> axum::Router {
        tonic::service::Routes::new(reprise_net::raft_service(
            self.identity.clone(),
            self.groups.clone(),
        ))
        .add_service(reprise_metadata_server::metadata_service(
            self.identity.clone(),
            self.metadata.clone(),
        ))
        .add_service(node_service::node_service(node_service::NodeService {
            identity: self.identity.clone(),
            health: self.health.clone(),
            liveness: self.liveness.clone(),
            provisioning: self.provisioning.clone(),
            serving: self.serving.clone(),
            config_toml: self.config_toml.clone(),
            default_num_partitions: self.default_num_partitions,
            name: self.name.clone(),
            address: self.address.clone(),
            roles: self.roles.clone(),
        }))
        .into_axum_router()
    }
}

/// The APIs a start hands their state to once what they serve has started.
struct Apis<'a> {
    admin: &'a AdminHandle,
    ingress: &'a IngressHandle,
    /// What the admin API's `/version` names as the ingress endpoint.
    ingress_endpoint: Option<String>,
}

/// Starts the roles that need storage, in the order a cluster needs them: the node's place in
/// the cluster (provisioning a new one, joining one, or restarting as a known node), the
/// metadata member and the node's entry in the node table, the worker's partitions (waiting
/// until this node leads them, so the node is ready only when it can serve), and the admin
/// and ingress APIs on top of them.
async fn start_roles(
    config: &Configuration,
    store: &LocalStore,
    start: Start,
    net: &Net,
    apis: Apis<'_>,
    shutdown: &CancellationToken,
) -> Result<(NodeIdentity, Roles), NodeError> {
    let Apis {
        admin,
        ingress,
        ingress_endpoint,
    } = apis;
    let address = config.advertised_address();
    let peers = config.metadata_client.addresses.clone();
    let remote = || MetadataClient::remote(net.connections.clone(), peers.clone());
    let mut num_partitions = config.default_num_partitions;
    let (start, mut order) = match start {
        Start::AwaitProvision => {
            let orders = net.provisioning.open();
            info!("waiting to be provisioned: run `reprisectl provision` against this node");
            let order = tokio::select! {
                order = orders => order.map_err(|_| NodeError::StoppedBeforeProvisioning)?,
                _ = shutdown.cancelled() => return Err(NodeError::StoppedBeforeProvisioning),
            };
            num_partitions = order.num_partitions;
            info!(num_partitions, "provisioning the cluster as asked");
            (Start::Provision, Some(order))
        }
        start => (start, None),
    };
    let provisioning = matches!(start, Start::Provision);

    // The plain id comes first: it is the node's member id in the metadata group.
    let mut known_fingerprint = None;
    let (plain_id, legacy_nodes, joined) = match start {
        // Turned into `Provision` above once the order came.
        Start::Provision | Start::AwaitProvision => (
            identity::forced_id(config).unwrap_or(PlainNodeId::MIN),
            None,
            None,
        ),
        Start::Known {
            identity,
            legacy_nodes,
        } => {
            known_fingerprint = Some(identity.fingerprint);
            (identity.node_id.id(), legacy_nodes, None)
        }
        Start::Join => {
            info!(through = ?peers, "joining the cluster");
            let client = remote();
            until_available(|| {
                cluster::ensure_name_free(&client, &net.connections, &config.node_name)
            })
            .await?;
            let (me, _) = until_available(|| {
                cluster::register_start(
                    &client,
                    &config.node_name,
                    &address,
                    &config.roles,
                    identity::forced_id(config),
                )
            })
            .await?;
            info!(node_id = %me, "joined the cluster");
            (me.id(), None, Some(me))
        }
    };

    // Known by its plain id from now on (the generation of this start follows once the node
    // table records it): a restarting member must take raft traffic to help form a quorum.
    net.identity
        .set_me(joined.unwrap_or_else(|| plain_id.with_generation(0)));
    let metadata = if config.roles.contains(Role::MetadataServer) {
        let server = MetadataServer::start(MetadataServerOptions {
            node_dir: config.node_dir(),
            member_id: u64::from(plain_id.as_u32()),
            address: address.clone(),
            cluster_name: config.cluster_name.clone(),
            connections: net.connections.clone(),
            peers: peers.clone(),
            slot: net.metadata.clone(),
            snapshot_after_bytes: MetadataServerOptions::SNAPSHOT_AFTER_BYTES,
        })
        .await?;
        net.groups
            .register(reprise_metadata_server::GROUP, server.raft_endpoint());
        Some(server)
    } else {
        None
    };
    let mut worker = None;
    let started = async {
        let client = match &metadata {
            Some(server) => {
                if provisioning {
                    server.provision_single_member().await?;
                }
                server.client()
            }
            None => remote(),
        };
        if provisioning {
            cluster::provision(
                &client,
                &identity::first_nodes(config)?,
                MillisSinceEpoch::now(),
            )
            .await?;
        }
        if let Some(legacy) = legacy_nodes
            && cluster::load(&client).await?.is_none()
        {
            info!("moving the node table from the local store into the metadata store");
            cluster::provision(&client, &legacy, MillisSinceEpoch::now()).await?;
        }
        let marker = until_available(|| cluster::marker(&client, &config.cluster_name)).await?;
        // The same name is not the same cluster: a node keeps to the one it joined.
        if let Some(mine) = known_fingerprint
            && mine != 0
            && marker.fingerprint != 0
            && mine != marker.fingerprint
        {
            return Err(ClusterError::OtherCluster {
                name: config.cluster_name.clone(),
                mine,
                theirs: marker.fingerprint,
            }
            .into());
        }
        let me = match joined {
            Some(me) => me,
            // A restarting member may have to wait for the others to form a quorum again.
            None => {
                until_available(|| {
                    cluster::ensure_name_free(&client, &net.connections, &config.node_name)
                })
                .await?;
                until_available(|| {
                    cluster::register_start(
                        &client,
                        &config.node_name,
                        &address,
                        &config.roles,
                        identity::forced_id(config),
                    )
                })
                .await?
                .0
            }
        };
        net.identity.set_me(me);
        if let Some(order) = order.take() {
            order.done(Ok(me));
        }
        let identity = NodeIdentity {
            node_name: config.node_name.clone(),
            cluster_name: config.cluster_name.clone(),
            node_id: me,
            provisioned_at: marker.provisioned_at,
            fingerprint: marker.fingerprint,
        };
        let (saving, saved) = (store.clone(), identity.clone());
        tokio::task::spawn_blocking(move || identity::save(&saving, &saved))
            .await
            .map_err(|err| NodeError::StorageTask(err.to_string()))??;

        if metadata.is_some() {
            join_metadata_group(config, &client, me.id(), &address, provisioning).await?;
        }
        let service_client = ServiceClient::new(ServiceClientOptions::default())
            .map_err(NodeError::ServiceClient)?;
        let schema = SchemaStore::new(client.clone());
        let view = SchemaView::new(schema.clone());
        // What a completed invocation keeps when its manifest declares nothing.
        let default_retention = Retention {
            completion_ms: millis(config.worker.completion_retention),
            journal_ms: millis(config.worker.journal_retention),
        };
        if config.roles.contains(Role::Worker) {
            let started = Worker::start(
                WorkerOptions {
                    node_dir: config.node_dir(),
                    member_id: u64::from(me.id().as_u32()),
                    address: address.clone(),
                    cluster_name: config.cluster_name.clone(),
                    num_partitions,
                    timers_in_memory: usize::try_from(config.worker.num_timers_in_memory_limit)
                        .unwrap_or(usize::MAX),
                    invoker: reprise_invoker::Config::from_options(
                        &config.cluster_name,
                        &config.worker.invoker,
                        default_retention,
                    ),
                },
                &client,
                view.clone(),
                service_client.clone(),
            )
            .await?;
            let serving = started.wait_until_serving(PARTITION_START_WAIT).await;
            let handle = started.handle();
            worker = Some(started);
            serving?;
            // The worker is up: a `provisioning` worker becomes `active`.
            cluster::update(&client, "activating the worker", |nodes| {
                if nodes.get(me.id())?.worker_state() == WorkerState::Provisioning {
                    nodes.set_worker_state(me.id(), WorkerState::Active)?;
                }
                Ok(())
            })
            .await?;
            if config.roles.contains(Role::Ingress) {
                ingress.set(IngressState {
                    worker: handle,
                    schema: view.clone(),
                    request_size_limit: config.ingress.request_size_limit.as_u64(),
                    default_retention,
                });
            }
        }
        if config.roles.contains(Role::Admin) {
            admin.set(AdminState {
                schema,
                service_client,
                worker: worker.as_ref().map(|w| w.handle()),
                ingress_endpoint,
                query: worker
                    .as_ref()
                    .map(|w| reprise_query::QueryEngine::new(w.handle().store(), view.clone())),
            });
        }
        let stop = CancellationToken::new();
        let serving: Vec<u32> = worker
            .as_ref()
            .map(|w| {
                w.partition_ids()
                    .into_iter()
                    .map(|id| u32::from(id.as_u16()))
                    .collect()
            })
            .unwrap_or_default();
        let holds_partitions = !serving.is_empty();
        *net.serving.lock().unwrap_or_else(|p| p.into_inner()) = serving;
        let heartbeats = tokio::spawn(net.liveness.clone().run(
            client.clone(),
            net.connections.clone(),
            me.id().as_u32(),
            holds_partitions,
            stop.clone(),
        ));
        Ok::<_, NodeError>((identity, (stop, heartbeats)))
    };
    let started = started.await;
    if let (Some(order), Err(err)) = (order.take(), &started) {
        order.done(Err(err.to_string()));
    }
    match started {
        Ok((identity, liveness)) => Ok((
            identity,
            Roles {
                metadata,
                worker,
                liveness,
            },
        )),
        Err(err) => {
            if let Some(worker) = worker {
                worker.shutdown().await;
            }
            net.groups.remove(reprise_metadata_server::GROUP);
            if let Some(metadata) = metadata
                && let Err(stop_err) = metadata.shutdown().await
            {
                warn!(%stop_err, "stopping the metadata server after a failed start");
            }
            Err(err)
        }
    }
}

/// How long a start waits for the metadata store to become available (the other members of a
/// restarting cluster coming back, the node to join starting).
const METADATA_START_WAIT: Duration = Duration::from_secs(60);

/// Runs `call` until it succeeds or fails for another reason than the metadata store being
/// unavailable, for at most [`METADATA_START_WAIT`].
async fn until_available<T, F, Fut>(mut call: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    let deadline = Instant::now() + METADATA_START_WAIT;
    loop {
        match call().await {
            Err(ClusterError::Metadata(MetadataError::Unavailable(reason)))
                if Instant::now() < deadline =>
            {
                info!(%reason, "waiting for the metadata store");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            result => return result,
        }
    }
}

/// Makes this node's metadata member a voting member of the group: the provisioning node is one
/// from the start; a joining node with `metadata-server.auto-join` asks the leader to add it
/// (which brings it up to date first). The node table records the outcome.
async fn join_metadata_group(
    config: &Configuration,
    client: &MetadataClient,
    id: PlainNodeId,
    address: &str,
    provisioning: bool,
) -> Result<(), NodeError> {
    let (state, _) = cluster::update(client, "the metadata member's state", |nodes| {
        let state = nodes.get(id)?.metadata_server_state();
        if state == MetadataServerState::Standby && config.metadata_server.auto_join {
            nodes.set_metadata_server_state(id, MetadataServerState::Provisioning)?;
            return Ok(MetadataServerState::Provisioning);
        }
        Ok(state)
    })
    .await?;
    if state == MetadataServerState::Member {
        // A member that restarted at another address (a new port or machine address) has the
        // leader point the group at it.
        let listed = client.members().await?;
        if listed
            .members
            .iter()
            .any(|m| m.id == u64::from(id.as_u32()) && m.address != address)
        {
            info!(node_id = %id, address, "telling the metadata group this member's new address");
            client.add_member(u64::from(id.as_u32()), address).await?;
        }
        return Ok(());
    }
    if state != MetadataServerState::Provisioning {
        return Ok(());
    }
    if !provisioning {
        info!(node_id = %id, "joining the metadata group");
        client.add_member(u64::from(id.as_u32()), address).await?;
    }
    cluster::update(client, "the metadata member's state", |nodes| {
        nodes.set_metadata_server_state(id, MetadataServerState::Member)?;
        Ok(())
    })
    .await?;
    Ok(())
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

fn millis(duration: reprise_node_config::FriendlyDuration) -> u64 {
    u64::try_from(duration.as_duration().as_millis()).unwrap_or(u64::MAX)
}
