//! The partition table: which partition owns which range of the 64-bit partition key space. It
//! is fixed when the cluster is provisioned (`default-num-partitions` equal ranges) and kept in
//! the metadata store, so every node and every restart agree on it.

use bytes::Bytes;
use reprise_metadata_server::{MetadataClient, MetadataError, Precondition};
use reprise_types::{PartitionId, PartitionKey};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionEntry {
    pub id: PartitionId,
    /// First key of the range.
    pub start: PartitionKey,
    /// Last key of the range (inclusive).
    pub end: PartitionKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionTable {
    pub partitions: Vec<PartitionEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum PartitionTableError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("the stored partition table is not readable: {0}")]
    Corrupt(String),
    #[error("the number of partitions must be between 1 and 65535, not {0}")]
    Count(u32),
}

impl PartitionTable {
    pub const KEY: &'static str = "partition-table";

    /// `count` partitions with equal ranges covering every key.
    pub fn even(count: u32) -> Result<Self, PartitionTableError> {
        let count16 = u16::try_from(count)
            .ok()
            .filter(|c| *c > 0)
            .ok_or(PartitionTableError::Count(count))?;
        let width = u64::MAX / u64::from(count16);
        let partitions = (0..count16)
            .map(|i| {
                let start = width * u64::from(i);
                let end = if i + 1 == count16 {
                    u64::MAX
                } else {
                    start + width - 1
                };
                PartitionEntry {
                    id: PartitionId::new(i),
                    start: PartitionKey::new(start),
                    end: PartitionKey::new(end),
                }
            })
            .collect();
        Ok(Self { partitions })
    }

    /// The partition owning `key`.
    pub fn find(&self, key: PartitionKey) -> Option<&PartitionEntry> {
        // Ranges are sorted and contiguous: binary search on the start.
        let index = self.partitions.partition_point(|p| p.start <= key);
        index
            .checked_sub(1)
            .and_then(|i| self.partitions.get(i))
            .filter(|p| key <= p.end)
    }

    /// The stored table, or a new one with `count` partitions when the cluster has none yet.
    pub async fn load_or_create(
        metadata: &MetadataClient,
        count: u32,
    ) -> Result<Self, PartitionTableError> {
        if let Some(stored) = metadata.get(Self::KEY).await? {
            return serde_json::from_slice(&stored.value)
                .map_err(|err| PartitionTableError::Corrupt(err.to_string()));
        }
        let table = Self::even(count)?;
        let bytes = serde_json::to_vec(&table)
            .map_err(|err| PartitionTableError::Corrupt(err.to_string()))?;
        match metadata
            .put(Self::KEY, Bytes::from(bytes), Precondition::DoesNotExist)
            .await
        {
            Ok(_) => Ok(table),
            // Somebody else created it first: theirs is the table.
            Err(MetadataError::PreconditionFailed { .. }) => {
                Box::pin(Self::load_or_create(metadata, count)).await
            }
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ranges_cover_every_key_exactly_once() {
        for count in [1, 2, 3, 24, 1000] {
            let table = PartitionTable::even(count).expect("table");
            assert_eq!(table.partitions.len(), count as usize);
            assert_eq!(table.partitions[0].start, PartitionKey::MIN);
            assert_eq!(
                table.partitions.last().expect("last").end,
                PartitionKey::MAX
            );
            for pair in table.partitions.windows(2) {
                assert_eq!(pair[0].end.as_u64() + 1, pair[1].start.as_u64());
            }
            for key in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
                let key = PartitionKey::new(key);
                let found = table.find(key).expect("every key has a partition");
                assert!(found.start <= key && key <= found.end);
            }
        }
        assert!(PartitionTable::even(0).is_err());
        assert!(PartitionTable::even(70_000).is_err());
    }
}
