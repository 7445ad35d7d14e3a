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

    /// The partition key of an object or workflow key: FNV-1a over its bytes. It decides
    /// where the key's state lives, so it must never change.
    pub fn from_key(key: &str) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let hash = key.bytes().fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        });
        Self(hash)
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::PartitionKey;

    #[test]
    fn key_hash_is_fnv1a_and_stable() {
        // Published FNV-1a 64 vectors: the mapping of keys to partitions depends on them.
        assert_eq!(PartitionKey::from_key("").as_u64(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(PartitionKey::from_key("a").as_u64(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            PartitionKey::from_key("foobar").as_u64(),
            0x8594_4171_f739_67e8
        );
    }
}
