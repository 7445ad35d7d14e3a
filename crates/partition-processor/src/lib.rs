//! The partition processor: the deterministic state machine of one partition. It applies the
//! records of the partition log ([`Record`]) to the partition's tables ([`PartitionStore`]:
//! invocation status, journal, object state, object locks and inboxes, timers; outbox, promises
//! and dedup come with the issues that need them) and emits [`Action`]s that only the leader carries out.
//!
//! The tables live in RocksDB ([`RocksDbStore`], one synced batch per commit) or in memory
//! ([`MemoryStore`], the model the RocksDB tables are tested against). Running the state
//! machine inside the partition's raft group, and the leader's actuators, are built around it.

mod action;
mod codec;
#[cfg(test)]
mod conformance;
pub mod ids;
mod partition;
mod raft;
mod record;
mod rocksdb_store;
#[cfg(test)]
mod snapshot_tests;
mod state_machine;
mod status;
mod storage;

pub use action::Action;
pub use partition::{
    Committed, Partition, PartitionError, PartitionHandle, PartitionOptions, ProposeError,
};
pub use raft::{PartitionTypes, RecordBatch};
pub use record::{
    Callee, Delivery, EffectKind, Fence, HandlerType, InvocationResult, InvocationTarget,
    InvokerEffect, OutboxMessage, Record, ResponseSink, ResultNotification, Retention,
    ServiceInvocation, Signal, SignalId, SignalResult, StoredFrame, TerminationMode, TimerKey,
    TimerKind,
};
pub use rocksdb_store::{FORMAT_VERSION, RocksDbStore, Table, Transaction};
pub use state_machine::{
    ApplyContext, PromiseCommand, apply, is_implemented, promise_of_command, query_of_command,
    signal_of_command,
};
pub use status::{InFlight, InvocationStatus, ObjectLock, PinnedDeployment, Promise, Waiting};
pub use storage::{MemoryStore, ObjectId, PartitionStore, StorageError};
