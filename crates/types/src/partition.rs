//! Partitions: the 64-bit partition key space is split into contiguous ranges, each owned by
//! one partition. A keyed call's partition key is a hash of its key, so a key always maps to
//! the same partition.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The id of a partition, `0..num_partitions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionId(u16);

impl PartitionId {
    pub const fn new(id: u16) -> Self {
        Self(id)
    }

    pub const fn as_u16(self) -> u16 {
        self.0
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

/// A point in the partition key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionKey(u64);

impl PartitionKey {
    pub const MIN: PartitionKey = PartitionKey(0);
    pub const MAX: PartitionKey = PartitionKey(u64::MAX);

    pub const fn new(key: u64) -> Self {
        Self(key)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
