//! The raft type configuration of the metadata store, and its commands.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// Raft types of the metadata group: node ids are plain node ids, entries carry [`Command`]s.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The version of a stored value: 1 for the first write of a key, one more for every write
/// after it. Writers compare-and-set on it.
pub type Version = u64;

/// A value with its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedValue {
    pub version: Version,
    pub value: Bytes,
}

/// What must hold for a write to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// Always apply.
    None,
    /// Apply only if the key has no value.
    DoesNotExist,
    /// Apply only if the key's current version is this one.
    MatchesVersion(Version),
}

/// A change to the store, as it is replicated in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put {
        key: String,
        value: Bytes,
        precondition: Precondition,
    },
    Delete {
        key: String,
        precondition: Precondition,
    },
}

impl Command {
    pub fn key(&self) -> &str {
        match self {
            Command::Put { key, .. } | Command::Delete { key, .. } => key,
        }
    }
}

/// The outcome of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// The write applied; the key is now at this version (`None` after a delete).
    Applied { version: Option<Version> },
    /// The precondition did not hold; nothing changed. Carries the key's current version.
    PreconditionFailed { current: Option<Version> },
    /// A log entry without a command (leader blank, membership change).
    NoCommand,
}
