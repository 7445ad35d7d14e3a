//! Who this node is, kept in the local store so a restart finds itself. The cluster's node table
//! lives in the metadata store (see `cluster.rs`); this record only remembers the node's name,
//! cluster and plain id, and the generation of its last start, so that a node knows before the
//! metadata store is reachable which member of it it is. What a start does follows from it
//! ([`load`]): a directory without a record provisions a new cluster (with `auto-provision` and
//! no other node to join) or joins one through `metadata-client.addresses`; a directory with a
//! record is a restart, refused when it belongs to another cluster or node name.
//!
//! Nodes of the first releases kept the node table here too; it is read once, to move it into
//! the metadata store.

use reprise_node_config::{Configuration, NodesConfigError, NodesConfiguration, Role};
use reprise_types::{GenerationalNodeId, MillisSinceEpoch, PlainNodeId};
use serde::{Deserialize, Serialize};

use crate::local_store::{LocalStore, StoreError};

const IDENTITY_KEY: &str = "identity";
const NODES_CONFIG_KEY: &str = "nodes-config";

/// What a node remembers about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub node_name: String,
    pub cluster_name: String,
    /// This process's id: the node's plain id and the generation of this start.
    pub node_id: GenerationalNodeId,
    /// When the cluster was provisioned by this node.
    pub provisioned_at: MillisSinceEpoch,
    /// The cluster's fingerprint (see `cluster::Marker`); 0 in records written before it.
    #[serde(default)]
    pub fingerprint: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the data in {dir} belongs to cluster `{stored}`, but `cluster-name` is `{configured}`; \
         set `cluster-name = \"{stored}\"` or use another `base-dir`"
    )]
    ClusterMismatch {
        dir: String,
        stored: String,
        configured: String,
    },
    #[error(
        "the data in {dir} belongs to node `{stored}`, not `{configured}`; the directory was \
         renamed or copied: move it back or use another `base-dir`"
    )]
    NodeNameMismatch {
        dir: String,
        stored: String,
        configured: String,
    },
    #[error(
        "no cluster has been provisioned in {dir}, this node cannot provision one (it lacks the \
         metadata-server role) and `metadata-client.addresses` names no node to join: name the \
         nodes of the cluster to join"
    )]
    NotProvisioned { dir: String },
    #[error(
        "{dir} has no cluster yet and this node would provision one, but it lacks the \
         metadata-server role; add `metadata-server` to `roles` or join an existing cluster \
         through `metadata-client.addresses`"
    )]
    ProvisionWithoutMetadata { dir: String },
    #[error(
        "the data in {dir} belongs to node {stored}, but `force-node-id` asks for {forced}; \
         remove the setting or use another `base-dir`"
    )]
    ForcedIdMismatch {
        dir: String,
        stored: PlainNodeId,
        forced: PlainNodeId,
    },
    #[error("the node table in {dir} is inconsistent with this node's identity: {source}")]
    Inconsistent {
        dir: String,
        source: NodesConfigError,
    },
}

/// What this start of the node is.
#[derive(Debug)]
pub enum Start {
    /// No cluster anywhere: this node provisions one, as node 1.
    Provision,
    /// Nothing here, but other nodes to join through.
    Join,
    /// Nothing here, nothing to join, and `auto-provision` off: wait until an operator
    /// provisions the cluster through this node (`reprisectl provision`).
    AwaitProvision,
    /// A restart. `legacy_nodes` is the node table an older release kept locally.
    Known {
        identity: NodeIdentity,
        legacy_nodes: Option<NodesConfiguration>,
    },
}

/// Reads what the local store remembers and decides what this start is.
pub fn load(store: &LocalStore, config: &Configuration) -> Result<Start, IdentityError> {
    let dir = config.node_dir().display().to_string();
    let stored: Option<NodeIdentity> = store.get(IDENTITY_KEY)?;
    let Some(identity) = stored else {
        let me = config.advertised_address();
        let others = config
            .metadata_client
            .addresses
            .iter()
            .any(|address| address.trim_end_matches('/') != me.trim_end_matches('/'));
        return if others {
            Ok(Start::Join)
        } else if !config.roles.contains(Role::MetadataServer) {
            if config.auto_provision {
                Err(IdentityError::ProvisionWithoutMetadata { dir })
            } else {
                Err(IdentityError::NotProvisioned { dir })
            }
        } else if config.auto_provision {
            Ok(Start::Provision)
        } else {
            Ok(Start::AwaitProvision)
        };
    };
    if identity.cluster_name != config.cluster_name {
        return Err(IdentityError::ClusterMismatch {
            dir,
            stored: identity.cluster_name,
            configured: config.cluster_name.clone(),
        });
    }
    if identity.node_name != config.node_name {
        return Err(IdentityError::NodeNameMismatch {
            dir,
            stored: identity.node_name,
            configured: config.node_name.clone(),
        });
    }
    if let Some(forced) = forced_id(config)
        && forced != identity.node_id.id()
    {
        return Err(IdentityError::ForcedIdMismatch {
            dir,
            stored: identity.node_id.id(),
            forced,
        });
    }
    let legacy_nodes: Option<NodesConfiguration> = store.get(NODES_CONFIG_KEY)?;
    Ok(Start::Known {
        identity,
        legacy_nodes,
    })
}

/// Remembers this start's identity.
pub fn save(store: &LocalStore, identity: &NodeIdentity) -> Result<(), IdentityError> {
    store.put_all(&[(IDENTITY_KEY, identity)])?;
    Ok(())
}

/// The plain id `force-node-id` asks for, if it asks for one.
pub fn forced_id(config: &Configuration) -> Option<PlainNodeId> {
    config.force_node_id.and_then(PlainNodeId::new)
}

/// The node table of a cluster this node is provisioning: itself as node 1, not started yet.
pub fn first_nodes(config: &Configuration) -> Result<NodesConfiguration, IdentityError> {
    let mut nodes = NodesConfiguration::new(&config.cluster_name);
    let (name, address, roles) = (
        config.node_name.as_str(),
        config.advertised_address(),
        config.roles.clone(),
    );
    match forced_id(config) {
        Some(id) => nodes.add_node_with_id(name, id, address, roles),
        None => nodes.add_node(name, address, roles),
    }
    .map_err(|source| IdentityError::Inconsistent {
        dir: config.node_dir().display().to_string(),
        source,
    })?;
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> Configuration {
        Configuration {
            node_name: "n1".into(),
            base_dir: dir.to_owned(),
            ..Configuration::default()
        }
    }

    fn identity(config: &Configuration) -> NodeIdentity {
        NodeIdentity {
            node_name: config.node_name.clone(),
            cluster_name: config.cluster_name.clone(),
            node_id: PlainNodeId::MIN.with_generation(1),
            provisioned_at: MillisSinceEpoch::now(),
            fingerprint: 7,
        }
    }

    #[test]
    fn a_fresh_directory_provisions_or_joins_and_a_saved_one_restarts() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut config = config(tmp.path());
        let store = LocalStore::open(&config.node_dir()).expect("open");
        assert!(matches!(load(&store, &config), Ok(Start::Provision)));
        config.metadata_client.addresses = vec!["http://127.0.0.9:5122".into()];
        assert!(matches!(load(&store, &config), Ok(Start::Join)));
        // Its own address alone is nothing to join.
        config.metadata_client.addresses = vec![config.advertised_address()];
        assert!(matches!(load(&store, &config), Ok(Start::Provision)));
        let me = identity(&config);
        save(&store, &me).expect("save");
        match load(&store, &config) {
            Ok(Start::Known {
                identity,
                legacy_nodes: None,
            }) => assert_eq!(identity, me),
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    #[test]
    fn data_of_another_cluster_or_node_is_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut config = config(tmp.path());
        let store = LocalStore::open(&config.node_dir()).expect("open");
        save(&store, &identity(&config)).expect("save");
        config.cluster_name = "other".into();
        let err = load(&store, &config).expect_err("cluster mismatch");
        assert!(
            matches!(err, IdentityError::ClusterMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("`localcluster`"), "{err}");
        config.cluster_name = "localcluster".into();
        config.node_name = "n2".into();
        let err = load(&store, &config).expect_err("name mismatch");
        assert!(
            matches!(err, IdentityError::NodeNameMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn without_auto_provision_a_fresh_node_waits_and_without_the_metadata_role_it_is_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let config = Configuration {
            auto_provision: false,
            ..config(tmp.path())
        };
        let store = LocalStore::open(&config.node_dir()).expect("open");
        assert!(matches!(load(&store, &config), Ok(Start::AwaitProvision)));
        let config = Configuration {
            roles: [Role::Worker].into_iter().collect(),
            ..config
        };
        let err = load(&store, &config).expect_err("nothing provisioned");
        assert!(matches!(err, IdentityError::NotProvisioned { .. }), "{err}");
        let config = Configuration {
            auto_provision: true,
            ..config
        };
        let err = load(&store, &config).expect_err("cannot provision");
        assert!(
            matches!(err, IdentityError::ProvisionWithoutMetadata { .. }),
            "{err}"
        );
    }
}
