//! A running partition: its raft group (log and state machine in the node's partition
//! database), the proposer that turns proposals into log entries, and the leadership flag its
//! actuators follow.
//!
//! Proposals are batched: everything waiting when the proposer wakes becomes one log entry, so
//! under load many records share one append and one fsync. A proposal's [`Committed`] resolves
//! once its entry is committed *and applied*, so whoever waits on it can read what it wrote.
//! Proposals enqueued one after another from one task are applied in that order.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use reprise_raft_storage::{LogStore, LogStoreConfig, SingleMemberNetwork, SnapshotDir};
use reprise_types::{MillisSinceEpoch, PartitionId, PartitionKey};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::action::Action;
use crate::raft::{PartitionStateMachine, PartitionTypes, RecordBatch, key_prefix};
use crate::record::Record;
use crate::rocksdb_store::{CF_LOG, CF_RAFT, RocksDbStore};

/// Most records in one log entry.
const MAX_BATCH: usize = 256;
/// Most bytes of records (about) in one log entry; a larger record goes alone.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Proposals waiting for the proposer; senders wait when it is full (backpressure).
const QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("partition {partition}: {reason}")]
    Start {
        partition: PartitionId,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("partition {0} is not led by this node")]
    NotLeader(PartitionId),
    #[error("partition {partition} is unavailable: {reason}")]
    Unavailable {
        partition: PartitionId,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct PartitionOptions {
    pub id: PartitionId,
    pub range: RangeInclusive<PartitionKey>,
    /// This node's member id in the group.
    pub member_id: u64,
    pub address: String,
    pub cluster_name: String,
    pub store: RocksDbStore,
    /// Where this partition keeps its snapshot files (one directory per partition).
    pub snapshot_dir: PathBuf,
    /// A snapshot is cut after this many log entries; the log before it is then purged but for
    /// a tenth of it (kept for replicas that are slightly behind).
    pub snapshot_interval: u64,
}

impl PartitionOptions {
    pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 10_000;
}

struct Proposal {
    record: Record,
    committed: oneshot::Sender<Result<(), ProposeError>>,
}

/// Resolves when a proposed record is committed and applied.
pub struct Committed {
    partition: PartitionId,
    receiver: oneshot::Receiver<Result<(), ProposeError>>,
}

impl Committed {
    pub async fn wait(self) -> Result<(), ProposeError> {
        self.receiver
            .await
            .unwrap_or_else(|_| Err(stopped(self.partition)))
    }
}

fn stopped(partition: PartitionId) -> ProposeError {
    ProposeError::Unavailable {
        partition,
        reason: "the partition is stopping".to_owned(),
    }
}

/// Proposes records to a partition and reads its committed rows. Cheap to clone.
#[derive(Clone)]
pub struct PartitionHandle {
    id: PartitionId,
    range: RangeInclusive<PartitionKey>,
    store: RocksDbStore,
    proposals: mpsc::Sender<Proposal>,
    leader: watch::Receiver<Option<u64>>,
    /// The epoch this node announced for its current leadership; `None` while it announced
    /// none (not leading, or stepping down).
    epoch: Arc<watch::Sender<Option<u64>>>,
}

impl PartitionHandle {
    pub fn id(&self) -> PartitionId {
        self.id
    }

    pub fn range(&self) -> RangeInclusive<PartitionKey> {
        self.range.clone()
    }

    /// The committed rows, for reading (the invoker reads journals from here).
    pub fn store(&self) -> &RocksDbStore {
        &self.store
    }

    /// The committed status of an invocation, read on the blocking pool.
    pub async fn read_status(
        &self,
        id: reprise_types::InvocationId,
    ) -> Result<Option<crate::InvocationStatus>, crate::StorageError> {
        let store = self.store.clone();
        reprise_rocksdb::blocking(move || store.read_status(id)).await
    }

    /// The committed journal entries `0..length` of an invocation, read on the blocking pool.
    pub async fn read_journal(
        &self,
        id: reprise_types::InvocationId,
        length: u32,
    ) -> Result<Vec<crate::StoredFrame>, crate::StorageError> {
        let store = self.store.clone();
        reprise_rocksdb::blocking(move || store.read_journal(id, length)).await
    }

    /// An object's committed state if it takes at most `limit` bytes (see
    /// [`RocksDbStore::read_state_within`]), read on the blocking pool.
    pub async fn read_state_within(
        &self,
        object: crate::ObjectId,
        limit: usize,
    ) -> Result<Option<Vec<(bytes::Bytes, bytes::Bytes)>>, crate::StorageError> {
        let store = self.store.clone();
        reprise_rocksdb::blocking(move || store.read_state_within(&object, limit)).await
    }

    /// Up to `limit` invoked invocations of the partition after `after` (see
    /// [`RocksDbStore::invoked_in`]), read on the blocking pool.
    pub async fn invoked_after(
        &self,
        after: Option<reprise_types::InvocationId>,
        limit: usize,
    ) -> Result<Vec<reprise_types::InvocationId>, crate::StorageError> {
        let store = self.store.clone();
        let range = self.range.clone();
        reprise_rocksdb::blocking(move || store.invoked_in(&range, after, limit)).await
    }

    /// Up to `limit` messages of the partition's outbox after `after` (see
    /// [`RocksDbStore::read_outbox`]), read on the blocking pool.
    pub async fn outbox_after(
        &self,
        after: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, crate::OutboxMessage)>, crate::StorageError> {
        let store = self.store.clone();
        let start = *self.range.start();
        reprise_rocksdb::blocking(move || store.read_outbox(start, after, limit, max_bytes)).await
    }

    /// Follows whether this node's raft group leads the partition: `Some(term)` while it
    /// does. It turns `Some` only once an entry of the term has been applied, so everything
    /// the previous leader committed is in the tables.
    pub fn leadership(&self) -> watch::Receiver<Option<u64>> {
        self.leader.clone()
    }

    /// The epoch of this node's current leadership, once announced ([`Self::announce`]).
    pub fn epoch(&self) -> Option<u64> {
        *self.epoch.borrow()
    }

    /// Follows [`Self::epoch`].
    pub fn epochs(&self) -> watch::Receiver<Option<u64>> {
        self.epoch.subscribe()
    }

    /// Begins a leadership: proposes an epoch one above the partition's current one and, once
    /// it applied as the current epoch, makes it this node's. Only effects stamped with it are
    /// taken from then on. Call it while the raft group leads.
    pub async fn announce(&self) -> Result<u64, ProposeError> {
        let start = *self.range.start();
        let read = |store: RocksDbStore| async move {
            reprise_rocksdb::blocking(move || store.read_leader_epoch(start)).await
        };
        let unavailable = |reason: String| ProposeError::Unavailable {
            partition: self.id,
            reason,
        };
        let current = read(self.store.clone())
            .await
            .map_err(|err| unavailable(err.to_string()))?;
        let next = current.saturating_add(1);
        self.propose(Record::AnnounceLeader { epoch: next }).await?;
        let now = read(self.store.clone())
            .await
            .map_err(|err| unavailable(err.to_string()))?;
        if now != next {
            return Err(unavailable(format!(
                "another leadership announced epoch {now} meanwhile"
            )));
        }
        self.epoch.send_replace(Some(next));
        Ok(next)
    }

    /// Ends this node's leadership epoch (the raft group may still lead): whatever runs for it
    /// stops being taken once a new epoch is announced. Returns the epoch that ended.
    pub fn relinquish(&self) -> Option<u64> {
        self.epoch.send_replace(None)
    }

    /// Steps down as the partition's leader: the epoch ends, and its owner (the worker's
    /// actuator) stops what ran for it and announces a new one. `NotLeader` when this node had
    /// no epoch.
    pub fn step_down(&self) -> Result<u64, ProposeError> {
        self.relinquish().ok_or(ProposeError::NotLeader(self.id))
    }

    /// Waits (up to `timeout`) until this node leads the partition.
    pub async fn wait_for_leadership(&self, timeout: Duration) -> Result<(), ProposeError> {
        let mut leader = self.leader.clone();
        match tokio::time::timeout(timeout, leader.wait_for(Option::is_some)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(stopped(self.id)),
            Err(_) => Err(ProposeError::NotLeader(self.id)),
        }
    }

    /// Queues `record`; records queued one after another are applied in that order.
    pub async fn enqueue(&self, record: Record) -> Result<Committed, ProposeError> {
        let (committed, receiver) = oneshot::channel();
        self.proposals
            .send(Proposal { record, committed })
            .await
            .map_err(|_| stopped(self.id))?;
        Ok(Committed {
            partition: self.id,
            receiver,
        })
    }

    /// Proposes `record` and waits until it is committed and applied.
    pub async fn propose(&self, record: Record) -> Result<(), ProposeError> {
        self.enqueue(record).await?.wait().await
    }
}

/// A started partition. Stop it with [`Partition::shutdown`].
pub struct Partition {
    raft: Raft<PartitionTypes>,
    handle: PartitionHandle,
    actions: Option<mpsc::UnboundedReceiver<Vec<Action>>>,
    proposer: JoinHandle<()>,
    leadership: JoinHandle<()>,
}

impl Partition {
    /// Opens the partition's group, makes this node its only member when it is new, and starts
    /// proposing. Leadership follows within an election timeout.
    pub async fn start(options: PartitionOptions) -> Result<Self, PartitionError> {
        let id = options.id;
        let failed = |reason: String| PartitionError::Start {
            partition: id,
            reason,
        };
        let (actions_tx, actions) = mpsc::unbounded_channel();
        let snapshots = SnapshotDir::open(options.snapshot_dir.clone()).map_err(|e| {
            failed(format!(
                "cannot open its snapshot directory {}: {e}",
                options.snapshot_dir.display()
            ))
        })?;
        let machine = PartitionStateMachine::open(
            options.store.clone(),
            id,
            options.range.clone(),
            snapshots,
            actions_tx,
        )
        .map_err(|e| failed(e.to_string()))?;
        let log_store = LogStore::<PartitionTypes>::new(
            options.store.db(),
            LogStoreConfig {
                log_cf: CF_LOG,
                raft_cf: CF_RAFT,
                prefix: key_prefix(id),
            },
        );
        let config = openraft::Config {
            cluster_name: format!("{}-{}", options.cluster_name, id),
            heartbeat_interval: 100,
            election_timeout_min: 150,
            election_timeout_max: 300,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_interval.max(1)),
            max_in_snapshot_log_to_keep: options.snapshot_interval / 10,
            ..Default::default()
        }
        .validate()
        .map_err(|e| failed(format!("invalid raft configuration: {e}")))?;
        let raft = Raft::new(
            options.member_id,
            Arc::new(config),
            SingleMemberNetwork::new("partition"),
            log_store,
            machine,
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !initialized {
            let members = BTreeMap::from([(
                options.member_id,
                BasicNode {
                    addr: options.address.clone(),
                },
            )]);
            raft.initialize(members)
                .await
                .map_err(|e| failed(e.to_string()))?;
            info!(partition = %id, "partition group created");
        }

        let (leader_tx, leader) = watch::channel(None);
        let leadership = tokio::spawn(follow_leadership(
            raft.clone(),
            id,
            options.member_id,
            leader_tx,
        ));
        let (proposals, queue) = mpsc::channel(QUEUE);
        let proposer = tokio::spawn(run_proposer(raft.clone(), id, queue));
        Ok(Self {
            raft,
            handle: PartitionHandle {
                id,
                range: options.range,
                store: options.store,
                proposals,
                leader,
                epoch: Arc::new(watch::Sender::new(None)),
            },
            actions: Some(actions),
            proposer,
            leadership,
        })
    }

    pub fn handle(&self) -> PartitionHandle {
        self.handle.clone()
    }

    /// The group's raft metrics as they are now (log, snapshot and purge positions).
    pub fn metrics(&self) -> openraft::RaftMetrics<u64, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// The actions of applied records; taken once, by the partition's actuator.
    pub fn take_actions(&mut self) -> Option<mpsc::UnboundedReceiver<Vec<Action>>> {
        self.actions.take()
    }

    /// Stops proposing and stops the raft group. Pending proposals fail as unavailable.
    pub async fn shutdown(self) -> Result<(), PartitionError> {
        self.proposer.abort();
        self.leadership.abort();
        // Both tasks were aborted: their join result says only that.
        let _ = self.proposer.await;
        let _ = self.leadership.await;
        let id = self.handle.id;
        self.raft
            .shutdown()
            .await
            .map_err(|e| PartitionError::Start {
                partition: id,
                reason: format!("stopping the raft group: {e}"),
            })
    }
}

async fn follow_leadership(
    raft: Raft<PartitionTypes>,
    id: PartitionId,
    member_id: u64,
    leader: watch::Sender<Option<u64>>,
) {
    let mut metrics = raft.metrics();
    loop {
        let epoch = {
            let m = metrics.borrow_and_update();
            let leads = m.state == ServerState::Leader && m.current_leader == Some(member_id);
            // The leader's first entry of a term is its blank entry: once an entry of the term
            // is applied, so is everything before it.
            let caught_up = m
                .last_applied
                .is_some_and(|applied| applied.leader_id.term == m.current_term);
            (leads && caught_up).then_some(m.current_term)
        };
        if leader.send_replace(epoch) != epoch {
            info!(partition = %id, epoch, "partition leadership changed");
        }
        if metrics.changed().await.is_err() {
            leader.send_replace(None);
            return;
        }
    }
}

async fn run_proposer(
    raft: Raft<PartitionTypes>,
    id: PartitionId,
    mut queue: mpsc::Receiver<Proposal>,
) {
    let mut in_flight = FuturesUnordered::new();
    // A proposal that did not fit the previous entry: the first of the next one.
    let mut carried: Option<Proposal> = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => tokio::select! {
                next = queue.recv() => match next {
                    Some(first) => first,
                    None => break,
                },
                Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
            },
        };
        let mut bytes = first.record.approximate_size();
        let mut records = vec![first.record];
        let mut waiters = vec![first.committed];
        // Whatever else waits joins the entry, up to a count and a size; the record that would
        // pass the size waits for the next entry.
        while records.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let Ok(more) = queue.try_recv() else { break };
            let size = more.record.approximate_size();
            if bytes + size > MAX_BATCH_BYTES {
                carried = Some(more);
                break;
            }
            bytes += size;
            records.push(more.record);
            waiters.push(more.committed);
        }
        debug!(partition = %id, records = records.len(), bytes, "proposing");
        let batch = RecordBatch {
            records,
            proposed_at: MillisSinceEpoch::now(),
        };
        match raft.client_write_ff(batch).await {
            Ok(response) => in_flight.push(async move {
                let result = match response.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(openraft::error::ClientWriteError::ForwardToLeader(_))) => {
                        Err(ProposeError::NotLeader(id))
                    }
                    Ok(Err(err)) => Err(ProposeError::Unavailable {
                        partition: id,
                        reason: err.to_string(),
                    }),
                    Err(_) => Err(stopped(id)),
                };
                for waiter in waiters {
                    // The proposer gave up waiting; the record still applies.
                    let _ = waiter.send(result.clone());
                }
            }),
            Err(fatal) => {
                let err = ProposeError::Unavailable {
                    partition: id,
                    reason: fatal.to_string(),
                };
                for waiter in waiters {
                    let _ = waiter.send(Err(err.clone()));
                }
            }
        }
    }
    while in_flight.next().await.is_some() {}
}
