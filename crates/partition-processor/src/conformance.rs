//! openraft's storage conformance suite, run against a partition's log store and state machine
//! in the shared partition database.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use reprise_raft_storage::{LogStore, LogStoreConfig};
use reprise_types::{PartitionId, PartitionKey};

use crate::raft::{PartitionStateMachine, PartitionTypes, key_prefix};
use crate::rocksdb_store::{CF_LOG, CF_RAFT, RocksDbStore};

struct TempStore;

fn io_error(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageError::IO {
        source: openraft::StorageIOError::write(&e),
    }
}

impl
    StoreBuilder<PartitionTypes, LogStore<PartitionTypes>, PartitionStateMachine, tempfile::TempDir>
    for TempStore
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            LogStore<PartitionTypes>,
            PartitionStateMachine,
        ),
        StorageError<u64>,
    > {
        let dir = tempfile::tempdir().map_err(io_error)?;
        let store = RocksDbStore::open(dir.path())
            .map_err(|e| io_error(std::io::Error::other(e.to_string())))?;
        // A partition that is not the first: its keys carry a non-zero prefix.
        let partition = PartitionId::new(3);
        let (actions, _) = tokio::sync::mpsc::unbounded_channel();
        let snapshots = reprise_raft_storage::SnapshotDir::open(dir.path().join("snapshots"))
            .map_err(io_error)?;
        let machine = PartitionStateMachine::open(
            store.clone(),
            partition,
            PartitionKey::new(1 << 62)..=PartitionKey::new((1 << 63) - 1),
            snapshots,
            actions,
        )?;
        let log = LogStore::new(
            store.db(),
            LogStoreConfig {
                log_cf: CF_LOG,
                raft_cf: CF_RAFT,
                prefix: key_prefix(partition),
            },
        );
        Ok((dir, log, machine))
    }
}

#[test]
fn passes_the_openraft_storage_suite() {
    Suite::test_all(TempStore).expect("storage conformance");
}
