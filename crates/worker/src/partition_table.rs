//! The partition table: which partition owns which range of the 64-bit partition key space. It
//! is fixed when the cluster is provisioned (`default-num-partitions` equal ranges) and kept in
//! the metadata store, so every node and every restart agree on it.

use bytes::Bytes;
use prost::Message;
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
    /// The plain id of the node that runs the partition's one copy (0 in tables written
    /// before placement existed, which only single nodes, node 1, wrote).
    #[serde(default)]
    pub node: u32,
}

impl PartitionEntry {
    /// Whether the node with plain id `node` runs this partition.
    pub fn runs_on(&self, node: u32) -> bool {
        let placed = if self.node == 0 { 1 } else { self.node };
        placed == node
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionTable {
    pub partitions: Vec<PartitionEntry>,
}

/// The stored form of a [`PartitionTable`] (field numbers are the format).
#[derive(Clone, PartialEq, prost::Message)]
struct StoredTable {
    #[prost(message, repeated, tag = "1")]
    partitions: Vec<StoredEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StoredEntry {
    #[prost(uint32, tag = "1")]
    id: u32,
    #[prost(uint64, tag = "2")]
    start: u64,
    #[prost(uint64, tag = "3")]
    end: u64,
    #[prost(uint32, tag = "4")]
    node: u32,
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

    /// `count` partitions with equal ranges covering every key, all placed on node `node`.
    pub fn even(count: u32, node: u32) -> Result<Self, PartitionTableError> {
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
                    node,
                }
            })
            .collect();
        Ok(Self { partitions })
    }

    /// The stored form: [`StoredTable`], a prost message.
    pub fn encode(&self) -> Vec<u8> {
        StoredTable {
            partitions: self
                .partitions
                .iter()
                .map(|p| StoredEntry {
                    id: u32::from(p.id.as_u16()),
                    start: p.start.as_u64(),
                    end: p.end.as_u64(),
                    node: p.node,
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// Decodes and checks a stored table: ids in range and distinct, and ranges sorted, contiguous and
    /// covering every key — what [`find`](Self::find) relies on. A table stored as JSON by an
    /// earlier build still reads.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let table: PartitionTable = if bytes.first() == Some(&b'{') {
            serde_json::from_slice(bytes).map_err(|err| format!("a JSON table: {err}"))?
        } else {
            let stored = StoredTable::decode(bytes).map_err(|err| err.to_string())?;
            let partitions = stored
                .partitions
                .into_iter()
                .map(|entry| {
                    let id = u16::try_from(entry.id)
                        .map_err(|_| format!("partition id {} is over 65535", entry.id))?;
                    Ok(PartitionEntry {
                        id: PartitionId::new(id),
                        start: PartitionKey::new(entry.start),
                        end: PartitionKey::new(entry.end),
                        node: entry.node,
                    })
                })
                .collect::<Result<_, String>>()?;
            PartitionTable { partitions }
        };
        let mut ids = std::collections::BTreeSet::new();
        let mut next = Some(0u64);
        for entry in &table.partitions {
            if !ids.insert(entry.id) {
                return Err(format!("partition {} appears twice", entry.id));
            }
            if Some(entry.start.as_u64()) != next || entry.end < entry.start {
                return Err(format!(
                    "partition {} covers {}..={}, which does not follow the partition before it",
                    entry.id,
                    entry.start.as_u64(),
                    entry.end.as_u64()
                ));
            }
            next = entry.end.as_u64().checked_add(1);
        }
        if next.is_some() {
            return Err("the partitions do not cover every partition key".into());
        }
        Ok(table)
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

    /// The stored table, or a new one with `count` partitions, all on node `node`, when the
    /// cluster has none yet.
    pub async fn load_or_create(
        metadata: &MetadataClient,
        count: u32,
        node: u32,
    ) -> Result<Self, PartitionTableError> {
        if let Some(stored) = metadata.get(Self::KEY).await? {
            return Self::decode(&stored.value).map_err(PartitionTableError::Corrupt);
        }
        let table = Self::even(count, node)?;
        match metadata
            .put(
                Self::KEY,
                Bytes::from(table.encode()),
                Precondition::DoesNotExist,
            )
            .await
        {
            Ok(_) => Ok(table),
            // Somebody else created it first: theirs is the table.
            Err(MetadataError::PreconditionFailed { .. }) => {
                Box::pin(Self::load_or_create(metadata, count, node)).await
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
            let table = PartitionTable::even(count, 1).expect("table");
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
        assert!(PartitionTable::even(0, 1).is_err());
        assert!(PartitionTable::even(70_000, 1).is_err());
    }

    #[test]
    fn a_table_decodes_to_what_was_encoded_and_a_json_one_still_reads() {
        let table = PartitionTable::even(24, 1).expect("table");
        assert_eq!(PartitionTable::decode(&table.encode()), Ok(table.clone()));
        let json = serde_json::to_vec(&table).expect("json");
        assert_eq!(PartitionTable::decode(&json), Ok(table));
    }

    #[test]
    fn a_table_with_gaps_overlaps_or_bad_ids_is_refused() {
        let entry = |id, start, end| StoredEntry {
            id,
            start,
            end,
            node: 1,
        };
        let cases = [
            (vec![entry(0, 0, 10)], "cover every"),
            (
                vec![entry(0, 0, 10), entry(1, 12, u64::MAX)],
                "does not follow",
            ),
            (
                vec![entry(0, 0, 10), entry(1, 5, u64::MAX)],
                "does not follow",
            ),
            (vec![entry(70_000, 0, u64::MAX)], "over 65535"),
            (
                vec![entry(3, 0, 10), entry(3, 11, u64::MAX)],
                "appears twice",
            ),
            (vec![], "cover every"),
        ];
        for (partitions, expected) in cases {
            let bytes = StoredTable { partitions }.encode_to_vec();
            let err = PartitionTable::decode(&bytes).expect_err("refused");
            assert!(err.contains(expected), "{err}");
        }
    }
}
