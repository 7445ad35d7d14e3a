//! The cluster's view of its nodes: who they are, where they listen, which roles they run and
//! what state their worker and metadata-server roles are in. The metadata server stores and
//! replicates [`NodesConfiguration`]; this module owns its invariants:
//!
//! - plain ids start at 1, are assigned in increasing order and are never reused, not even
//!   after a node is removed (its entry becomes a tombstone);
//! - a live node's name is unique;
//! - a node's generation only grows; an entry may exist before its node has started at all
//!   (no generation yet), and every reader must treat that as a normal state;
//! - worker and metadata-server states change only along the transitions below;
//! - every change increments the version, so writers can compare-and-set on it.

use std::collections::BTreeMap;
use std::fmt;

use reprise_types::{GenerationalNodeId, PlainNodeId};
use serde::{Deserialize, Serialize};

use crate::roles::{Role, RoleSet};

/// The worker role's lifecycle on one node. Only `active` workers get new partition replicas.
///
/// `provisioning` → `active` (the worker role started) → `draining` (an operator asked; replicas
/// are moved away) → `disabled` (it holds none) → `active` again on request. Draining can also
/// be cancelled (`draining` → `active`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerState {
    Provisioning,
    Active,
    Draining,
    Disabled,
}

impl WorkerState {
    pub fn can_become(self, next: WorkerState) -> bool {
        use WorkerState::*;
        self == next
            || matches!(
                (self, next),
                (Provisioning, Active)
                    | (Active, Draining)
                    | (Draining, Disabled)
                    | (Draining, Active)
                    | (Disabled, Active)
            )
    }
}

/// The metadata-server role's membership: `standby` (not a member) → `provisioning` (joining)
/// → `member`; a member or a joining node can go back to `standby` when it is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataServerState {
    Standby,
    Provisioning,
    Member,
}

impl MetadataServerState {
    pub fn can_become(self, next: MetadataServerState) -> bool {
        use MetadataServerState::*;
        self == next
            || matches!(
                (self, next),
                (Standby, Provisioning)
                    | (Provisioning, Member)
                    | (Provisioning, Standby)
                    | (Member, Standby)
            )
    }
}

macro_rules! display_as_serde_name {
    ($ty:ty { $($variant:ident => $text:literal),* $(,)? }) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$variant => $text),* })
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)*
                    other => Err(format!(
                        "`{other}` is not one of: {}",
                        [$($text),*].join(", ")
                    )),
                }
            }
        }
    };
}
display_as_serde_name!(WorkerState { Provisioning => "provisioning", Active => "active", Draining => "draining", Disabled => "disabled" });
display_as_serde_name!(MetadataServerState { Standby => "standby", Provisioning => "provisioning", Member => "member" });

/// The states a transition may go to, as an error lists them.
fn allowed<T: fmt::Display>(states: impl Iterator<Item = T>) -> String {
    let states: Vec<String> = states.map(|state| format!("`{state}`")).collect();
    if states.is_empty() {
        "nothing else".to_owned()
    } else {
        states.join(" or ")
    }
}

/// One node as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    pub name: String,
    id: PlainNodeId,
    /// `None` until the node has started once.
    generation: Option<u32>,
    /// Where other nodes reach it (`http://host:port`).
    pub address: String,
    pub roles: RoleSet,
    worker_state: WorkerState,
    metadata_server_state: MetadataServerState,
}

impl NodeConfig {
    /// A node as a stored node table holds it.
    pub fn from_parts(
        name: String,
        id: PlainNodeId,
        generation: Option<u32>,
        address: String,
        roles: RoleSet,
        worker_state: WorkerState,
        metadata_server_state: MetadataServerState,
    ) -> Self {
        Self {
            name,
            id,
            generation,
            address,
            roles,
            worker_state,
            metadata_server_state,
        }
    }

    pub fn id(&self) -> PlainNodeId {
        self.id
    }

    /// The id of the node's current process, or `None` when it has not started yet.
    pub fn current_generation(&self) -> Option<GenerationalNodeId> {
        self.generation.map(|g| self.id.with_generation(g))
    }

    pub fn worker_state(&self) -> WorkerState {
        self.worker_state
    }

    pub fn metadata_server_state(&self) -> MetadataServerState {
        self.metadata_server_state
    }
}

/// A slot in the node table: a node, or the tombstone of a removed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeEntry {
    Node(NodeConfig),
    Tombstone,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodesConfigError {
    #[error("node {0} is not in the cluster")]
    UnknownNode(PlainNodeId),
    #[error(
        "node {0} was removed from the cluster and cannot come back; start it under a new name"
    )]
    Removed(PlainNodeId),
    #[error("no node named `{0}` is in the cluster")]
    UnknownName(String),
    #[error("a node named `{name}` is already in the cluster as {id}")]
    NameTaken { name: String, id: PlainNodeId },
    #[error("the cluster has run out of node ids")]
    IdsExhausted,
    #[error("node id {id} is taken by node `{name}`")]
    IdTaken { id: PlainNodeId, name: String },
    #[error("node {0} has run out of generations")]
    GenerationsExhausted(PlainNodeId),
    #[error(
        "node {node}: the {role} state cannot change from {from} to {to}; from {from} it can \
         become {allowed}"
    )]
    InvalidTransition {
        node: PlainNodeId,
        role: Role,
        from: String,
        to: String,
        allowed: String,
    },
    #[error("node {node} cannot be removed while {reason}")]
    StillInUse {
        node: PlainNodeId,
        reason: &'static str,
    },
}

/// The versioned table of every node the cluster has known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesConfiguration {
    version: u64,
    cluster_name: String,
    nodes: BTreeMap<PlainNodeId, NodeEntry>,
}

impl NodesConfiguration {
    /// The empty table of a newly provisioned cluster, at version 1.
    pub fn new(cluster_name: impl Into<String>) -> Self {
        Self {
            version: 1,
            cluster_name: cluster_name.into(),
            nodes: BTreeMap::new(),
        }
    }

    /// A node table as it was stored: entries in any order, each under its own id. Refuses a
    /// table whose entries contradict each other (an entry under another id, two live nodes
    /// with one name).
    pub fn from_parts(
        version: u64,
        cluster_name: String,
        entries: Vec<(PlainNodeId, NodeEntry)>,
    ) -> Result<Self, NodesConfigError> {
        let mut nodes = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for (id, entry) in entries {
            if let NodeEntry::Node(node) = &entry {
                if node.id != id {
                    return Err(NodesConfigError::UnknownNode(id));
                }
                if !names.insert(node.name.clone()) {
                    return Err(NodesConfigError::NameTaken {
                        name: node.name.clone(),
                        id,
                    });
                }
            }
            nodes.insert(id, entry);
        }
        Ok(Self {
            version,
            cluster_name,
            nodes,
        })
    }

    /// Every slot, tombstones included, in id order.
    pub fn entries(&self) -> impl Iterator<Item = (PlainNodeId, &NodeEntry)> {
        self.nodes.iter().map(|(id, entry)| (*id, entry))
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// Live nodes, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeConfig> {
        self.nodes.values().filter_map(|entry| match entry {
            NodeEntry::Node(node) => Some(node),
            NodeEntry::Tombstone => None,
        })
    }

    pub fn find_by_name(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes().find(|node| node.name == name)
    }

    pub fn get(&self, id: PlainNodeId) -> Result<&NodeConfig, NodesConfigError> {
        match self.nodes.get(&id) {
            Some(NodeEntry::Node(node)) => Ok(node),
            Some(NodeEntry::Tombstone) => Err(NodesConfigError::Removed(id)),
            None => Err(NodesConfigError::UnknownNode(id)),
        }
    }

    fn get_mut(&mut self, id: PlainNodeId) -> Result<&mut NodeConfig, NodesConfigError> {
        match self.nodes.get_mut(&id) {
            Some(NodeEntry::Node(node)) => Ok(node),
            Some(NodeEntry::Tombstone) => Err(NodesConfigError::Removed(id)),
            None => Err(NodesConfigError::UnknownNode(id)),
        }
    }

    /// Adds a node that has not started yet and returns its new id: one more than any id the
    /// cluster has ever used.
    pub fn add_node(
        &mut self,
        name: &str,
        address: String,
        roles: RoleSet,
    ) -> Result<PlainNodeId, NodesConfigError> {
        let id = match self.nodes.keys().next_back() {
            Some(last) => last.next().ok_or(NodesConfigError::IdsExhausted)?,
            None => PlainNodeId::MIN,
        };
        self.insert_new(name, id, address, roles)
    }

    /// Adds a node that has not started yet under the id it asks for (`force-node-id`): refused
    /// when a live node has that id or a removed one had it.
    pub fn add_node_with_id(
        &mut self,
        name: &str,
        id: PlainNodeId,
        address: String,
        roles: RoleSet,
    ) -> Result<PlainNodeId, NodesConfigError> {
        match self.nodes.get(&id) {
            Some(NodeEntry::Tombstone) => return Err(NodesConfigError::Removed(id)),
            Some(NodeEntry::Node(node)) => {
                return Err(NodesConfigError::IdTaken {
                    id,
                    name: node.name.clone(),
                });
            }
            None => {}
        }
        self.insert_new(name, id, address, roles)
    }

    fn insert_new(
        &mut self,
        name: &str,
        id: PlainNodeId,
        address: String,
        roles: RoleSet,
    ) -> Result<PlainNodeId, NodesConfigError> {
        if let Some(existing) = self.find_by_name(name) {
            return Err(NodesConfigError::NameTaken {
                name: name.to_owned(),
                id: existing.id,
            });
        }
        let worker_state = if roles.contains(Role::Worker) {
            WorkerState::Provisioning
        } else {
            WorkerState::Disabled
        };
        let metadata_server_state = if roles.contains(Role::MetadataServer) {
            MetadataServerState::Provisioning
        } else {
            MetadataServerState::Standby
        };
        self.nodes.insert(
            id,
            NodeEntry::Node(NodeConfig {
                name: name.to_owned(),
                id,
                generation: None,
                address,
                roles,
                worker_state,
                metadata_server_state,
            }),
        );
        self.version += 1;
        Ok(id)
    }

    /// Records a start of the named node: its generation goes up by one (to 1 on its first
    /// start) and its address and roles are refreshed. Returns the new generational id.
    pub fn register_start(
        &mut self,
        name: &str,
        address: String,
        roles: RoleSet,
    ) -> Result<GenerationalNodeId, NodesConfigError> {
        let id = self
            .find_by_name(name)
            .map(NodeConfig::id)
            .ok_or_else(|| NodesConfigError::UnknownName(name.to_owned()))?;
        let node = self.get_mut(id)?;
        let generation = match node.generation {
            None => 1,
            Some(g) => g
                .checked_add(1)
                .ok_or(NodesConfigError::GenerationsExhausted(id))?,
        };
        node.generation = Some(generation);
        node.address = address;
        node.roles = roles;
        self.version += 1;
        Ok(id.with_generation(generation))
    }

    pub fn set_worker_state(
        &mut self,
        id: PlainNodeId,
        next: WorkerState,
    ) -> Result<(), NodesConfigError> {
        let node = self.get_mut(id)?;
        if !node.worker_state.can_become(next) {
            return Err(NodesConfigError::InvalidTransition {
                node: id,
                role: Role::Worker,
                from: node.worker_state.to_string(),
                to: next.to_string(),
                allowed: allowed(
                    [
                        WorkerState::Provisioning,
                        WorkerState::Active,
                        WorkerState::Draining,
                        WorkerState::Disabled,
                    ]
                    .into_iter()
                    .filter(|state| {
                        *state != node.worker_state && node.worker_state.can_become(*state)
                    }),
                ),
            });
        }
        if node.worker_state != next {
            node.worker_state = next;
            self.version += 1;
        }
        Ok(())
    }

    /// Sets the worker state without checking the transition (an operator's `--force`).
    pub fn force_worker_state(
        &mut self,
        id: PlainNodeId,
        next: WorkerState,
    ) -> Result<(), NodesConfigError> {
        let node = self.get_mut(id)?;
        if node.worker_state != next {
            node.worker_state = next;
            self.version += 1;
        }
        Ok(())
    }

    pub fn set_metadata_server_state(
        &mut self,
        id: PlainNodeId,
        next: MetadataServerState,
    ) -> Result<(), NodesConfigError> {
        let node = self.get_mut(id)?;
        if !node.metadata_server_state.can_become(next) {
            return Err(NodesConfigError::InvalidTransition {
                node: id,
                role: Role::MetadataServer,
                from: node.metadata_server_state.to_string(),
                to: next.to_string(),
                allowed: allowed(
                    [
                        MetadataServerState::Standby,
                        MetadataServerState::Provisioning,
                        MetadataServerState::Member,
                    ]
                    .into_iter()
                    .filter(|state| {
                        *state != node.metadata_server_state
                            && node.metadata_server_state.can_become(*state)
                    }),
                ),
            });
        }
        if node.metadata_server_state != next {
            node.metadata_server_state = next;
            self.version += 1;
        }
        Ok(())
    }

    /// Replaces the node with a tombstone. A node that still holds partition replicas or is a
    /// metadata member must be drained or removed from the metadata cluster first.
    pub fn remove_node(&mut self, id: PlainNodeId) -> Result<(), NodesConfigError> {
        let node = self.get(id)?;
        if matches!(
            node.worker_state,
            WorkerState::Active | WorkerState::Draining
        ) {
            return Err(NodesConfigError::StillInUse {
                node: id,
                reason: "its worker is active or draining: drain it until it is disabled",
            });
        }
        if node.metadata_server_state == MetadataServerState::Member {
            return Err(NodesConfigError::StillInUse {
                node: id,
                reason: "it is a metadata-server member: remove it from the metadata cluster",
            });
        }
        self.nodes.insert(id, NodeEntry::Tombstone);
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_with(names: &[&str]) -> NodesConfiguration {
        let mut table = NodesConfiguration::new("test");
        for name in names {
            table
                .add_node(name, format!("http://{name}:5122"), RoleSet::all())
                .expect("fresh name");
        }
        table
    }

    fn id(n: u32) -> PlainNodeId {
        PlainNodeId::new(n).expect("non-zero")
    }

    #[test]
    fn ids_start_at_one_and_are_never_reused() {
        let mut table = table_with(&["a", "b"]);
        assert_eq!(table.find_by_name("a").map(NodeConfig::id), Some(id(1)));
        assert_eq!(table.find_by_name("b").map(NodeConfig::id), Some(id(2)));
        table
            .remove_node(id(2))
            .expect("b never started its worker");
        let c = table
            .add_node("c", "http://c:5122".into(), RoleSet::all())
            .expect("fresh name");
        assert_eq!(c, id(3), "the removed node's id stays retired");
        assert_eq!(table.get(id(2)), Err(NodesConfigError::Removed(id(2))));
        assert_eq!(table.get(id(9)), Err(NodesConfigError::UnknownNode(id(9))));
        assert_eq!(table.nodes().count(), 2);
    }

    #[test]
    fn names_are_unique_among_live_nodes() {
        let mut table = table_with(&["a"]);
        let err = table
            .add_node("a", "http://elsewhere:5122".into(), RoleSet::all())
            .expect_err("duplicate name");
        assert_eq!(
            err,
            NodesConfigError::NameTaken {
                name: "a".into(),
                id: id(1)
            }
        );
        table.remove_node(id(1)).expect("not in use");
        // The name is free again, but it comes back as a new node.
        let again = table
            .add_node("a", "http://a:5122".into(), RoleSet::all())
            .expect("name freed by removal");
        assert_eq!(again, id(2));
    }

    #[test]
    fn an_entry_exists_before_its_first_start_and_generations_grow() {
        let mut table = table_with(&["a"]);
        let node = table.get(id(1)).expect("present");
        assert_eq!(node.current_generation(), None, "not started yet");
        let first = table
            .register_start("a", "http://a:5122".into(), RoleSet::all())
            .expect("known name");
        assert_eq!(first.to_string(), "N1:1");
        let second = table
            .register_start("a", "http://a2:5122".into(), RoleSet::all())
            .expect("known name");
        assert!(second.is_newer_than(first));
        assert_eq!(
            table.get(id(1)).map(|n| n.address.as_str()),
            Ok("http://a2:5122")
        );
        assert_eq!(
            table.register_start("zz", String::new(), RoleSet::all()),
            Err(NodesConfigError::UnknownName("zz".into()))
        );
    }

    #[test]
    fn every_change_bumps_the_version_and_no_ops_do_not() {
        let mut table = NodesConfiguration::new("test");
        assert_eq!(table.version(), 1);
        table
            .add_node("a", "http://a:5122".into(), RoleSet::all())
            .expect("fresh");
        assert_eq!(table.version(), 2);
        table
            .register_start("a", "http://a:5122".into(), RoleSet::all())
            .expect("known");
        assert_eq!(table.version(), 3);
        table
            .set_worker_state(id(1), WorkerState::Active)
            .expect("allowed");
        assert_eq!(table.version(), 4);
        table
            .set_worker_state(id(1), WorkerState::Active)
            .expect("same state");
        assert_eq!(table.version(), 4);
    }

    #[test]
    fn worker_states_follow_the_lifecycle() {
        use WorkerState::*;
        let mut table = table_with(&["a"]);
        assert_eq!(table.get(id(1)).map(|n| n.worker_state()), Ok(Provisioning));
        let bad = table.set_worker_state(id(1), Draining);
        assert!(
            matches!(bad, Err(NodesConfigError::InvalidTransition { .. })),
            "{bad:?}"
        );
        for next in [Active, Draining, Active, Draining, Disabled, Active] {
            table.set_worker_state(id(1), next).expect("allowed step");
        }
        assert!(!Active.can_become(Disabled), "must drain first");
        assert!(!Disabled.can_become(Draining));
        assert!(!Active.can_become(Provisioning));
    }

    #[test]
    fn roles_decide_the_initial_states() {
        let mut table = NodesConfiguration::new("test");
        let only_ingress: RoleSet = [Role::Ingress].into_iter().collect();
        let n = table
            .add_node("edge", "http://edge:5122".into(), only_ingress)
            .expect("fresh");
        let node = table.get(n).expect("present");
        assert_eq!(node.worker_state(), WorkerState::Disabled);
        assert_eq!(node.metadata_server_state(), MetadataServerState::Standby);
    }

    #[test]
    fn metadata_membership_follows_the_lifecycle_and_blocks_removal() {
        use MetadataServerState::*;
        let mut table = table_with(&["a"]);
        table
            .set_metadata_server_state(id(1), Member)
            .expect("provisioning to member");
        assert!(matches!(
            table.remove_node(id(1)),
            Err(NodesConfigError::StillInUse { .. })
        ));
        assert!(
            !Standby.can_become(Member),
            "must join through provisioning"
        );
        table
            .set_metadata_server_state(id(1), Standby)
            .expect("member leaves");
        table.remove_node(id(1)).expect("no longer in use");
    }

    #[test]
    fn active_workers_cannot_be_removed() {
        let mut table = table_with(&["a"]);
        table
            .set_worker_state(id(1), WorkerState::Active)
            .expect("allowed");
        assert!(matches!(
            table.remove_node(id(1)),
            Err(NodesConfigError::StillInUse { .. })
        ));
    }

    #[test]
    fn survives_a_json_round_trip() {
        let mut table = table_with(&["a", "b"]);
        table
            .register_start("a", "http://a:5122".into(), RoleSet::all())
            .expect("known");
        table
            .set_metadata_server_state(id(2), MetadataServerState::Member)
            .expect("allowed");
        table
            .set_metadata_server_state(id(2), MetadataServerState::Standby)
            .expect("allowed");
        table.remove_node(id(2)).expect("not in use");
        let json = serde_json::to_string(&table).expect("serializable");
        let back: NodesConfiguration = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(back, table);
    }
}
