//! Raft storage shared by every raft group of a node: the log store ([`LogStore`]) that keeps a
//! group's log entries, vote and commit point in RocksDB, and the network of a group with a
//! single member ([`SingleMemberNetwork`]). The metadata group and every partition's group use
//! the same code; each group owns a key prefix inside two column families, so many groups can
//! share one database (and with it one write-ahead log, whose fsyncs they then share). Also
//! shared: the binary stored forms of openraft's types ([`codec`]) and snapshots as files cut
//! from a consistent view and streamed in bounded pieces ([`SnapshotDir`]).

// openraft's storage traits fix `StorageError` as the error type; our helpers return it too.
#![allow(clippy::result_large_err)]

pub mod codec;
mod log_store;
mod network;
pub mod rpc;
mod snapshot;

pub use codec::{DecodeError, GroupTypes, PayloadCodec};
pub use log_store::{LogStore, LogStoreConfig};
pub use network::SingleMemberNetwork;
pub use reprise_rocksdb::blocking;
pub use snapshot::{
    InstallPlan, PendingSnapshot, RowFilter, SnapshotBuilder, SnapshotDir, SnapshotTable,
};

/// Result of the raft storage traits, whose error type openraft fixes.
pub type StorageResult<T> = Result<T, openraft::StorageError<u64>>;

/// Wraps an IO failure of raft storage in openraft's error type.
pub fn storage_io(err: openraft::StorageIOError<u64>) -> openraft::StorageError<u64> {
    openraft::StorageError::IO { source: err }
}

/// Write options that fsync the write-ahead log before returning.
pub fn synced() -> rocksdb::WriteOptions {
    let mut options = rocksdb::WriteOptions::default();
    options.set_sync(true);
    options
}
