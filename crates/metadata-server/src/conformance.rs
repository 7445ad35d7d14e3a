//! openraft's storage conformance suite, run against our RocksDB log store and state machine.

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

use crate::state_machine::{SharedState, StateMachine};
use crate::types::TypeConfig;
use reprise_raft_storage::LogStore;

struct TempStore;

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachine, tempfile::TempDir> for TempStore {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<TypeConfig>, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::IO {
            source: openraft::StorageIOError::write(&e),
        })?;
        let io = |e: crate::MetadataError| StorageError::IO {
            source: openraft::StorageIOError::write(&e),
        };
        let db = crate::open_db(&dir.path().join("store")).map_err(io)?;
        let snapshots = crate::open_snapshot_dir(dir.path().join("snapshots")).map_err(io)?;
        let machine = StateMachine::open(db.clone(), Arc::new(SharedState::default()), snapshots)?;
        Ok((dir, crate::log_store(db), machine))
    }
}

#[test]
fn passes_the_openraft_storage_suite() {
    Suite::test_all(TempStore).expect("storage conformance");
}
