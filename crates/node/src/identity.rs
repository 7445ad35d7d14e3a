//! Who this node is, kept in the local store so a restart finds itself. On its first start a
//! node with `auto-provision` provisions a single-node cluster: it writes the cluster's node
//! table with itself as node 1 and the identity record. Every later start checks that the data
//! belongs to the configured cluster and records a new generation (`N1:1`, `N1:2`, …).
//!
//! The node table lives here only until the metadata server exists; then it moves there and
//! this module keeps just the identity record.

use reprise_node_config::{
    Configuration, MetadataServerState, NodesConfigError, NodesConfiguration, Role, WorkerState,
};
use reprise_types::{GenerationalNodeId, MillisSinceEpoch};
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
        "no cluster has been provisioned in {dir} and `auto-provision` is false; set \
         `auto-provision = true` to start a new single-node cluster"
    )]
    NotProvisioned { dir: String },
    #[error("the node table in {dir} is inconsistent with this node's identity: {source}")]
    Inconsistent {
        dir: String,
        source: NodesConfigError,
    },
}

/// Loads this node's identity, provisioning a new cluster on first start, and records this
/// start as a new generation. Returns the identity and the node table after the change.
pub fn establish(
    store: &LocalStore,
    config: &Configuration,
) -> Result<(NodeIdentity, NodesConfiguration), IdentityError> {
    let dir = config.node_dir().display().to_string();
    let stored: Option<NodeIdentity> = store.get(IDENTITY_KEY)?;
    let nodes: Option<NodesConfiguration> = store.get(NODES_CONFIG_KEY)?;
    let inconsistent = |source| IdentityError::Inconsistent {
        dir: dir.clone(),
        source,
    };

    let (mut nodes, provisioned_at) = match (stored, nodes) {
        (Some(identity), Some(nodes)) => {
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
            (nodes, identity.provisioned_at)
        }
        (None, None) if config.auto_provision => {
            let mut nodes = NodesConfiguration::new(&config.cluster_name);
            nodes
                .add_node(
                    &config.node_name,
                    config.advertised_address(),
                    config.roles.clone(),
                )
                .map_err(inconsistent)?;
            (nodes, MillisSinceEpoch::now())
        }
        (None, None) => return Err(IdentityError::NotProvisioned { dir }),
        // One was written without the other: both are written in one batch, so this is damage.
        (Some(_), None) | (None, Some(_)) => {
            return Err(inconsistent(NodesConfigError::UnknownName(
                config.node_name.clone(),
            )));
        }
    };

    let node_id = nodes
        .register_start(
            &config.node_name,
            config.advertised_address(),
            config.roles.clone(),
        )
        .map_err(inconsistent)?;
    // A single node is its own metadata quorum from the moment it provisions.
    if config.roles.contains(Role::MetadataServer) {
        let state = nodes
            .get(node_id.id())
            .map_err(inconsistent)?
            .metadata_server_state();
        if state == MetadataServerState::Provisioning {
            nodes
                .set_metadata_server_state(node_id.id(), MetadataServerState::Member)
                .map_err(inconsistent)?;
        }
    }
    let identity = NodeIdentity {
        node_name: config.node_name.clone(),
        cluster_name: config.cluster_name.clone(),
        node_id,
        provisioned_at,
    };
    store.put_all(&[(IDENTITY_KEY, &identity), (NODES_CONFIG_KEY, &nodes)])?;
    Ok((identity, nodes))
}

/// Records that the worker role is up: a `provisioning` worker becomes `active`.
pub fn activate_worker(
    store: &LocalStore,
    identity: &NodeIdentity,
    nodes: &mut NodesConfiguration,
) -> Result<(), IdentityError> {
    let id = identity.node_id.id();
    let inconsistent = |source| IdentityError::Inconsistent {
        dir: String::from("the local store"),
        source,
    };
    let current = nodes.get(id).map_err(inconsistent)?;
    if current.roles.contains(Role::Worker) && current.worker_state() == WorkerState::Provisioning {
        nodes
            .set_worker_state(id, WorkerState::Active)
            .map_err(inconsistent)?;
        store.put_all(&[(NODES_CONFIG_KEY, nodes)])?;
    }
    Ok(())
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

    #[test]
    fn first_start_provisions_and_restarts_bump_the_generation() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let config = config(tmp.path());
        let store = LocalStore::open(&config.node_dir()).expect("open");
        let (first, nodes) = establish(&store, &config).expect("provision");
        assert_eq!(first.node_id.to_string(), "N1:1");
        assert_eq!(first.cluster_name, "localcluster");
        let me = nodes.get(first.node_id.id()).expect("in the table");
        assert_eq!(me.metadata_server_state(), MetadataServerState::Member);
        assert_eq!(me.worker_state(), WorkerState::Provisioning);
        store.close().expect("close");

        let store = LocalStore::open(&config.node_dir()).expect("reopen");
        let (second, mut nodes) = establish(&store, &config).expect("restart");
        assert_eq!(second.node_id.to_string(), "N1:2");
        assert_eq!(second.provisioned_at, first.provisioned_at);
        activate_worker(&store, &second, &mut nodes).expect("activate");
        assert_eq!(
            nodes.get(second.node_id.id()).map(|n| n.worker_state()),
            Ok(WorkerState::Active)
        );
        store.close().expect("close");

        let store = LocalStore::open(&config.node_dir()).expect("reopen");
        let (third, nodes) = establish(&store, &config).expect("restart");
        assert_eq!(third.node_id.to_string(), "N1:3");
        assert_eq!(
            nodes.get(third.node_id.id()).map(|n| n.worker_state()),
            Ok(WorkerState::Active),
            "the activated worker state was persisted"
        );
    }

    #[test]
    fn data_of_another_cluster_is_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut config = config(tmp.path());
        let store = LocalStore::open(&config.node_dir()).expect("open");
        establish(&store, &config).expect("provision");
        config.cluster_name = "other".into();
        let err = establish(&store, &config).expect_err("cluster mismatch");
        assert!(
            matches!(err, IdentityError::ClusterMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("`localcluster`"), "{err}");
    }

    #[test]
    fn without_auto_provision_a_fresh_directory_is_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let config = Configuration {
            auto_provision: false,
            ..config(tmp.path())
        };
        let store = LocalStore::open(&config.node_dir()).expect("open");
        let err = establish(&store, &config).expect_err("nothing provisioned");
        assert!(matches!(err, IdentityError::NotProvisioned { .. }), "{err}");
    }
}
