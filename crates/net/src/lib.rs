//! The node-to-node channel: the gRPC services every node serves on its node port (raft traffic
//! of its raft groups, the metadata store for nodes that are not its leader, the node's own
//! status and the join of new nodes), the envelope every message carries, the typed errors a
//! receiver answers with, the pool of connections to other nodes, and the raft transport that
//! openraft groups use over it.
//!
//! Every request names the cluster, its sender and its intended receiver ([`Header`]). A
//! receiver checks them before anything else ([`NetIdentity::check`]): a message for another
//! cluster, another node or an older generation of this node is refused with a [`NetError`]
//! that tells the sender to refresh its view, logged, and the node carries on. Nothing a peer
//! sends can panic a node: decoding failures are errors, messages are bounded in size
//! ([`MAX_MESSAGE_SIZE`]), connections and requests have timeouts.
//!
//! This crate knows the wire, not the services' meaning: the metadata server, the node and the
//! worker implement the generated service traits.

mod connections;
mod envelope;
mod error;
mod raft;

pub use connections::{ConnectionOptions, Connections};
pub use envelope::{NetIdentity, Sender};
pub use error::NetError;
pub use raft::{RaftEndpoint, RaftGroups, RaftTransport, raft_service};

/// Generated from `proto/net.proto`.
pub mod proto {
    tonic::include_proto!("reprise.net.v1");
}

pub use proto::{Header, NodeRef};

/// The largest message the channel sends or accepts, either way (a raft batch, a snapshot
/// chunk, a metadata value).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
