//! The node's own service on the node channel: `Status` says who this node is (its generational
//! id once it has one), its roles, its address, whether it is starting, ready or stopping, and
//! which nodes it has heard from recently.

use reprise_net::proto::node_server::{Node as NodeRpc, NodeServer};
use reprise_net::proto::{NodeRef, StatusRequest, StatusResponse};
use reprise_net::{MAX_MESSAGE_SIZE, NetIdentity};
use tonic::{Request, Response, Status};

use crate::health::{Health, NodeStatus};
use crate::liveness::Liveness;

pub(crate) struct NodeService {
    pub(crate) identity: NetIdentity,
    pub(crate) health: Health,
    pub(crate) liveness: Liveness,
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
        }))
    }
}
