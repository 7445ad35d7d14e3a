//! The node channel's state on this node and the gRPC services it serves on the node port.

use reprise_metadata_server::MetadataSlot;
use reprise_net::{ConnectionOptions, Connections, NetIdentity, RaftGroups};
use reprise_node_config::Configuration;

use crate::health::Health;
use crate::{liveness, node_service};

/// The node channel's state: who this node is on it, its connections to peers, the raft groups
/// and metadata member it delivers traffic to. The services exist from the first moment the
/// node port is served; they answer `unavailable` until what they need has started.
pub(crate) struct Net {
    pub(crate) identity: NetIdentity,
    pub(crate) connections: Connections,
    pub(crate) groups: RaftGroups,
    pub(crate) metadata: MetadataSlot,
    pub(crate) liveness: liveness::Liveness,
    pub(crate) provisioning: node_service::ProvisionSlot,
    pub(crate) serving: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
    pub(crate) config_toml: String,
    pub(crate) default_num_partitions: u32,
    pub(crate) health: Health,
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) roles: Vec<String>,
}

impl Net {
    pub(crate) fn new(config: &Configuration, health: &Health) -> Self {
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
    pub(crate) fn router(&self) -> axum::Router {
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
