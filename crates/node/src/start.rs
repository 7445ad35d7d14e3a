//! A node's start, in the order a cluster needs it: its place in the cluster (provisioning a
//! new one, waiting to be provisioned, joining one, or restarting as a known node), its metadata
//! member and its entry in the node table, the worker's partitions, and the admin and ingress
//! APIs on top of them. `Node::run` calls [`start_roles`] and stops what it returns in reverse.

use std::time::Duration;

use reprise_admin::{AdminHandle, AdminState};
use reprise_ingress::{IngressHandle, IngressState};
use reprise_metadata_server::{
    MetadataClient, MetadataError, MetadataServer, MetadataServerOptions,
};
use reprise_node_config::{Configuration, MetadataServerState, Role, WorkerState};
use reprise_partition_processor::Retention;
use reprise_schema::{SchemaStore, SchemaView};
use reprise_service_client::{ServiceClient, ServiceClientOptions};
use reprise_types::{MillisSinceEpoch, PlainNodeId};
use reprise_worker::{Worker, WorkerOptions};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::identity::{self, NodeIdentity, Start};
use crate::local_store::LocalStore;
use crate::net::Net;
use crate::{ClusterError, NodeError, cluster};

/// How long a start waits for this node to lead its partitions.
const PARTITION_START_WAIT: Duration = Duration::from_secs(30);

/// The roles running on storage, stopped in reverse order of their start.
pub(crate) struct Roles {
    pub(crate) metadata: Option<MetadataServer>,
    pub(crate) worker: Option<Worker>,
    /// The heartbeat task and what stops it.
    pub(crate) liveness: (CancellationToken, tokio::task::JoinHandle<()>),
}

/// The APIs a start hands their state to once what they serve has started.
pub(crate) struct Apis<'a> {
    pub(crate) admin: &'a AdminHandle,
    pub(crate) ingress: &'a IngressHandle,
    /// What the admin API's `/version` names as the ingress endpoint.
    pub(crate) ingress_endpoint: Option<String>,
}

/// Starts the roles that need storage, in the order a cluster needs them: the node's place in
/// the cluster (provisioning a new one, joining one, or restarting as a known node), the
/// metadata member and the node's entry in the node table, the worker's partitions (waiting
/// until this node leads them, so the node is ready only when it can serve), and the admin
/// and ingress APIs on top of them.
pub(crate) async fn start_roles(
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

fn millis(duration: reprise_node_config::FriendlyDuration) -> u64 {
    u64::try_from(duration.as_duration().as_millis()).unwrap_or(u64::MAX)
}
