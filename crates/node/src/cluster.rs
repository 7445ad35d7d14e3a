//! The node table in the metadata store, and a node's start as the cluster records it. The
//! table (`nodes-config`) is one value, changed only by compare-and-set on its version, so two
//! nodes registering at once never overwrite each other: the loser reads again and retries.
//! A new name gets the next plain id; each start of a known name bumps its generation; a
//! removed node's tombstone keeps its id from being reused.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use reprise_metadata_server::{MetadataClient, MetadataError, Precondition};
use reprise_node_config::{
    MetadataServerState, NodeConfig, NodeEntry, NodesConfigError, NodesConfiguration, RoleSet,
    WorkerState,
};
use reprise_types::{GenerationalNodeId, MillisSinceEpoch, PlainNodeId};

/// The metadata key of the node table.
pub const NODES_KEY: &str = "nodes-config";
/// The metadata key of the cluster marker, written once at provisioning.
pub const CLUSTER_KEY: &str = "cluster";

/// How often a compare-and-set that lost a race is tried again before giving up.
const CAS_ATTEMPTS: usize = 32;

mod proto {
    include!(concat!(env!("OUT_DIR"), "/reprise.cluster.v1.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Nodes(#[from] NodesConfigError),
    #[error("the stored node table is damaged: {0}")]
    Corrupt(String),
    #[error("the node table kept changing under {0}; giving up")]
    Contended(&'static str),
    #[error(
        "the cluster reached through the metadata store is `{stored}`, but `cluster-name` is \
         `{configured}`; set `cluster-name = \"{stored}\"` or point `metadata-client.addresses` \
         at the right cluster"
    )]
    ClusterMismatch { stored: String, configured: String },
    #[error(
        "this node belongs to another cluster named `{name}` (fingerprint {mine:016x}) than the \
         one reached through the metadata store (fingerprint {theirs:016x}); point \
         `metadata-client.addresses` at its own cluster, or give it a fresh `base-dir` to join \
         this one"
    )]
    OtherCluster {
        name: String,
        mine: u64,
        theirs: u64,
    },
    #[error(
        "a node named `{name}` is running as {id} at {address}: two processes cannot be one \
         node; stop it first, or give this one another `node-name`"
    )]
    NameInUse {
        name: String,
        id: GenerationalNodeId,
        address: String,
    },
    #[error(
        "node `{name}` is {id} in the cluster, but `force-node-id` asks for {forced}; remove the \
         setting, or start a node of another name"
    )]
    ForcedIdMismatch {
        name: String,
        id: PlainNodeId,
        forced: PlainNodeId,
    },
    #[error(
        "the cluster has no node table yet: provision it first (start its first node with \
         `auto-provision = true`, or run `reprisectl provision`)"
    )]
    NotProvisioned,
}

pub fn encode(nodes: &NodesConfiguration) -> Vec<u8> {
    proto::NodesConfiguration {
        version: nodes.version(),
        cluster_name: nodes.cluster_name().to_owned(),
        nodes: nodes
            .entries()
            .map(|(id, entry)| proto::NodeEntry {
                id: id.as_u32(),
                entry: Some(match entry {
                    NodeEntry::Node(node) => proto::node_entry::Entry::Node(proto::Node {
                        name: node.name.clone(),
                        generation: node.current_generation().map_or(0, |g| g.generation()),
                        address: node.address.clone(),
                        roles: node.roles.iter().map(|role| role.to_string()).collect(),
                        worker_state: node.worker_state().to_string(),
                        metadata_server_state: node.metadata_server_state().to_string(),
                    }),
                    NodeEntry::Tombstone => {
                        proto::node_entry::Entry::Tombstone(proto::Tombstone {})
                    }
                }),
            })
            .collect(),
    }
    .encode_to_vec()
}

pub fn decode(bytes: &[u8]) -> Result<NodesConfiguration, ClusterError> {
    let corrupt = |what: String| ClusterError::Corrupt(what);
    let stored = proto::NodesConfiguration::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut entries = Vec::with_capacity(stored.nodes.len().min(1024));
    for entry in stored.nodes {
        let id = PlainNodeId::new(entry.id).ok_or_else(|| corrupt("a node with id 0".into()))?;
        let entry = match entry.entry {
            Some(proto::node_entry::Entry::Node(node)) => {
                let roles: RoleSet = node
                    .roles
                    .iter()
                    .map(|role| role.parse())
                    .collect::<Result<_, String>>()
                    .map_err(|e| corrupt(format!("{id}: {e}")))?;
                let worker_state: WorkerState = node
                    .worker_state
                    .parse()
                    .map_err(|e| corrupt(format!("{id}: {e}")))?;
                let metadata_state: MetadataServerState = node
                    .metadata_server_state
                    .parse()
                    .map_err(|e| corrupt(format!("{id}: {e}")))?;
                NodeEntry::Node(NodeConfig::from_parts(
                    node.name,
                    id,
                    (node.generation != 0).then_some(node.generation),
                    node.address,
                    roles,
                    worker_state,
                    metadata_state,
                ))
            }
            Some(proto::node_entry::Entry::Tombstone(_)) => NodeEntry::Tombstone,
            None => return Err(corrupt(format!("{id} has no entry"))),
        };
        entries.push((id, entry));
    }
    NodesConfiguration::from_parts(stored.version, stored.cluster_name, entries)
        .map_err(|e| corrupt(e.to_string()))
}

/// The node table and the metadata version it was read at (`None`: there is none yet).
pub async fn load(
    metadata: &MetadataClient,
) -> Result<Option<(NodesConfiguration, u64)>, ClusterError> {
    match metadata.get(NODES_KEY).await? {
        Some(value) => Ok(Some((decode(&value.value)?, value.version))),
        None => Ok(None),
    }
}

/// Changes the node table with `change` by compare-and-set, reading it again after a lost race.
pub async fn update<T>(
    metadata: &MetadataClient,
    what: &'static str,
    mut change: impl FnMut(&mut NodesConfiguration) -> Result<T, ClusterError>,
) -> Result<(T, NodesConfiguration), ClusterError> {
    for attempt in 0..CAS_ATTEMPTS {
        let (mut nodes, version) = load(metadata).await?.ok_or(ClusterError::NotProvisioned)?;
        let result = change(&mut nodes)?;
        match metadata
            .put(
                NODES_KEY,
                Bytes::from(encode(&nodes)),
                Precondition::MatchesVersion(version),
            )
            .await
        {
            Ok(_) => return Ok((result, nodes)),
            Err(MetadataError::PreconditionFailed { .. }) => {
                // Someone else changed it in between: back off a little and read it again.
                tokio::time::sleep(Duration::from_millis(5 * (attempt as u64 + 1))).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(ClusterError::Contended(what))
}

/// What the cluster marker says: which cluster this is, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub provisioned_at: MillisSinceEpoch,
    /// Random, chosen at provisioning (0 in clusters provisioned before it existed).
    pub fingerprint: u64,
}

/// Writes the node table and cluster marker of a newly provisioned cluster, if there is none
/// yet (a provisioning that crashed half way finds them on its next start).
pub async fn provision(
    metadata: &MetadataClient,
    nodes: &NodesConfiguration,
    provisioned_at: MillisSinceEpoch,
) -> Result<(), ClusterError> {
    let marker = proto::ClusterMarker {
        cluster_name: nodes.cluster_name().to_owned(),
        provisioned_at: provisioned_at.as_u64(),
        fingerprint: rand::random::<u64>().max(1),
    };
    for (key, value) in [
        (CLUSTER_KEY, marker.encode_to_vec()),
        (NODES_KEY, encode(nodes)),
    ] {
        match metadata
            .put(key, Bytes::from(value), Precondition::DoesNotExist)
            .await
        {
            Ok(_) | Err(MetadataError::PreconditionFailed { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// The cluster marker, checking that it is the cluster this node is configured for.
pub async fn marker(metadata: &MetadataClient, cluster_name: &str) -> Result<Marker, ClusterError> {
    let value = metadata
        .get(CLUSTER_KEY)
        .await?
        .ok_or(ClusterError::NotProvisioned)?;
    let marker = proto::ClusterMarker::decode(value.value.as_ref())
        .map_err(|e| ClusterError::Corrupt(format!("the cluster marker: {e}")))?;
    if marker.cluster_name != cluster_name {
        return Err(ClusterError::ClusterMismatch {
            stored: marker.cluster_name,
            configured: cluster_name.to_owned(),
        });
    }
    Ok(Marker {
        provisioned_at: MillisSinceEpoch::new(marker.provisioned_at),
        fingerprint: marker.fingerprint,
    })
}

/// Refuses a start of `name` while another process of that name runs: the node the table
/// names answers, as itself and in the generation the table records. (A restart on the same
/// directory never gets here while the old process runs: the directory lock refuses it.)
pub async fn ensure_name_free(
    metadata: &MetadataClient,
    connections: &reprise_net::Connections,
    name: &str,
) -> Result<(), ClusterError> {
    let Some((nodes, _)) = load(metadata).await? else {
        return Ok(());
    };
    let Some(node) = nodes.find_by_name(name) else {
        return Ok(());
    };
    let Some(current) = node.current_generation() else {
        return Ok(());
    };
    let answered =
        crate::liveness::answers_as(connections, &node.address, node.id().as_u32()).await;
    if answered == Some(current.generation()) {
        return Err(ClusterError::NameInUse {
            name: name.to_owned(),
            id: current,
            address: node.address.clone(),
        });
    }
    Ok(())
}

/// Records a start of the node `name`: added with the next plain id if the cluster does not know
/// it, its generation bumped, its address and roles refreshed.
pub async fn register_start(
    metadata: &MetadataClient,
    name: &str,
    address: &str,
    roles: &RoleSet,
    forced: Option<PlainNodeId>,
) -> Result<(GenerationalNodeId, NodesConfiguration), ClusterError> {
    update(metadata, "a node's start", |nodes| {
        match (nodes.find_by_name(name).map(NodeConfig::id), forced) {
            (Some(id), Some(forced)) if id != forced => {
                return Err(ClusterError::ForcedIdMismatch {
                    name: name.to_owned(),
                    id,
                    forced,
                });
            }
            (Some(_), _) => {}
            (None, Some(forced)) => {
                nodes.add_node_with_id(name, forced, address.to_owned(), roles.clone())?;
            }
            (None, None) => {
                nodes.add_node(name, address.to_owned(), roles.clone())?;
            }
        }
        Ok(nodes.register_start(name, address.to_owned(), roles.clone())?)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprise_node_config::Role;

    #[test]
    fn a_node_table_decodes_to_what_was_encoded() {
        let mut nodes = NodesConfiguration::new("c");
        let n1 = nodes
            .add_node("n1", "http://127.0.0.1:5122".into(), RoleSet::all())
            .expect("add");
        nodes
            .register_start("n1", "http://127.0.0.1:5122".into(), RoleSet::all())
            .expect("start");
        nodes
            .add_node(
                "n2",
                "http://127.0.0.2:5122".into(),
                [Role::Worker].into_iter().collect(),
            )
            .expect("add");
        let n3 = nodes
            .add_node("n3", "http://127.0.0.3:5122".into(), RoleSet::all())
            .expect("add");
        nodes
            .set_metadata_server_state(n3, MetadataServerState::Standby)
            .expect("standby");
        nodes.remove_node(n3).expect("remove");
        assert_eq!(decode(&encode(&nodes)).expect("decodes"), nodes);
        assert_eq!(
            decode(&encode(&nodes))
                .expect("decodes")
                .get(n1)
                .map(|n| n.current_generation()),
            Ok(Some(n1.with_generation(1)))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..256 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
