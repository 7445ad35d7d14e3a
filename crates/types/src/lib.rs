//! Ids and small domain newtypes that every Reprise crate shares: node ids (plain and
//! generational), partition ids and keys, invocation and deployment ids with their text forms,
//! and wall-clock time as milliseconds since the epoch.
//! This crate holds identifiers only; behaviour belongs in the crate that owns the concept.

mod ids;
mod node_id;
mod partition;
mod time;

pub use ids::{DeploymentId, IdParseError, InvocationId};
pub use node_id::{GenerationalNodeId, NodeIdParseError, PlainNodeId};
pub use partition::{PartitionId, PartitionKey};
pub use time::MillisSinceEpoch;
