//! The node's own service on the node channel: `Status` says who this node is (its generational
//! id once it has one), its roles, its address, whether it is starting, ready or stopping, and
//! which nodes it has heard from recently.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reprise_net::proto::node_server::{Node as NodeRpc, NodeServer};
use reprise_net::proto::{
    ConfigRequest, ConfigResponse, NodeRef, ProvisionRequest, ProvisionResponse, StatusRequest,
    StatusResponse,
};
use reprise_net::{MAX_MESSAGE_SIZE, NetError, NetIdentity};
use reprise_types::GenerationalNodeId;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::health::{Health, NodeStatus};
use crate::liveness::Liveness;

/// How long a `Provision` call waits for the node to have provisioned the cluster.
const PROVISION_WAIT: Duration = Duration::from_secs(60);

/// An operator's order to provision the cluster, handed from the service to the waiting start.
pub(crate) struct ProvisionOrder {
    pub(crate) num_partitions: u32,
    done: oneshot::Sender<Result<GenerationalNodeId, String>>,
}

impl ProvisionOrder {
    /// Reports the outcome to whoever ordered it.
    pub(crate) fn done(self, outcome: Result<GenerationalNodeId, String>) {
        // The caller may have given up waiting; the outcome is in the log either way.
        let _ = self.done.send(outcome);
    }
}

/// Where a start that waits to be provisioned takes its order from. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct ProvisionSlot {
    waiting: Arc<Mutex<Option<oneshot::Sender<ProvisionOrder>>>>,
}

impl ProvisionSlot {
    /// Starts waiting for an order.
    pub(crate) fn open(&self) -> oneshot::Receiver<ProvisionOrder> {
        let (sender, receiver) = oneshot::channel();
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender);
        receiver
    }

    fn take(&self) -> Option<oneshot::Sender<ProvisionOrder>> {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

pub(crate) struct NodeService {
    pub(crate) identity: NetIdentity,
    pub(crate) health: Health,
    pub(crate) liveness: Liveness,
    pub(crate) provisioning: ProvisionSlot,
    /// The partitions this node runs, once its worker has started them.
    pub(crate) serving: Arc<Mutex<Vec<u32>>>,
    pub(crate) config_toml: String,
    pub(crate) default_num_partitions: u32,
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) roles: Vec<String>,
}

pub(crate) fn node_service(service: NodeService) -> NodeServer<NodeService> {
    NodeServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

#[tonic::async_trait]
impl NodeRpc for NodeService {
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        self.identity
            .check(request.into_inner().header.as_ref(), "node status")?;
        let node = self.identity.me().map(|me| NodeRef {
            id: me.id().as_u32(),
            generation: me.generation(),
        });
        Ok(Response::new(StatusResponse {
            node,
            name: self.name.clone(),
            cluster_name: self.identity.cluster_name(),
            roles: self.roles.clone(),
            status: match self.health.status() {
                NodeStatus::Starting => "starting",
                NodeStatus::Ready => "ready",
                NodeStatus::Stopping => "stopping",
            }
            .to_owned(),
            address: self.address.clone(),
            alive: self.liveness.alive(),
            partitions: self
                .serving
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }))
    }

    async fn provision(
        &self,
        request: Request<ProvisionRequest>,
    ) -> Result<Response<ProvisionResponse>, Status> {
        let request = request.into_inner();
        self.identity.check(request.header.as_ref(), "provision")?;
        if let Some(problem) = reprise_node_config::replication_problem(match request.replication {
            0 => 1,
            n => n,
        }) {
            return Err(NetError::BadRequest(format!("--replication {problem}")).into());
        }
        let num_partitions = match request.num_partitions {
            0 => self.default_num_partitions,
            n if n <= u32::from(u16::MAX) => n,
            n => {
                return Err(NetError::BadRequest(format!(
                    "--num-partitions is {n}, must be from 1 to 65535"
                ))
                .into());
            }
        };
        let Some(waiting) = self.provisioning.take() else {
            return Err(NetError::BadRequest(
                "this node is not waiting to be provisioned: its cluster was provisioned \
                 already (a cluster is provisioned once), or it joins one, or it provisions \
                 one by itself (`auto-provision = true`)"
                    .into(),
            )
            .into());
        };
        let (done, outcome) = oneshot::channel();
        waiting
            .send(ProvisionOrder {
                num_partitions,
                done,
            })
            .map_err(|_| NetError::Unavailable("the node is stopping".into()))?;
        match tokio::time::timeout(PROVISION_WAIT, outcome).await {
            Ok(Ok(Ok(me))) => Ok(Response::new(ProvisionResponse {
                node: Some(NodeRef {
                    id: me.id().as_u32(),
                    generation: me.generation(),
                }),
            })),
            Ok(Ok(Err(reason))) => {
                Err(NetError::Internal(format!("provisioning failed: {reason}")).into())
            }
            Ok(Err(_)) => Err(NetError::Internal(
                "provisioning failed; the node's log says why".into(),
            )
            .into()),
            Err(_) => Err(NetError::Unavailable(format!(
                "provisioning did not finish within {PROVISION_WAIT:?}; see the node's log"
            ))
            .into()),
        }
    }

    async fn config(
        &self,
        request: Request<ConfigRequest>,
    ) -> Result<Response<ConfigResponse>, Status> {
        self.identity
            .check(request.into_inner().header.as_ref(), "config")?;
        Ok(Response::new(ConfigResponse {
            toml: self.config_toml.clone(),
        }))
    }
}
